// sidecore-bench-mpi harvest and mpi-harvest: what an idle core adds to a task farm.
//
// `mpi-harvest` (plain mpirun, no executor) is the MPI-only task farm alone, the peer that
// bench/compare.sh has always measured: the last --worker-ranks ranks serve tasks, the others farm.
//
// `harvest` (under sidecore-run; what `sidecore-bench harvest` starts) measures Sidecore's farm and the
// MPI-only farm in one job, in alternating rounds. With R farm ranks and W workers the job has
// 2 R + W ranks:
//
//   [0, R)          the MPI-only farm (no pool in these processes); world rank 0 drives everything
//   [R, R + W)      MPI-only worker ranks, on the executor's CPUs, next to its workers
//   [R + W, 2R + W) Sidecore's farm: the only pool of the job, over these ranks
//
// Each farm rank shares its CPU with its twin in the other farm, and each worker rank its CPU with an
// executor worker. Whoever is not measuring sleeps in sem_wait (Wakeups), so each run has its CPUs to
// itself; after a run with the executor, Sidecore's farm waits for the workers' spin window to run out
// before the worker ranks run next to them. This is mpi-latency's layout, for a farm.
#include <fmt/format.h>
#include <mpi.h>
#include <mpix_offload.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <thread>
#include <vector>

#include "mpi/commands.hpp"
#include "mpi/common.hpp"
#include "mpi/task_farm.hpp"

