// 12: an MPI task farm that harvests idle cores (the project's demo). Each rank has its own list of
// compute tasks with heavy-tailed durations (Pareto, shape 2, mean 200 us by default, seeded per
// rank; the tasks spin on the clock). The farm runs twice in one launch: first every rank computes
// all its tasks itself; then every rank keeps a window of tasks offloaded to the executor's workers
// and computes the others itself, collecting finished offloads with MPI_Testsome between its own
// tasks. It prints both checksums (they must agree), both times, the speedup, where the tasks ran,
// and the efficiency: the speedup over the growth in cores, (ranks + workers) / ranks.
//
//   sidecore-run --cores 1 -- mpirun -n 1 taskset -c 0 ./12_mpi_task_farm ./libsidecore_examples.so
//       [TASKS_PER_RANK] [MEAN_US] [WINDOW_PER_WORKER]     (defaults: 10000, 200, 4)
#include <dlfcn.h>
#include <mpi.h>
#include <mpix_offload.h>
#include <sidecore/function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

struct SpinArgs {  // the layout example_functions.c's spin_task expects
  uint64_t spin_ns;
  uint64_t seed;
};

// Pareto(shape 2) durations with the given mean (capped at 250 means), by inverting the CDF on
// mt19937_64, whose output the standard fixes: the same tasks on every machine.
std::vector<SpinArgs> make_tasks(int rank, size_t count, double mean_us) {
  std::mt19937_64 random(20240601u + static_cast<uint64_t>(rank));
  std::vector<SpinArgs> tasks(count);
  for (size_t i = 0; i < count; ++i) {
    const double uniform = static_cast<double>((random() >> 11) + 1) * 0x1.0p-53;  // (0, 1]
    const double us = std::min(mean_us / 2 / std::sqrt(uniform), 250 * mean_us);   // scale = mean / 2
    tasks[i] = {static_cast<uint64_t>(us * 1000), (static_cast<uint64_t>(rank) << 32) | i};
  }
  return tasks;
}

// Sums over the ranks, after one farm run.
struct Farm {
  double seconds = 0;  // the slowest rank's
  uint64_t checksum = 0, on_ranks = 0, offloaded = 0, failed = 0;
};

