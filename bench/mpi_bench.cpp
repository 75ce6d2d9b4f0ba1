// sidecore-bench-mpi: the MPI program behind `sidecore-bench harvest` and `sidecore-bench
// mpi-latency`. The bench starts it under `sidecore-run --cores ... -- mpirun -n R ...`; it can be
// started the same way by hand (see --help), but is not installed on PATH.
//
// It also measures the MPI-only peer that bench/compare.sh puts next to Sidecore: worker ranks that
// MPI_Recv a task, run it and MPI_Send the result (mpi-throughput, mpi-harvest; plain mpirun, no
// executor). The MPI-only round trip is mpi-latency's own baseline.
//
// Every rank pins itself to its CPU (from --rank-cpus and the launcher's rank variable) before
// MPI_Init, so that MPI's threads and the offload progress thread stay there too. Rank 0 prints
// each result as one line "sidecore-bench-result {json}" on stdout; the bench forwards those as
// plain JSON and everything else to stderr.
#include <CLI/CLI.hpp>
#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <mpi.h>
#include <mpix_offload.h>
#include <sched.h>
#include <semaphore.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <dirent.h>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "quantile.hpp"
#include "sidecore/function.h"
#include "sidecore/sidecore.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using sidecore::bench::median;
using sidecore::bench::quantile;
using sidecore::bench::Samples;

constexpr const char* kResultPrefix = "sidecore-bench-result ";

// --- small helpers ---------------------------------------------------------------------------------

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "sidecore-bench-mpi: error: %s\n", message.c_str());
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);
}

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(text, static_cast<size_t>(length));
}

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) die(fmt::format("{}: {}", what, mpi_error(rc)));
}

std::string json_number(double value, int decimals) {
  if (!std::isfinite(value)) return "null";
  return fmt::format("{:.{}f}", value, decimals);
}

void print_result(const std::string& json) {
  std::printf("%s%s\n", kResultPrefix, json.c_str());
  std::fflush(stdout);
}

double ns_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::nano>(to - from).count();
}

// CPU time of the whole process (all its threads), user and system.
double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

// Per thread of this process: CPU seconds and context switches (voluntary, involuntary), from
// /proc, for -v: who else runs on a rank's CPU.
struct ThreadUsage {
  std::string name;
  double cpu_seconds = 0;
  long voluntary = 0, involuntary = 0;
};

std::map<int, ThreadUsage> thread_usage() {
  std::map<int, ThreadUsage> threads;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return threads;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const int tid = std::atoi(entry->d_name);
    ThreadUsage usage;
    std::ifstream stat(fmt::format("/proc/self/task/{}/stat", tid));
    std::string line;
    if (!std::getline(stat, line)) continue;
    const auto open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    usage.name = line.substr(open + 1, close - open - 1);
    std::istringstream fields(line.substr(close + 2));
    std::string field;
    unsigned long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14) utime = std::stoul(field);
      if (i == 15) stime = std::stoul(field);
    }
    usage.cpu_seconds = static_cast<double>(utime + stime) / tick;
    std::ifstream status(fmt::format("/proc/self/task/{}/status", tid));
    while (std::getline(status, line)) {
      if (line.starts_with("voluntary_ctxt_switches:")) usage.voluntary = std::atol(line.c_str() + 24);
      if (line.starts_with("nonvoluntary_ctxt_switches:")) usage.involuntary = std::atol(line.c_str() + 27);
    }
    threads[tid] = usage;
  }
  closedir(dir);
  return threads;
}

// One line per thread that used CPU or switched between `before` and now.
void describe_threads(const char* what, const std::map<int, ThreadUsage>& before) {
  const auto after = thread_usage();
  for (const auto& [tid, now] : after) {
    const auto found = before.find(tid);
    const ThreadUsage old = found == before.end() ? ThreadUsage{} : found->second;
    const double cpu = now.cpu_seconds - old.cpu_seconds;
    const long voluntary = now.voluntary - old.voluntary, involuntary = now.involuntary - old.involuntary;
    if (cpu < 0.005 && voluntary + involuntary < 100) continue;
    std::fprintf(stderr, "sidecore-bench:   %s: thread %d (%s): %.3f s CPU, %ld voluntary and %ld involuntary context switches\n",
                 what, tid, now.name.c_str(), cpu, voluntary, involuntary);
  }
}

// The rank the launcher gave this process, before MPI_Init (-1 when no known launcher set one).
int launch_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return -1;
}

void pin_to(int cpu) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  CPU_SET(cpu, &mask);
  if (sched_setaffinity(0, sizeof mask, &mask) != 0) {
    std::fprintf(stderr, "sidecore-bench-mpi: error: cannot pin to CPU %d: %s\n", cpu, std::strerror(errno));
    std::exit(1);
  }
}

// --- the offload pool and the bench functions -------------------------------------------------------

// One function of the bench library, loaded into this process: the same code the executor runs,
// for the tasks a rank computes itself and for the MPI-only worker ranks.
class LocalFunction {
 public:
  LocalFunction(const std::string& library, const char* symbol) {
    handle_ = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) die(fmt::format("dlopen {}: {}", library, dlerror()));
    function_ = reinterpret_cast<sidecore_function_t>(dlsym(handle_, symbol));
    if (function_ == nullptr) die(fmt::format("{} has no symbol {}", library, symbol));
  }
  ~LocalFunction() {
    if (handle_ != nullptr) dlclose(handle_);
  }
  LocalFunction(const LocalFunction&) = delete;
  LocalFunction& operator=(const LocalFunction&) = delete;

  sidecore_function_t get() const noexcept { return function_; }

 private:
  void* handle_ = nullptr;
  sidecore_function_t function_ = nullptr;
};

// A pool over `comm` and one function of the bench library, resolved both on the executors and in
// this process (the same code, for the tasks a rank runs itself).
class Offload {
 public:
  Offload(MPI_Comm comm, const std::string& library, const char* symbol) : local_(library, symbol) {
    check(MPIX_Offload_pool_create(comm, MPI_INFO_NULL, &pool_), "MPIX_Offload_pool_create");
    check(MPIX_Offload_pool_size(pool_, &local_workers_, &total_workers_), "MPIX_Offload_pool_size");
    if (total_workers_ == 0) {
      die("the pool has no executor worker (is SIDECORE_EXECUTOR set? run under sidecore-run); without one "
          "tasks would run inline and the figures would mean nothing");
    }
    check(MPIX_Offload_function_lookup(pool_, library.c_str(), symbol, &remote_), "MPIX_Offload_function_lookup");
  }
  ~Offload() {
    MPIX_Offload_function_free(&remote_);
    MPIX_Offload_pool_free(&pool_);
  }
  Offload(const Offload&) = delete;
  Offload& operator=(const Offload&) = delete;