namespace sidecore::bench::mpi {
namespace {

// Tasks per run of task length `us`: --tasks, or about --seconds of work per rank alone.
uint64_t run_tasks(const HarvestOptions& options, int ranks, uint64_t us) {
  if (options.tasks) return options.tasks;
  return static_cast<uint64_t>(ranks) *
         std::max<uint64_t>(1, static_cast<uint64_t>(options.seconds * 1e6 / static_cast<double>(us)));
}

// The unrecorded warm-up run before the first round (about 0.1 s): the executor's first calls, the
// worker waking, the first touches.
uint64_t warmup_tasks(uint64_t tasks, int ranks, uint64_t us) {
  return std::min<uint64_t>(tasks, std::max<uint64_t>(static_cast<uint64_t>(ranks) * 4, 100000 / us));
}

void describe_round(const char* bench, uint64_t us, unsigned round, uint64_t tasks, const FarmRun& alone,
                    const FarmRun& harvested, unsigned window) {
  const double per_task = harvested.offloaded ? 1e6 / static_cast<double>(harvested.offloaded) : 0.0;
  std::fprintf(stderr,
               "sidecore-bench: %s %llu us round %u: %llu tasks, alone %.4f s, harvest %.4f s (%llu offloaded, %llu "
               "computed by the ranks, window %u per rank; per offloaded task %.3f us in submit, %.3f us in "
               "MPI_Testsome; %.4f s computing, %.4f s draining), speedup %.4f; ranks' CPU share alone %.3f, harvest "
               "%.3f\n",
               bench, static_cast<unsigned long long>(us), round, static_cast<unsigned long long>(tasks), alone.seconds,
               harvested.seconds, static_cast<unsigned long long>(harvested.offloaded),
               static_cast<unsigned long long>(harvested.local), window, harvested.submit_seconds * per_task,
               harvested.complete_seconds * per_task, harvested.local_seconds, harvested.drain_seconds,
               alone.seconds / harvested.seconds, alone.cpu_share, harvested.cpu_share);
}

void warn_cpu_share(const char* bench, uint64_t us, double lowest_share) {
  if (lowest_share >= 0.9) return;
  std::fprintf(stderr,
               "sidecore-bench: warning: %s %llu us: a rank's process had only %.0f%% of its CPU in one of the runs: "
               "something else (another rank, another program) ran on its CPU, and the speedup is not the offload's "
               "alone\n",
               bench, static_cast<unsigned long long>(us), lowest_share * 100);
}

// The farm rank r of R sends to the worker ranks w (of W) with w mod R = r; with fewer workers than
// farm ranks, to worker r mod W. So each farm rank has W / R of them, as each rank has W / R of an
// executor's workers. `first_worker`: the world rank of worker 0.
MpiDispatch mpi_dispatch(int rank, int farm_ranks, int workers, int first_worker) {
  MpiDispatch dispatch;
  for (int w = 0; w < workers; ++w) {
    if (workers >= farm_ranks ? w % farm_ranks == rank : w == rank % workers)
      dispatch.workers.push_back(first_worker + w);
  }
  return dispatch;
}

// --- mpi-harvest ----------------------------------------------------------------------------------------

// Per task length, one unrecorded warm-up, then --rounds of the farm alone and with its workers,
// alternated; the farm's rank 0 prints the result line.
void peer_harvest_rounds(TaskFarm<MpiDispatch>& farm, MPI_Comm comm, int workers, const HarvestOptions& options) {
  constexpr const char* kBench = "mpi-harvest";
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  for (const uint64_t us : options.task_us) {
    const uint64_t tasks = run_tasks(options, size, us);
    farm.harvest(warmup_tasks(tasks, size, us), us, false);
    Samples speedups;
    double lowest_share = 1.0;
    for (unsigned round = 0; round < options.rounds; ++round) {
      // Alternated, the order swapped every round, as the VM's placements come and go.
      FarmRun alone, harvested;
      const bool describe = options.verbose && rank == 0;
      auto time_alone = [&] {
        const auto before = describe ? thread_usage() : std::map<int, ThreadUsage>{};
        alone = farm.alone(tasks, us);
        if (describe) describe_threads("alone", before);
      };
      auto time_harvest = [&] {
        const auto before = describe ? thread_usage() : std::map<int, ThreadUsage>{};
        harvested = farm.harvest(tasks, us, options.verbose);
        if (describe) describe_threads("harvest", before);
      };
      if (round % 2 == 0) {
        time_alone();
        time_harvest();
      } else {
        time_harvest();
        time_alone();
      }
      speedups.push_back(alone.seconds / harvested.seconds);
      if (describe) describe_round(kBench, us, round, tasks, alone, harvested, farm.window());
      lowest_share = std::min({lowest_share, alone.cpu_share, harvested.cpu_share});
    }
    if (rank == 0) {
      warn_cpu_share(kBench, us, lowest_share);
      const double speedup = median(speedups);
      const double ideal = static_cast<double>(size + workers) / size;
      print_result(fmt::format(
          "{{\"bench\":\"{}\",\"task_us\":{},\"ranks\":{},\"workers\":{},\"speedup\":{},\"efficiency\":{}}}", kBench,
          us, size, workers, json_number(speedup, 3), json_number(speedup / ideal, 3)));
    }
  }
}

// --- harvest: both farms in one job -----------------------------------------------------------------------

constexpr int kDriver = 0;
enum Tag : int { kTagRun = 6, kTagWorkers = 7 };  // kTagCommand (1): common.hpp; kTagTask...kTagStop (10-13)
enum Op : uint64_t { kQuit = 0, kAlone = 1, kHarvest = 2, kServe = 3 };

struct Command {
  uint64_t op = kQuit;
  uint64_t tasks = 0;
  uint64_t us = 0;
  uint64_t timed = 0;     // kHarvest: add up the time of each part (-v)
  uint64_t describe = 0;  // print the threads' CPU use and switches of the farm's rank 0 (-v)
};

// Where each part of the job is, in MPI_COMM_WORLD.
struct Layout {
  int farm_ranks = 1, workers = 1;
  int first_worker() const noexcept { return farm_ranks; }
  int first_mpix() const noexcept { return farm_ranks + workers; }
  int size() const noexcept { return 2 * farm_ranks + workers; }
  enum Part { mpi_farm = 0, worker = 1, mpix_farm = 2 };
  Part part_of(int rank) const noexcept {
    return rank < first_worker() ? mpi_farm : rank < first_mpix() ? worker : mpix_farm;
  }
};

template <typename Dispatch>
FarmRun run_step(TaskFarm<Dispatch>& farm, const Command& command, const char* what) {
  const auto before = command.describe ? thread_usage() : std::map<int, ThreadUsage>{};
  FarmRun run = command.op == kAlone ? farm.alone(command.tasks, command.us)
                                     : farm.harvest(command.tasks, command.us, command.timed != 0);
  if (command.describe) describe_threads(what, before);
  return run;
}

// An MPI-only worker rank: serves the tasks of each run with the MPI-only farm, sleeping in between.
void serve_worker(Wakeups& wakeups, int rank, const std::string& library) {
  LocalFunction spin(library, "spin_us");
  while (true) {
    wakeups.sleep(rank);
    if (receive_command<Command>(kDriver).op == kQuit) return;
    serve_tasks(spin.get(), sizeof(uint64_t));  // until the driver's kTagStop
  }
}

// A farm rank other than the driver: runs whatever the driver commands, sleeping in between.
// Sidecore's rank 0 (the first of its farm) reports each run to the driver.
template <typename Dispatch>
void serve_farm(Wakeups& wakeups, int rank, TaskFarm<Dispatch>& farm, bool report, long quiesce_us) {
  while (true) {
    wakeups.sleep(rank);
    const Command command = receive_command<Command>(kDriver);
    if (command.op == kQuit) return;
    const FarmRun run = run_step(farm, command, command.op == kAlone ? "harvest, alone" : "harvest, offloaded");
    if (!report) continue;
    // Let the workers' spin window run out before the worker ranks run next to them.
    if (command.op != kAlone) std::this_thread::sleep_for(std::chrono::microseconds(quiesce_us));
    wakeups.wake(kDriver);
    check(MPI_Send(&run, sizeof run, MPI_BYTE, kDriver, kTagRun, MPI_COMM_WORLD), "MPI_Send");
  }
}

class HarvestDriver {
 public:
  HarvestDriver(Wakeups& wakeups, const Layout& layout, TaskFarm<MpiDispatch>& farm, const HarvestOptions& options)
      : wakeups_(wakeups), layout_(layout), farm_(farm), options_(options) {}