// Runs `tasks` on this rank, keeping up to `window` of them offloaded (0: none), between barriers.
Farm run_farm(const std::vector<SpinArgs>& tasks, sidecore_function_t local, MPIX_Offload_function remote,
              size_t window) {
  std::vector<uint64_t> outputs(tasks.size());
  std::vector<MPI_Request> slots(window, MPI_REQUEST_NULL);  // the offloads in flight
  std::vector<int> done(window);
  std::vector<MPI_Status> statuses(window);
  uint64_t mine[4] = {0, 0, 0, 0};  // checksum, on this rank, offloaded, failed
  size_t next = 0, in_flight = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  const double start = MPI_Wtime();
  while (next < tasks.size() || in_flight > 0) {
    for (size_t s = 0; s < window && next < tasks.size(); ++s) {  // refill the window
      if (slots[s] != MPI_REQUEST_NULL) continue;
      if (MPIX_Offload_submit(remote, &tasks[next], sizeof(SpinArgs), &outputs[next], sizeof(uint64_t), &slots[s]) !=
          MPI_SUCCESS) {
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      ++next, ++in_flight, ++mine[2];
    }
    if (next < tasks.size()) {  // one task here, then collect whatever finished meanwhile
      size_t bytes = 0;
      mine[3] += local(&tasks[next], sizeof(SpinArgs), &outputs[next], sizeof(uint64_t), &bytes) != 0;
      ++next, ++mine[1];
    }
    if (in_flight == 0) continue;
    int completed = 0;
    const int rc = next < tasks.size()
                       ? MPI_Testsome(static_cast<int>(window), slots.data(), &completed, done.data(), statuses.data())
                       : MPI_Waitsome(static_cast<int>(window), slots.data(), &completed, done.data(), statuses.data());
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) MPI_Abort(MPI_COMM_WORLD, 1);
    for (int k = 0; k < completed; ++k, --in_flight) {
      int bytes = 0;
      MPI_Get_count(&statuses[k], MPI_BYTE, &bytes);
      mine[3] += (rc == MPI_ERR_IN_STATUS && statuses[k].MPI_ERROR != MPI_SUCCESS) || bytes != sizeof(uint64_t);
      // Some Open MPI versions leave a failed request allocated: free it, or Testsome reports it again.
      if (slots[done[k]] != MPI_REQUEST_NULL) MPI_Request_free(&slots[done[k]]);
    }
  }
  Farm farm;
  farm.seconds = MPI_Wtime() - start;
  for (uint64_t output : outputs) mine[0] += output;  // order-free: the same wherever each task ran
  MPI_Allreduce(MPI_IN_PLACE, &farm.seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  uint64_t sums[4];
  MPI_Allreduce(mine, sums, 4, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  farm.checksum = sums[0], farm.on_ranks = sums[1], farm.offloaded = sums[2], farm.failed = sums[3];
  return farm;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const size_t tasks_per_rank = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 10000;
  const double mean_us = argc > 3 ? std::strtod(argv[3], nullptr) : 200.0;
  const int window_per_worker = argc > 4 ? std::atoi(argv[4]) : 4;
  if (argc < 2 || tasks_per_rank == 0 || !(mean_us > 0) || window_per_worker < 1) {
    if (rank == 0)
      std::fprintf(stderr, "usage: %s FUNCTION_LIBRARY [TASKS_PER_RANK] [MEAN_US] [WINDOW_PER_WORKER]\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);

  // The rank runs the very function the workers run, from the same library.
  void* library = dlopen(argv[1], RTLD_NOW);
  auto* local = library ? reinterpret_cast<sidecore_function_t>(dlsym(library, "spin_task")) : nullptr;
  MPIX_Offload_pool pool;
  MPIX_Offload_function remote;
  if (local == nullptr || MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool) != MPI_SUCCESS ||
      MPIX_Offload_function_lookup(pool, argv[1], "spin_task", &remote) != MPI_SUCCESS) {
    std::fprintf(stderr, "rank %d: cannot load spin_task from %s or set up the offload pool\n", rank, argv[1]);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int workers = 0;
  MPIX_Offload_pool_size(pool, nullptr, &workers);
  // Several tasks in flight per worker this rank shares: the rank refills the window only between its
  // own tasks, and MPI_Testsome may report a finished task a call late, so the workers need a queue.
  const size_t window = static_cast<size_t>(window_per_worker * std::max(1, (workers + ranks - 1) / ranks));

  const std::vector<SpinArgs> tasks = make_tasks(rank, tasks_per_rank, mean_us);
  double work = 0;
  for (const SpinArgs& task : tasks) work += static_cast<double>(task.spin_ns) * 1e-9;
  MPI_Allreduce(MPI_IN_PLACE, &work, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);

  const Farm alone = run_farm(tasks, local, remote, 0);
  const Farm harvest = run_farm(tasks, local, remote, window);

  const bool correct = alone.failed + harvest.failed == 0 && alone.checksum == harvest.checksum;
  if (rank == 0) {
    const double speedup = alone.seconds / harvest.seconds, cores = static_cast<double>(ranks + workers) / ranks;
    std::printf("task farm: %d rank(s) x %zu tasks, Pareto(2) durations with mean %.1f us: %.3f s of work\n", ranks,
                tasks_per_rank, work / static_cast<double>(ranks * tasks_per_rank) * 1e6, work);
    std::printf("  ranks alone:         %7.3f s, checksum %016llx, %llu tasks on the ranks\n", alone.seconds,
                static_cast<unsigned long long>(alone.checksum), static_cast<unsigned long long>(alone.on_ranks));
    std::printf("  ranks + %d worker(s): %7.3f s, checksum %016llx, %llu tasks on the ranks, %llu offloaded%s\n",
                workers, harvest.seconds, static_cast<unsigned long long>(harvest.checksum),
                static_cast<unsigned long long>(harvest.on_ranks), static_cast<unsigned long long>(harvest.offloaded),
                workers ? "" : " (no executor: they ran inline in the ranks)");
    std::printf("  speedup %.2fx; efficiency = speedup / ((ranks + workers) / ranks) = %.2f / %.2f = %.2f\n", speedup,
                speedup, cores, speedup / cores);
    std::printf("  checksums %s\n", correct ? "agree: correct" : "DIFFER, or a task failed: WRONG");
  }

  MPIX_Offload_function_free(&remote);
  MPIX_Offload_pool_free(&pool);
  dlclose(library);
  MPI_Finalize();
  return correct ? 0 : 1;
}
