// The task farm that `harvest` and `mpi-harvest` share: a rank computes tasks itself and keeps a
// window of them handed to workers, either offloaded with MPIX_Offload_submit (MpixDispatch) or
// sent to MPI-only worker ranks (MpiDispatch); the same loop, so the two figures compare.
#pragma once

#include <fmt/format.h>
#include <mpi.h>
#include <mpix_offload.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mpi/common.hpp"

namespace sidecore::bench::mpi {

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
      const int rc =
          unassigned > 0
              ? MPI_Testsome(static_cast<int>(window_), requests.data(), &completed, indices.data(), statuses.data())
              : MPI_Waitsome(static_cast<int>(window_), requests.data(), &completed, indices.data(), statuses.data());
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

}  // namespace sidecore::bench::mpi