  MPIX_Offload_function remote() const noexcept { return remote_; }
  sidecore_function_t local() const noexcept { return local_.get(); }
  int total_workers() const noexcept { return total_workers_; }

 private:
  LocalFunction local_;
  MPIX_Offload_pool pool_ = MPIX_OFFLOAD_POOL_NULL;
  MPIX_Offload_function remote_ = MPIX_OFFLOAD_FUNCTION_NULL;
  int local_workers_ = 0, total_workers_ = 0;
};

// Tags of the MPI-only peer: a task to a worker rank, its result (or its failure), the end.
enum PeerTag : int { kTagTask = 10, kTagResult = 11, kTagFailed = 12, kTagStop = 13 };

// An MPI-only worker rank: MPI_Recv a task from anyone, run it, MPI_Send the result back, until a
// kTagStop message. Inputs and outputs of up to `capacity` bytes.
void serve_tasks(sidecore_function_t function, size_t capacity) {
  std::vector<std::byte> in(std::max<size_t>(capacity, 1)), out(in.size());
  while (true) {
    MPI_Status status;
    check(MPI_Recv(in.data(), static_cast<int>(in.size()), MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD,
                   &status),
          "MPI_Recv");
    if (status.MPI_TAG == kTagStop) return;
    int received = 0;
    MPI_Get_count(&status, MPI_BYTE, &received);
    size_t out_bytes = 0;
    const int rc = function(in.data(), static_cast<size_t>(received), out.data(), out.size(), &out_bytes);
    check(MPI_Send(out.data(), rc == 0 ? static_cast<int>(out_bytes) : 0, MPI_BYTE, status.MPI_SOURCE,
                   rc == 0 ? kTagResult : kTagFailed, MPI_COMM_WORLD),
          "MPI_Send");
  }
}

// --- harvest ------------------------------------------------------------------------------------------

struct HarvestOptions {
  std::vector<uint64_t> task_us{10, 50, 1000};
  uint64_t tasks = 0;              // 0: about `seconds` of work per rank alone
  double seconds = 2.0;
  unsigned rounds = 3;
  unsigned window_per_worker = 4;  // tasks offloaded and not completed, per worker of the rank's share
  unsigned worker_ranks = 1;       // mpi-harvest: the last ranks of the job, which serve the tasks
  std::string library;
  bool verbose = false;
};

struct FarmRun {
  double seconds = 0;                 // the slowest rank's
  uint64_t offloaded = 0, local = 0;  // over all ranks
  double submit_seconds = 0;          // over all ranks: inside MPIX_Offload_submit (MPI-only: MPI_Irecv + MPI_Send)
  double complete_seconds = 0;        // over all ranks: inside MPI_Testsome while tasks were left
  double local_seconds = 0;           // over all ranks: computing tasks
  double drain_seconds = 0;           // over all ranks: in MPI_Waitsome at the end, nothing left to compute
  double cpu_share = 0;               // the lowest of the ranks' CPU time over wall time: below 1, something
                                      // else ran on a rank's CPU (each rank, all its threads, is pinned to one)
};

// How a farm rank hands a task (input: the task length, which stays valid for the whole run) to a
// worker and gets an MPI request that completes with it.
// Sidecore: MPIX_Offload_submit to the executor.
struct MpixDispatch {
  static constexpr const char* kSubmit = "MPIX_Offload_submit";
  MPIX_Offload_function function;
  int submit(const uint64_t& us, MPI_Request* request) {
    return MPIX_Offload_submit(function, &us, sizeof us, nullptr, 0, request);
  }
  void completed(const MPI_Status&) const noexcept {}  // errors come back as the request's error
};

// MPI-only: MPI_Irecv of the result (posted first, so it never waits in the unexpected queue), then
// MPI_Send of the task to the next of this rank's worker ranks. A worker serves tasks in order, so
// the results match the receives posted for it in order.
struct MpiDispatch {
  static constexpr const char* kSubmit = "MPI_Irecv/MPI_Send of a task";
  std::vector<int> workers;  // ranks in MPI_COMM_WORLD
  size_t next = 0;
  int submit(const uint64_t& us, MPI_Request* request) {
    const int worker = workers[next++ % workers.size()];
    const int rc = MPI_Irecv(nullptr, 0, MPI_BYTE, worker, MPI_ANY_TAG, MPI_COMM_WORLD, request);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Send(&us, sizeof us, MPI_BYTE, worker, kTagTask, MPI_COMM_WORLD);
  }
  void completed(const MPI_Status& status) const {
    if (status.MPI_TAG != kTagResult) die(fmt::format("a task failed on worker rank {}", status.MPI_SOURCE));
  }
};

template <typename Dispatch>
class TaskFarm {
 public:
  // `comm`: the farm ranks only; `workers`: the workers all of them share.
  TaskFarm(MPI_Comm comm, Dispatch& dispatch, sidecore_function_t local, int workers, unsigned window_per_worker)
      : comm_(comm), dispatch_(dispatch), local_(local) {
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
    share_ = static_cast<double>(workers) / size_;
    window_ = std::max(1u, static_cast<unsigned>(std::lround(window_per_worker * share_)));
  }

  unsigned window() const noexcept { return window_; }

  // This rank's part of `tasks`.
  uint64_t mine(uint64_t tasks) const noexcept {
    const auto ranks = static_cast<uint64_t>(size_);
    return tasks / ranks + (static_cast<uint64_t>(rank_) < tasks % ranks ? 1 : 0);
  }

  // Every task run by the rank itself.
  FarmRun alone(uint64_t tasks, uint64_t us) {
    const uint64_t count = mine(tasks);
    check(MPI_Barrier(comm_), "MPI_Barrier");
    const double cpu_start = process_cpu_seconds();
    const double start = MPI_Wtime();
    for (uint64_t i = 0; i < count; ++i) run_local(us);
    return finish(start, cpu_start, 0, count, 0, 0);
  }