  // The MPI-only farm, this rank its rank 0.
  FarmRun mpi(uint64_t op, uint64_t tasks, uint64_t us, bool recorded) {
    const Command command{op, tasks, us, options_.verbose && recorded, options_.verbose && recorded};
    for (int rank = 1; rank < layout_.farm_ranks; ++rank) {
      send_command(rank, command);
      wakeups_.wake(rank);
    }
    if (op != kAlone) {
      for (int w = 0; w < layout_.workers; ++w) {
        send_command(layout_.first_worker() + w, Command{kServe});
        wakeups_.wake(layout_.first_worker() + w);
      }
    }
    const FarmRun run = run_step(farm_, command, op == kAlone ? "mpi-only, alone" : "mpi-only, offloaded");
    // The run ends with an MPI_Allreduce over the farm: every task was answered.
    if (op != kAlone) {
      for (int w = 0; w < layout_.workers; ++w) {
        check(MPI_Send(nullptr, 0, MPI_BYTE, layout_.first_worker() + w, kTagStop, MPI_COMM_WORLD), "MPI_Send");
      }
    }
    settle();
    return run;
  }

  // Sidecore's farm; this rank sleeps meanwhile.
  FarmRun mpix(uint64_t op, uint64_t tasks, uint64_t us, bool recorded) {
    const Command command{op, tasks, us, options_.verbose && recorded, options_.verbose && recorded};
    for (int rank = layout_.first_mpix(); rank < layout_.size(); ++rank) {
      // Only its rank 0 describes its threads, as this rank does for the MPI-only farm.
      Command mine = command;
      if (rank != layout_.first_mpix()) mine.describe = 0;
      send_command(rank, mine);
      wakeups_.wake(rank);
    }
    wakeups_.sleep(kDriver);
    FarmRun run;
    check(MPI_Recv(&run, sizeof run, MPI_BYTE, layout_.first_mpix(), kTagRun, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Recv");
    settle();
    return run;
  }

  void quit() {
    for (int rank = 1; rank < layout_.size(); ++rank) {
      send_command(rank, Command{});
      wakeups_.wake(rank);
    }
  }

 private:
  // The ranks that just finished go back to sem_wait within microseconds; give them that.
  static void settle() { std::this_thread::sleep_for(std::chrono::microseconds(200)); }

  Wakeups& wakeups_;
  const Layout& layout_;
  TaskFarm<MpiDispatch>& farm_;
  const HarvestOptions& options_;
};

// One side's rounds: speedups and the lowest CPU share seen.
struct SideRounds {
  Samples speedups;
  double lowest_share = 1.0;
  void add(const FarmRun& alone, const FarmRun& harvested) {
    speedups.push_back(alone.seconds / harvested.seconds);
    lowest_share = std::min({lowest_share, alone.cpu_share, harvested.cpu_share});
  }
};

void drive(HarvestDriver& driver, const Layout& layout, int executor_workers, unsigned mpix_window, unsigned mpi_window,
           const HarvestOptions& options) {
  const int ranks = layout.farm_ranks;
  for (const uint64_t us : options.task_us) {
    const uint64_t tasks = run_tasks(options, ranks, us);
    driver.mpi(kHarvest, warmup_tasks(tasks, ranks, us), us, false);
    driver.mpix(kHarvest, warmup_tasks(tasks, ranks, us), us, false);
    SideRounds mpix, mpi;
    for (unsigned round = 0; round < options.rounds; ++round) {
      // Each side alone and with its workers; the whole order reversed every round, as the VM's
      // placements come and go.
      FarmRun mpi_alone, mpi_harvest, mpix_alone, mpix_harvest;
      if (round % 2 == 0) {
        mpi_alone = driver.mpi(kAlone, tasks, us, true);
        mpi_harvest = driver.mpi(kHarvest, tasks, us, true);
        mpix_alone = driver.mpix(kAlone, tasks, us, true);
        mpix_harvest = driver.mpix(kHarvest, tasks, us, true);
      } else {
        mpix_harvest = driver.mpix(kHarvest, tasks, us, true);
        mpix_alone = driver.mpix(kAlone, tasks, us, true);
        mpi_harvest = driver.mpi(kHarvest, tasks, us, true);
        mpi_alone = driver.mpi(kAlone, tasks, us, true);
      }
      mpix.add(mpix_alone, mpix_harvest);
      mpi.add(mpi_alone, mpi_harvest);
      if (options.verbose) {
        describe_round("harvest", us, round, tasks, mpix_alone, mpix_harvest, mpix_window);
        describe_round("harvest, mpi-only", us, round, tasks, mpi_alone, mpi_harvest, mpi_window);
      }
    }
    warn_cpu_share("harvest", us, mpix.lowest_share);
    warn_cpu_share("harvest, mpi-only", us, mpi.lowest_share);
    const double speedup = median(mpix.speedups), mpi_speedup = median(mpi.speedups);
    const double ideal = static_cast<double>(ranks + executor_workers) / ranks;
    const double mpi_ideal = static_cast<double>(ranks + layout.workers) / ranks;
    print_result(fmt::format("{{\"bench\":\"harvest\",\"task_us\":{},\"ranks\":{},\"workers\":{},\"speedup\":{},"
                             "\"efficiency\":{},\"mpi_only_speedup\":{},\"mpi_only_efficiency\":{},"
                             "\"mpi_only_workers\":{},\"transport\":\"{}\"}}",
                             us, ranks, executor_workers, json_number(speedup, 3), json_number(speedup / ideal, 3),
                             json_number(mpi_speedup, 3), json_number(mpi_speedup / mpi_ideal, 3), layout.workers,
                             offload_transport()));
  }
}

}  // namespace

int run_harvest(const HarvestOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Layout layout;
  layout.workers = static_cast<int>(options.worker_ranks);
  layout.farm_ranks = (size - layout.workers) / 2;
  if (layout.farm_ranks < 1 || layout.size() != size) {
    die(fmt::format("harvest: {} ranks are not 2 x farm ranks + {} worker ranks", size, layout.workers));
  }
  Wakeups wakeups(size);
  const Layout::Part part = layout.part_of(rank);
  MPI_Comm part_comm = MPI_COMM_NULL;
  check(MPI_Comm_split(MPI_COMM_WORLD, part, rank, &part_comm), "MPI_Comm_split");
  MPI_Comm_set_errhandler(part_comm, MPI_ERRORS_RETURN);
  if (part == Layout::worker) {
    serve_worker(wakeups, rank, options.library);
  } else if (part == Layout::mpix_farm) {
    Offload offload(part_comm, options.library, "spin_us");
    if (rank == layout.first_mpix()) {
      const int workers = offload.total_workers();
      check(MPI_Send(&workers, 1, MPI_INT, kDriver, kTagWorkers, MPI_COMM_WORLD), "MPI_Send");
    }
    MpixDispatch dispatch{offload.remote()};
    TaskFarm farm(part_comm, dispatch, offload.local(), offload.total_workers(), options.window_per_worker);
    serve_farm(wakeups, rank, farm, rank == layout.first_mpix(), options.quiesce_us);
  } else {
    LocalFunction spin(options.library, "spin_us");
    MpiDispatch dispatch = mpi_dispatch(rank, layout.farm_ranks, layout.workers, layout.first_worker());
    TaskFarm farm(part_comm, dispatch, spin.get(), layout.workers, options.window_per_worker);
    if (rank != kDriver) {
      serve_farm(wakeups, rank, farm, false, 0);
    } else {
      int executor_workers = 0;
      check(
          MPI_Recv(&executor_workers, 1, MPI_INT, layout.first_mpix(), kTagWorkers, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Recv");
      const unsigned mpix_window =
          std::max(1u, static_cast<unsigned>(std::lround(options.window_per_worker *
                                                         static_cast<double>(executor_workers) / layout.farm_ranks)));
      HarvestDriver driver(wakeups, layout, farm, options);
      drive(driver, layout, executor_workers, mpix_window, farm.window(), options);
      driver.quit();
    }
  }
  MPI_Comm_free(&part_comm);
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  return 0;
}

int run_peer_harvest(const HarvestOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int workers = static_cast<int>(options.worker_ranks);
  const int farm_ranks = size - workers;
  if (farm_ranks < 1)
    die(fmt::format("mpi-harvest: {} ranks leave none for the farm beside {} worker ranks", size, workers));
  const bool worker = rank >= farm_ranks;
  MPI_Comm farm_comm = MPI_COMM_NULL;
  check(MPI_Comm_split(MPI_COMM_WORLD, worker ? 1 : 0, rank, &farm_comm), "MPI_Comm_split");
  MPI_Comm_set_errhandler(farm_comm, MPI_ERRORS_RETURN);
  LocalFunction spin(options.library, "spin_us");
  if (worker) {
    serve_tasks(spin.get(), sizeof(uint64_t));
  } else {
    MpiDispatch dispatch = mpi_dispatch(rank, farm_ranks, workers, farm_ranks);
    TaskFarm farm(farm_comm, dispatch, spin.get(), workers, options.window_per_worker);
    peer_harvest_rounds(farm, farm_comm, workers, options);
    check(MPI_Barrier(farm_comm), "MPI_Barrier");
    if (rank == 0) {
      for (int w = 0; w < workers; ++w) {
        check(MPI_Send(nullptr, 0, MPI_BYTE, farm_ranks + w, kTagStop, MPI_COMM_WORLD), "MPI_Send");
      }
    }
  }
  MPI_Comm_free(&farm_comm);
  return 0;
}

}  // namespace sidecore::bench::mpi