  // A window of tasks kept offloaded, the rank computing tasks itself in between. `timed`: also
  // add up the time spent in each part (-v; four clock reads of about 20 ns per task).
  FarmRun harvest(uint64_t tasks, uint64_t us, bool timed) {
    std::vector<MPI_Request> requests(window_, MPI_REQUEST_NULL);
    std::vector<int> indices(window_);
    std::vector<MPI_Status> statuses(window_);
    std::vector<int> free_slots;
    for (unsigned slot = window_; slot-- > 0;) free_slots.push_back(static_cast<int>(slot));
    uint64_t unassigned = mine(tasks), in_flight = 0, offloaded = 0, local = 0;
    double submit_ns = 0, complete_ns = 0, local_ns = 0, drain_ns = 0;
    const auto now = [timed] { return timed ? Clock::now() : Clock::time_point{}; };
    check(MPI_Barrier(comm_), "MPI_Barrier");
    const double cpu_start = process_cpu_seconds();
    const double start = MPI_Wtime();
    while (unassigned > 0 || in_flight > 0) {
      while (unassigned > 0 && in_flight < window_ && offload_pays(in_flight, unassigned)) {
        const int slot = free_slots.back();
        free_slots.pop_back();
        const auto before = now();
        check(dispatch_.submit(us, &requests[slot]), Dispatch::kSubmit);
        submit_ns += ns_between(before, now());
        --unassigned;
        ++in_flight;
        ++offloaded;
      }
      if (unassigned > 0) {
        const auto before = now();
        run_local(us);
        local_ns += ns_between(before, now());
        --unassigned;
        ++local;
      }
      if (in_flight == 0) continue;
      int completed = 0;
      const auto before = now();
      // Nothing left to compute: block (MPI_Waitsome) for the offloaded rest.
      const int rc = unassigned > 0
                         ? MPI_Testsome(static_cast<int>(window_), requests.data(), &completed, indices.data(),
                                        statuses.data())
                         : MPI_Waitsome(static_cast<int>(window_), requests.data(), &completed, indices.data(),
                                        statuses.data());
      (unassigned > 0 ? complete_ns : drain_ns) += ns_between(before, now());
      if (rc == MPI_ERR_IN_STATUS) {
        for (int k = 0; k < completed; ++k) check(statuses[static_cast<size_t>(k)].MPI_ERROR, "an offloaded task");
      } else {
        check(rc, unassigned > 0 ? "MPI_Testsome" : "MPI_Waitsome");
      }
      if (completed == MPI_UNDEFINED) die("MPI_Testsome found no active request while tasks were in flight");
      for (int k = 0; k < completed; ++k) {
        dispatch_.completed(statuses[static_cast<size_t>(k)]);
        free_slots.push_back(indices[static_cast<size_t>(k)]);
      }
      in_flight -= static_cast<uint64_t>(completed);
    }
    FarmRun run = finish(start, cpu_start, offloaded, local, submit_ns * 1e-9, complete_ns * 1e-9);
    double seconds[2] = {local_ns * 1e-9, drain_ns * 1e-9};
    check(MPI_Allreduce(MPI_IN_PLACE, seconds, 2, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
    run.local_seconds = seconds[0];
    run.drain_seconds = seconds[1];
    return run;
  }

 private:
  void run_local(uint64_t us) {
    size_t out_bytes = 0;
    if (local_(&us, sizeof us, nullptr, 0, &out_bytes) != 0) die("spin_us failed locally");
  }

  // Near the end, offload only as many tasks as the workers finish by the time the rank has
  // computed the rest: the rank (one core) and its share of workers split what is left (the
  // unassigned tasks and those in flight) in proportion, so neither side waits for the other
  // long. Early on the window is the limit.
  bool offload_pays(uint64_t in_flight, uint64_t unassigned) const noexcept {
    return static_cast<double>(in_flight) * (1.0 + share_) < static_cast<double>(unassigned + in_flight) * share_;
  }

  FarmRun finish(double start, double cpu_start, uint64_t offloaded, uint64_t local, double submit_seconds,
                 double complete_seconds) {
    FarmRun run;
    run.seconds = MPI_Wtime() - start;
    run.cpu_share = (process_cpu_seconds() - cpu_start) / run.seconds;
    check(MPI_Allreduce(MPI_IN_PLACE, &run.cpu_share, 1, MPI_DOUBLE, MPI_MIN, comm_), "MPI_Allreduce");
    check(MPI_Allreduce(MPI_IN_PLACE, &run.seconds, 1, MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce");
    uint64_t counts[2] = {offloaded, local};
    check(MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_UINT64_T, MPI_SUM, comm_), "MPI_Allreduce");
    double seconds[2] = {submit_seconds, complete_seconds};
    check(MPI_Allreduce(MPI_IN_PLACE, seconds, 2, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
    run.offloaded = counts[0];
    run.local = counts[1];
    run.submit_seconds = seconds[0];
    run.complete_seconds = seconds[1];
    return run;
  }

  MPI_Comm comm_;
  Dispatch& dispatch_;
  sidecore_function_t local_;
  int rank_ = 0, size_ = 1;
  double share_ = 0;  // workers per rank
  unsigned window_ = 1;
};

// Both harvest figures: per task length, one unrecorded warm-up, then --rounds of the farm alone
// and with its workers, alternated; the farm's rank 0 prints `bench`'s result line.
template <typename Dispatch>
void harvest_rounds(const char* bench, TaskFarm<Dispatch>& farm, MPI_Comm comm, int workers,
                    const HarvestOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  for (const uint64_t us : options.task_us) {
    const uint64_t tasks =
        options.tasks ? options.tasks
                      : static_cast<uint64_t>(size) *
                            std::max<uint64_t>(1, static_cast<uint64_t>(options.seconds * 1e6 / static_cast<double>(us)));
    // Unrecorded: the executor's first calls, the worker waking, the first touches.
    farm.harvest(std::min<uint64_t>(tasks, std::max<uint64_t>(static_cast<uint64_t>(size) * 4, 100000 / us)), us,
                 false);
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
      if (options.verbose && rank == 0) {
        const double per_task = harvested.offloaded ? 1e6 / static_cast<double>(harvested.offloaded) : 0.0;
        std::fprintf(stderr,
                     "sidecore-bench: %s %llu us round %u: %llu tasks, alone %.4f s, harvest %.4f s (%llu "
                     "offloaded, %llu computed by the ranks, window %u per rank; per offloaded task %.3f us in "
                     "submit, %.3f us in MPI_Testsome; %.4f s computing, %.4f s draining), speedup %.4f; ranks' CPU "
                     "share alone %.3f, harvest %.3f\n",
                     bench, static_cast<unsigned long long>(us), round, static_cast<unsigned long long>(tasks),
                     alone.seconds,
                     harvested.seconds, static_cast<unsigned long long>(harvested.offloaded),
                     static_cast<unsigned long long>(harvested.local), farm.window(),
                     harvested.submit_seconds * per_task, harvested.complete_seconds * per_task,
                     harvested.local_seconds, harvested.drain_seconds, speedups.back(),
                     alone.cpu_share, harvested.cpu_share);
      }
      lowest_share = std::min({lowest_share, alone.cpu_share, harvested.cpu_share});
    }
    if (rank == 0 && lowest_share < 0.9) {
      std::fprintf(stderr,
                   "sidecore-bench: warning: %s %llu us: a rank's process had only %.0f%% of its CPU in one of "
                   "the runs: something else (another rank, another program) ran on its CPU, and the speedup is not "
                   "the offload's alone\n",
                   bench, static_cast<unsigned long long>(us), lowest_share * 100);
    }
    if (rank == 0) {
      const double speedup = median(speedups);
      const double ideal = static_cast<double>(size + workers) / size;
      print_result(fmt::format(
          "{{\"bench\":\"{}\",\"task_us\":{},\"ranks\":{},\"workers\":{},\"speedup\":{},\"efficiency\":{}}}",
          bench, us, size, workers, json_number(speedup, 3), json_number(speedup / ideal, 3)));
    }
  }
}

int run_harvest(const HarvestOptions& options) {
  Offload offload(MPI_COMM_WORLD, options.library, "spin_us");
  MpixDispatch dispatch{offload.remote()};
  TaskFarm farm(MPI_COMM_WORLD, dispatch, offload.local(), offload.total_workers(), options.window_per_worker);
  harvest_rounds("harvest", farm, MPI_COMM_WORLD, offload.total_workers(), options);
  return 0;
}

// --- the MPI-only peer: mpi-harvest and mpi-throughput --------------------------------------------------

// The same task farm, the MPI-only way: the last --worker-ranks ranks of the job serve tasks
// (serve_tasks), the others are the farm. Farm rank r sends to the workers w with w mod R = r (R farm
// ranks; with fewer workers than farm ranks, to worker r mod W), so each farm rank has W / R of them,
// as each rank has W / R of an executor's workers in `harvest`.
int run_peer_harvest(const HarvestOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int workers = static_cast<int>(options.worker_ranks);
  const int farm_ranks = size - workers;
  if (farm_ranks < 1) die(fmt::format("mpi-harvest: {} ranks leave none for the farm beside {} worker ranks", size, workers));
  const bool worker = rank >= farm_ranks;
  MPI_Comm farm_comm = MPI_COMM_NULL;
  check(MPI_Comm_split(MPI_COMM_WORLD, worker ? 1 : 0, rank, &farm_comm), "MPI_Comm_split");
  MPI_Comm_set_errhandler(farm_comm, MPI_ERRORS_RETURN);
  LocalFunction spin(options.library, "spin_us");
  if (worker) {
    serve_tasks(spin.get(), sizeof(uint64_t));
  } else {
    MpiDispatch dispatch;
    for (int w = 0; w < workers; ++w) {
      if (workers >= farm_ranks ? w % farm_ranks == rank : w == rank % workers) dispatch.workers.push_back(farm_ranks + w);
    }
    TaskFarm farm(farm_comm, dispatch, spin.get(), workers, options.window_per_worker);
    harvest_rounds("mpi-harvest", farm, farm_comm, workers, options);
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

struct PeerThroughputOptions {
  std::vector<uint64_t> bytes{64};
  unsigned window = 64;
  uint64_t iterations = 20000;  // tasks per round
  unsigned rounds = 20;
  std::string library;
  bool verbose = false;
};

// One round of mpi-throughput on rank 0: `tasks` echo tasks of `bytes` to worker rank 1 with
// `window` of them in flight, each slot an MPI_Irecv of the result and an MPI_Isend of the task.
// The worker answers in order, so the oldest slot completes first: wait for it, reuse it. Returns
// the rates sampled every 1/20 of the tasks, the first (window filling) left out.
Samples peer_throughput_round(uint64_t bytes, unsigned window, uint64_t tasks) {
  constexpr int kWorker = 1;
  const size_t stride = std::max<uint64_t>(bytes, 1);
  std::vector<std::byte> out(stride * window, std::byte{0x5a}), in(stride * window);
  std::vector<MPI_Request> sends(window, MPI_REQUEST_NULL), receives(window, MPI_REQUEST_NULL);
  const int n = static_cast<int>(bytes);
  uint64_t issued = 0, done = 0;
  auto issue = [&](size_t slot) {
    check(MPI_Irecv(in.data() + slot * stride, n, MPI_BYTE, kWorker, MPI_ANY_TAG, MPI_COMM_WORLD, &receives[slot]),
          "MPI_Irecv");
    check(MPI_Isend(out.data() + slot * stride, n, MPI_BYTE, kWorker, kTagTask, MPI_COMM_WORLD, &sends[slot]),
          "MPI_Isend");
    ++issued;
  };
  const uint64_t every = std::max<uint64_t>(1, tasks / 20);
  Samples rates;
  auto last = Clock::now();
  for (size_t slot = 0; slot < window && issued < tasks; ++slot) issue(slot);
  while (done < tasks) {
    const size_t slot = done % window;
    MPI_Status status;
    check(MPI_Wait(&receives[slot], &status), "MPI_Wait");
    check(MPI_Wait(&sends[slot], MPI_STATUS_IGNORE), "MPI_Wait");
    int received = 0;
    MPI_Get_count(&status, MPI_BYTE, &received);
    if (status.MPI_TAG != kTagResult || received != n) die("an echo task failed on the worker rank");
    ++done;
    if (issued < tasks) issue(slot);
    if (done % every == 0) {
      const auto now = Clock::now();
      rates.push_back(static_cast<double>(every) / (ns_between(last, now) * 1e-9));
      last = now;
    }
  }
  if (std::memcmp(out.data(), in.data(), bytes) != 0) die("the worker rank sent back different bytes");
  if (!rates.empty()) rates.erase(rates.begin());
  return rates;
}

// Rank 0 keeps a window of echo tasks in flight to worker rank 1, which MPI_Recv's each, runs the
// bench library's `echo` and MPI_Send's the result: tasks per second, the MPI-only way.
int run_peer_throughput(const PeerThroughputOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) die(fmt::format("mpi-throughput needs exactly 2 ranks (has {})", size));
  if (rank == 1) {
    LocalFunction echo(options.library, "echo");
    serve_tasks(echo.get(), *std::max_element(options.bytes.begin(), options.bytes.end()));
    return 0;
  }
  for (const uint64_t bytes : options.bytes) {
    peer_throughput_round(bytes, options.window, std::max<uint64_t>(options.iterations / 10, options.window));
    Samples rates;
    for (unsigned round = 0; round < options.rounds; ++round) {
      const Samples samples = peer_throughput_round(bytes, options.window, options.iterations);
      rates.insert(rates.end(), samples.begin(), samples.end());
    }
    if (options.verbose) {
      std::fprintf(stderr, "sidecore-bench: mpi-throughput %llu B: %zu samples, p10 %.0f p50 %.0f p90 %.0f tasks/s\n",
                   static_cast<unsigned long long>(bytes), rates.size(), quantile(rates, 0.1), quantile(rates, 0.5),
                   quantile(rates, 0.9));
    }
    print_result(fmt::format("{{\"bench\":\"mpi-throughput\",\"bytes\":{},\"window\":{},\"tasks_per_s\":{}}}",
                             bytes, options.window, json_number(median(rates), 0)));
  }
  check(MPI_Send(nullptr, 0, MPI_BYTE, 1, kTagStop, MPI_COMM_WORLD), "MPI_Send");
  return 0;
}


// --- mpi-latency ----------------------------------------------------------------------------------------
//
// Three ranks: 0 (CPU 0) measures the MPI-only round trip with 1 (CPU 1), the echo rank; 2 (CPU 0)
// is the only rank with an offload pool and measures the MPIX round trip to the executor worker
// (CPU 1). So the MPI-only pair runs without Sidecore in the process (no progress thread, no
// opal_progress hook), as the peer pattern would. Whichever ranks are not measuring wait in
// sem_wait on a named semaphore, in the kernel, so that each measured pair has its two CPUs to
// itself; rank 0 commands the others with an MPI message followed by a post of their semaphore.

enum Rank : int { kDriver = 0, kEcho = 1, kOffloader = 2 };
enum Tag : int { kTagCommand = 1, kTagEcho = 2, kTagShare = 3, kTagSamples = 4 };
enum Op : uint64_t { kQuit = 0, kEchoFor = 1, kMpixRound = 2, kPooledMpiRound = 3, kClientRound = 4 };

struct Command {
  uint64_t op = kQuit;
  uint64_t count = 0;  // round trips, warm-up included
  uint64_t warmup = 0;
  uint64_t bytes = 0;
  uint64_t peer = 0;   // kEchoFor: the rank to echo for
  uint64_t verbose = 0;  // kMpixRound: print the process's threads' CPU use and switches on stderr
};

struct LatencyOptions {
  std::vector<uint64_t> bytes{64};
  unsigned rounds = 20;
  uint64_t iterations = 2000;
  long quiesce_us = 3000;  // after an MPIX round: the worker's spin window (1000 us) and a margin
  std::string library;
  bool verbose = false;
};

class Wakeups {
 public:
  // Collective: rank 0 creates one semaphore per rank, the others open them.
  explicit Wakeups(int ranks) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char base[64] = {};
    if (rank == 0) std::snprintf(base, sizeof base, "/sidecore-bench-%d-%lld", static_cast<int>(getpid()),
                                 static_cast<long long>(Clock::now().time_since_epoch().count() % 1000000007));
    check(MPI_Bcast(base, sizeof base, MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
    for (int r = 0; r < ranks; ++r) {
      const std::string name = fmt::format("{}-{}", base, r);
      sem_t* sem = rank == 0 ? sem_open(name.c_str(), O_CREAT | O_EXCL, 0600, 0) : SEM_FAILED;
      if (rank == 0 && sem == SEM_FAILED) die(fmt::format("sem_open {}: {}", name, std::strerror(errno)));
      names_.push_back(name);
      sems_.push_back(sem);
    }
    check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    if (rank != 0) {
      for (int r = 0; r < ranks; ++r) {
        sems_[static_cast<size_t>(r)] = sem_open(names_[static_cast<size_t>(r)].c_str(), 0);
        if (sems_[static_cast<size_t>(r)] == SEM_FAILED) {
          die(fmt::format("sem_open {}: {}", names_[static_cast<size_t>(r)], std::strerror(errno)));
        }
      }
    }
    check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    if (rank == 0) {
      for (const auto& name : names_) sem_unlink(name.c_str());  // open ones stay usable
    }
  }
  ~Wakeups() {
    for (sem_t* sem : sems_) {
      if (sem != SEM_FAILED) sem_close(sem);
    }
  }
  Wakeups(const Wakeups&) = delete;
  Wakeups& operator=(const Wakeups&) = delete;

  void wake(int rank) { sem_post(sems_[static_cast<size_t>(rank)]); }
  // Blocks in the kernel (a futex wait): no spinning while another pair measures.
  void sleep(int rank) {
    while (sem_wait(sems_[static_cast<size_t>(rank)]) != 0 && errno == EINTR) {
    }
  }

 private:
  std::vector<std::string> names_;
  std::vector<sem_t*> sems_;
};

void send_command(int to, const Command& command) {
  check(MPI_Send(&command, sizeof command, MPI_BYTE, to, kTagCommand, MPI_COMM_WORLD), "MPI_Send");
}

Command receive_command() {
  Command command;
  check(MPI_Recv(&command, sizeof command, MPI_BYTE, kDriver, kTagCommand, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
        "MPI_Recv");
  return command;
}

// The MPI-only round trip: MPI_Send `bytes` to the echo rank, MPI_Recv its copy.
Samples mpi_round_trips(uint64_t count, uint64_t warmup, uint64_t bytes) {
  std::vector<std::byte> out(std::max<uint64_t>(bytes, 1), std::byte{0x5a}), in(out.size());
  Samples samples;
  samples.reserve(count - std::min(count, warmup));
  const int n = static_cast<int>(bytes);
  for (uint64_t i = 0; i < count; ++i) {
    const auto start = Clock::now();
    check(MPI_Send(out.data(), n, MPI_BYTE, kEcho, kTagEcho, MPI_COMM_WORLD), "MPI_Send");
    check(MPI_Recv(in.data(), n, MPI_BYTE, kEcho, kTagEcho, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    const auto end = Clock::now();
    if (i >= warmup) samples.push_back(ns_between(start, end));
  }
  if (std::memcmp(out.data(), in.data(), bytes) != 0) die("the echo rank sent back different bytes");
  return samples;
}

// The MPIX round trip: submit `echo` of `bytes` (as many back), MPI_Wait.
Samples mpix_round_trips(Offload& offload, uint64_t count, uint64_t warmup, uint64_t bytes) {
  std::vector<std::byte> out(std::max<uint64_t>(bytes, 1), std::byte{0x5a}), in(out.size());
  Samples samples;
  samples.reserve(count - std::min(count, warmup));
  const auto n = static_cast<MPI_Count>(bytes);
  for (uint64_t i = 0; i < count; ++i) {
    MPI_Request request;
    MPI_Status status;
    const auto start = Clock::now();
    check(MPIX_Offload_submit(offload.remote(), out.data(), n, in.data(), n, &request), "MPIX_Offload_submit");
    check(MPI_Wait(&request, &status), "the echo task");
    const auto end = Clock::now();
    if (i >= warmup) samples.push_back(ns_between(start, end));
    int received = 0;
    MPI_Get_count(&status, MPI_BYTE, &received);
    if (static_cast<uint64_t>(received) != bytes) die(fmt::format("echo returned {} of {} bytes", received, bytes));
  }
  if (std::memcmp(out.data(), in.data(), bytes) != 0) die("the echo task returned different bytes");
  return samples;
}

// -v: the same echo task through the C++ client directly (submit, then test() until done), on a
// connection of its own: the transport and executor part of the MPIX round trip, without the MPI
// layer (generalized request, engine lock, opal_progress hook).
Samples client_round_trips(sidecore::Client& client, const sidecore::Function& echo, uint64_t count, uint64_t warmup,
                           uint64_t bytes) {
  std::vector<std::byte> out(std::max<uint64_t>(bytes, 1), std::byte{0x5a}), in(out.size());
  Samples samples;
  samples.reserve(count - std::min(count, warmup));
  for (uint64_t i = 0; i < count; ++i) {
    const auto start = Clock::now();
    const sidecore::TaskId id = client.submit(echo, out.data(), bytes, in.data(), bytes);
    std::optional<sidecore::Completion> done;
    while (!(done = client.test(id))) {
    }
    const auto end = Clock::now();
    if (done->error != sidecore::ErrorKind::none || done->out_bytes != bytes) die("a client echo task failed");
    if (i >= warmup) samples.push_back(ns_between(start, end));
  }
  return samples;
}

// Rank 1: echoes for whoever rank 0 names, and reports its share of CPU 1 during the round (a
// worker that failed to sleep would take half of it).
void serve_echo(Wakeups& wakeups) {
  std::vector<std::byte> buffer;
  while (true) {
    wakeups.sleep(kEcho);
    const Command command = receive_command();
    if (command.op == kQuit) return;
    buffer.resize(std::max<uint64_t>(command.bytes, 1));
    const int peer = static_cast<int>(command.peer);
    const int n = static_cast<int>(command.bytes);
    const double cpu_start = thread_cpu_seconds();
    const auto wall_start = Clock::now();
    for (uint64_t i = 0; i < command.count; ++i) {
      check(MPI_Recv(buffer.data(), n, MPI_BYTE, peer, kTagEcho, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
      check(MPI_Send(buffer.data(), n, MPI_BYTE, peer, kTagEcho, MPI_COMM_WORLD), "MPI_Send");
    }
    double share = (thread_cpu_seconds() - cpu_start) / (ns_between(wall_start, Clock::now()) * 1e-9);
    check(MPI_Send(&share, 1, MPI_DOUBLE, peer, kTagShare, MPI_COMM_WORLD), "MPI_Send");
  }
}

void send_samples(const Samples& samples, double share) {
  check(MPI_Send(samples.data(), static_cast<int>(samples.size()), MPI_DOUBLE, kDriver, kTagSamples, MPI_COMM_WORLD),
        "MPI_Send");
  check(MPI_Send(&share, 1, MPI_DOUBLE, kDriver, kTagShare, MPI_COMM_WORLD), "MPI_Send");
}

// Rank 2: MPIX rounds, and with --verbose MPI-only rounds from a process that holds an idle pool
// and rounds through the C++ client.
void serve_offload(Wakeups& wakeups, Offload& offload, const std::string& library, long quiesce_us) {
  std::optional<sidecore::Client> client;
  sidecore::Function echo;
  while (true) {
    wakeups.sleep(kOffloader);
    const Command command = receive_command();
    if (command.op == kQuit) return;
    Samples samples;
    double share = 1.0;
    if (command.op == kMpixRound || command.op == kClientRound) {
      if (command.op == kMpixRound) {
        const auto before = command.verbose ? thread_usage() : std::map<int, ThreadUsage>{};
        samples = mpix_round_trips(offload, command.count, command.warmup, command.bytes);
        if (command.verbose) describe_threads("mpix round", before);
      } else {
        if (!client) {
          try {
            client.emplace(sidecore::Client::from_environment());
            echo = client->lookup(library, "echo");
          } catch (const sidecore::Error& e) {
            die(std::string("sidecore client: ") + e.what());
          }
        }
        samples = client_round_trips(*client, echo, command.count, command.warmup, command.bytes);
      }
      // Let the worker's spin window run out before anyone measures next to it.
      std::this_thread::sleep_for(std::chrono::microseconds(quiesce_us));
    } else {
      samples = mpi_round_trips(command.count, command.warmup, command.bytes);
      check(MPI_Recv(&share, 1, MPI_DOUBLE, kEcho, kTagShare, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    }
    wakeups.wake(kDriver);
    send_samples(samples, share);
  }
}

struct Side {
  Samples all, round_medians, echo_shares;
  void add(const Samples& samples) {
    round_medians.push_back(median(samples));
    all.insert(all.end(), samples.begin(), samples.end());
  }
};

class LatencyDriver {
 public:
  LatencyDriver(Wakeups& wakeups, const LatencyOptions& options) : wakeups_(wakeups), options_(options) {}

  // Rank 0 with rank 1.
  void mpi_round(uint64_t bytes, Side* side) {
    send_command(kEcho, Command{kEchoFor, count(), warmup(), bytes, kDriver});
    wakeups_.wake(kEcho);
    const Samples samples = mpi_round_trips(count(), warmup(), bytes);
    double share = 0;
    check(MPI_Recv(&share, 1, MPI_DOUBLE, kEcho, kTagShare, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    settle();
    if (side) {
      side->add(samples);
      side->echo_shares.push_back(share);
    }
  }

  // Rank 2 with the executor, or (pooled) rank 2 with rank 1; rank 0 sleeps meanwhile.
  void offloader_round(uint64_t op, uint64_t bytes, Side* side) {
    if (op == kPooledMpiRound) {
      send_command(kEcho, Command{kEchoFor, count(), warmup(), bytes, kOffloader});
      wakeups_.wake(kEcho);
    }
    // Thread details of the MPIX caller in the first recorded round only: one sample is enough.
    const bool details = options_.verbose && op == kMpixRound && side != nullptr && side->all.empty();
    send_command(kOffloader, Command{op, count(), warmup(), bytes, 0, details ? 1u : 0u});
    wakeups_.wake(kOffloader);
    wakeups_.sleep(kDriver);
    Samples samples(count() - warmup());
    double share = 0;
    check(MPI_Recv(samples.data(), static_cast<int>(samples.size()), MPI_DOUBLE, kOffloader, kTagSamples,
                   MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Recv");
    check(MPI_Recv(&share, 1, MPI_DOUBLE, kOffloader, kTagShare, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    settle();
    if (side) {
      side->add(samples);
      if (op == kPooledMpiRound) side->echo_shares.push_back(share);
    }
  }

  void quit() {
    for (int rank : {kEcho, kOffloader}) {
      send_command(rank, Command{});
      wakeups_.wake(rank);
    }
  }

 private:
  uint64_t count() const noexcept { return options_.iterations + warmup(); }
  uint64_t warmup() const noexcept { return std::max<uint64_t>(1, options_.iterations / 10); }
  // The rank that just finished goes back to sem_wait within microseconds; give it that.
  static void settle() { std::this_thread::sleep_for(std::chrono::microseconds(200)); }

  Wakeups& wakeups_;
  const LatencyOptions& options_;
};

void describe(const char* label, uint64_t bytes, const Side& side) {
  std::fprintf(stderr,
               "sidecore-bench: mpi-latency %llu B %s: %zu samples, p10 %.3f p50 %.3f p75 %.3f p90 %.3f p99 %.3f us",
               static_cast<unsigned long long>(bytes), label, side.all.size(), quantile(side.all, 0.1) * 1e-3,
               quantile(side.all, 0.5) * 1e-3, quantile(side.all, 0.75) * 1e-3, quantile(side.all, 0.9) * 1e-3,
               quantile(side.all, 0.99) * 1e-3);
  if (!side.echo_shares.empty()) {
    std::fprintf(stderr, "; echo rank's CPU share per round: min %.2f median %.2f",
                 *std::min_element(side.echo_shares.begin(), side.echo_shares.end()), median(side.echo_shares));
  }
  std::fputc('\n', stderr);
}

int run_latency(const LatencyOptions& options) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 3) die(fmt::format("mpi-latency needs exactly 3 ranks (has {})", size));
  Wakeups wakeups(size);
  if (rank == kEcho) {
    serve_echo(wakeups);
  } else if (rank == kOffloader) {
    Offload offload(MPI_COMM_SELF, options.library, "echo");
    serve_offload(wakeups, offload, options.library, options.quiesce_us);
  } else {
    LatencyDriver driver(wakeups, options);
    for (const uint64_t bytes : options.bytes) {
      Side mpi, mpix, pooled, client;
      // One unrecorded round of each side: connections, first touches, the worker's first call.
      driver.mpi_round(bytes, nullptr);
      driver.offloader_round(kMpixRound, bytes, nullptr);
      for (unsigned round = 0; round < options.rounds; ++round) {
        if (round % 2 == 0) {
          driver.mpi_round(bytes, &mpi);
          driver.offloader_round(kMpixRound, bytes, &mpix);
        } else {
          driver.offloader_round(kMpixRound, bytes, &mpix);
          driver.mpi_round(bytes, &mpi);
        }
        if (options.verbose) {
          driver.offloader_round(kPooledMpiRound, bytes, &pooled);
          driver.offloader_round(kClientRound, bytes, &client);
        }
      }
      const double a = median(mpix.all) * 1e-3, b = median(mpi.all) * 1e-3;
      if (options.verbose) {
        describe("mpix          ", bytes, mpix);
        describe("mpi           ", bytes, mpi);
        describe("mpi, idle pool", bytes, pooled);
        describe("client, no MPI", bytes, client);
        Samples paired;
        for (size_t i = 0; i < std::min(mpix.round_medians.size(), mpi.round_medians.size()); ++i) {
          paired.push_back(mpix.round_medians[i] / mpi.round_medians[i]);
        }
        std::fprintf(stderr,
                     "sidecore-bench: mpi-latency %llu B paired: median of %zu per-round ratios %.3f (min %.3f, max "
                     "%.3f); an idle pool in the process makes the MPI round trip %.3f times slower; the MPI "
                     "layer adds %.3f us to the client's round trip\n",
                     static_cast<unsigned long long>(bytes), paired.size(), median(paired),
                     *std::min_element(paired.begin(), paired.end()), *std::max_element(paired.begin(), paired.end()),
                     median(pooled.all) * 1e-3 / b, a - median(client.all) * 1e-3);
      }
      if (!mpi.echo_shares.empty() && median(mpi.echo_shares) < 0.9) {
        std::fprintf(stderr,
                     "sidecore-bench: warning: the echo rank had only %.0f%% of its CPU during the MPI rounds: "
                     "another program, or a worker that does not sleep, ran on it\n",
                     median(mpi.echo_shares) * 100);
      }
      print_result(fmt::format("{{\"bench\":\"mpi-latency\",\"bytes\":{},\"mpix_rtt_us\":{},\"mpi_rtt_us\":{},"
                               "\"ratio\":{}}}",
                               bytes, json_number(a, 3), json_number(b, 3), json_number(a / b, 3)));
    }
    driver.quit();
  }
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sidecore-bench-mpi: the MPI program of `sidecore-bench harvest` and `sidecore-bench mpi-latency`.\n"
               "Run it through those subcommands; by hand:\n"
               "  sidecore-run --cores 1 -- mpirun -n 1 --bind-to none sidecore-bench-mpi harvest --library L\n"
               "  sidecore-run --cores 1 -- mpirun -n 3 --bind-to none sidecore-bench-mpi mpi-latency --library L\n"
               "The MPI-only peer (bench/compare.sh runs it; no executor):\n"
               "  mpirun -n 2 --bind-to none sidecore-bench-mpi mpi-harvest --library L --rank-cpus 0,1\n"
               "  mpirun -n 2 --bind-to none sidecore-bench-mpi mpi-throughput --library L --rank-cpus 0,1\n"
               "Results: lines 'sidecore-bench-result {json}' from rank 0 on stdout.",
               "sidecore-bench-mpi"};
  app.require_subcommand(1);
  std::vector<int> rank_cpus;

  // The two task farms, Sidecore's and the MPI-only one, take the same options.
  auto add_farm_options = [&rank_cpus](CLI::App* command, HarvestOptions& farm) {
    command->add_option("--task-us", farm.task_us, "task lengths in microseconds")->delimiter(',');
    command->add_option("--tasks", farm.tasks, "tasks per run (0: --seconds of work per rank alone)");
    command->add_option("--seconds", farm.seconds, "with --tasks 0: seconds of work per rank alone");
    command->add_option("--rounds", farm.rounds, "runs of each kind")->check(CLI::Range(1u, 1000u));
    command->add_option("--window-per-worker", farm.window_per_worker, "tasks in flight per worker")
        ->check(CLI::Range(1u, 64u));
    command->add_option("--library", farm.library, "the bench function library")->required();
    command->add_option("--rank-cpus", rank_cpus, "CPU of each rank (cycled)")->delimiter(',');
    command->add_flag("-v,--verbose", farm.verbose, "per-round details on stderr");
  };
  HarvestOptions harvest;
  CLI::App* harvest_command = app.add_subcommand("harvest", "the task farm, ranks alone and ranks plus executors");
  add_farm_options(harvest_command, harvest);

  HarvestOptions peer_harvest;
  CLI::App* peer_harvest_command = app.add_subcommand(
      "mpi-harvest", "the task farm the MPI-only way: the last --worker-ranks ranks MPI_Recv tasks, run them and "
                     "MPI_Send the results");
  add_farm_options(peer_harvest_command, peer_harvest);
  peer_harvest_command->add_option("--worker-ranks", peer_harvest.worker_ranks, "ranks that serve tasks (the last ones)")
      ->check(CLI::Range(1u, 1024u));

  PeerThroughputOptions peer_throughput;
  CLI::App* peer_throughput_command = app.add_subcommand(
      "mpi-throughput", "echo tasks per second the MPI-only way, a window in flight from rank 0 to worker rank 1 (2 ranks)");
  peer_throughput_command->add_option("--bytes", peer_throughput.bytes, "sizes in bytes")->delimiter(',');
  peer_throughput_command->add_option("--window", peer_throughput.window, "tasks in flight")
      ->check(CLI::Range(1u, 1024u));
  peer_throughput_command->add_option("--iterations", peer_throughput.iterations, "tasks per round")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000000}));
  peer_throughput_command->add_option("--rounds", peer_throughput.rounds, "rounds")->check(CLI::Range(1u, 100000u));
  peer_throughput_command->add_option("--library", peer_throughput.library, "the bench function library")->required();
  peer_throughput_command->add_option("--rank-cpus", rank_cpus, "CPU of each rank (cycled)")->delimiter(',');
  peer_throughput_command->add_flag("-v,--verbose", peer_throughput.verbose, "quantiles on stderr");

  LatencyOptions latency;
  CLI::App* latency_command = app.add_subcommand("mpi-latency", "MPIX round trip next to the MPI-only one (3 ranks)");
  latency_command->add_option("--bytes", latency.bytes, "sizes in bytes")->delimiter(',');
  latency_command->add_option("--rounds", latency.rounds, "rounds of each side")->check(CLI::Range(1u, 100000u));
  latency_command->add_option("--iterations", latency.iterations, "round trips per round")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}));
  latency_command->add_option("--quiesce-us", latency.quiesce_us, "pause after an MPIX round");
  latency_command->add_option("--library", latency.library, "the bench function library")->required();
  latency_command->add_option("--rank-cpus", rank_cpus, "CPU of each rank (cycled)")->delimiter(',');
  latency_command->add_flag("-v,--verbose", latency.verbose, "per-side details on stderr");
  CLI11_PARSE(app, argc, argv);

  // Pinned before MPI_Init, so that the threads MPI and the offload library start stay here too.
  if (!rank_cpus.empty()) {
    const int rank = launch_rank();
    if (rank < 0) {
      std::fprintf(stderr, "sidecore-bench-mpi: warning: no launcher rank variable; pinning after MPI_Init\n");
    } else {
      pin_to(rank_cpus[static_cast<size_t>(rank) % rank_cpus.size()]);
    }
  }
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  if (!rank_cpus.empty() && launch_rank() < 0) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    pin_to(rank_cpus[static_cast<size_t>(rank) % rank_cpus.size()]);
  }
  for (const auto* sizes : {&latency.bytes, &peer_throughput.bytes}) {
    for (const uint64_t bytes : *sizes) {
      if (bytes > (uint64_t{1} << 30)) die("--bytes: at most 1 GiB");
    }
  }
  if (peer_throughput.bytes.empty()) die("--bytes: at least one size");
  for (const auto* lengths : {&harvest.task_us, &peer_harvest.task_us}) {
    for (const uint64_t us : *lengths) {
      if (us == 0 || us > 10'000'000) die("--task-us: 1 to 10000000");
    }
  }
  int status = 0;
  if (harvest_command->parsed()) {
    status = run_harvest(harvest);
  } else if (peer_harvest_command->parsed()) {
    status = run_peer_harvest(peer_harvest);
  } else if (peer_throughput_command->parsed()) {
    status = run_peer_throughput(peer_throughput);
  } else {
    status = run_latency(latency);
  }
  MPI_Finalize();
  return status;
}
