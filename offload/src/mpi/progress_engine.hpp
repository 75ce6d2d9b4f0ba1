// Progress for offload requests that never needs the application's help and never spins on the
// rank's core.
//
// One engine per process, shared by every pool. A background thread makes progress and completes
// generalized requests (MPI_Grequest_complete). While tasks are in flight and nothing arrives it
// sleeps on the client's doorbell (shm) or completion-queue descriptor (tcp, net), which workers
// ring after each result; with nothing in flight it sleeps on a condition variable that submit
// signals. Under Open MPI the engine also hooks opal_progress, so a rank blocked in MPI_Wait or
// polling with MPI_Test drives its offload requests itself, at polling latency; the thread then
// stays out of the way: while the application has made an MPI (or MPIX) call in each of the last
// milliseconds, the thread only naps for a millisecond at a time, arms no doorbell and is not
// woken by submit, so it costs the rank's core one short wake-up per millisecond instead of one
// per result. All client access happens under one mutex; the hook only try-locks it, and returns
// at once (one atomic load) when no offload request is in flight.
//
// Below MPI_THREAD_MULTIPLE, MPI may only be called from the application's thread, and Open MPI
// then updates request reference counts without atomics. So at those levels the thread does all
// the data movement (results land in the user's buffers, statuses are filled) but leaves the
// MPI_Grequest_complete calls to the hook, which runs on the application's thread inside its next
// MPI call. Completion is only observable through MPI calls, so nothing is lost by the wait.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "sidecore/sidecore.hpp"

namespace sidecore::mpi {

class Pool;

class ProgressEngine {
 public:
  static ProgressEngine& instance();

  // Registers a pool (starting the thread and the hook with the first one).
  void add(Pool* pool);
  // Unregisters a pool (stopping the thread and the hook with the last one). Call without the lock.
  void remove(Pool* pool);
  // The lock around every use of a pool's clients.
  std::mutex& mutex() noexcept { return mutex_; }
  // Before a task's request starts, with the lock held: makes room for its completion, so that
  // complete() never allocates. Throws std::bad_alloc.
  void reserve_completion();
  // When a task's request has started: counts it in the pool's and the engine's tasks in flight.
  void started(std::atomic<size_t>& pool_in_flight) noexcept;
  // After a submit, so an idle thread starts watching the new task. Call without the lock.
  void submitted() noexcept;
  // Makes progress on every pool once; the lock must be held. Returns events handled. A client
  // that throws fails its executor (Pool::fail_executor).
  size_t progress_locked() noexcept;
  // progress_locked() on the application's thread: also completes requests the thread deferred.
  // Without `poll_clients`, only those (after a submit, which has just used the queues).
  size_t progress_on_application_thread_locked(bool poll_clients = true) noexcept;
  // When the progress thread sleeps on `client` (outside the lock): wakes it, and has it release
  // the failed executor `index` of `pool` once it is awake (Pool::release_failed_client). False
  // when it does not: the caller releases it. The lock must be held.
  bool release_later(Pool* pool, size_t index, Client& client) noexcept;
  // Completes a finished request now or, on the progress thread below MPI_THREAD_MULTIPLE, queues
  // it for the application's thread. The lock must be held.
  void complete(MPI_Request request, std::atomic<size_t>* pool_in_flight) noexcept;

 private:
  ProgressEngine() = default;
  // The progress thread: run_loop(), restarted after anything it throws.
  void run() noexcept;
  void run_loop();
  static int opal_hook() noexcept;
  // The application's thread is inside an MPI or MPIX call.
  void note_application_poll() noexcept;
  // Whether it has been since the count was `seen` (which this updates).
  bool application_polled_since(uint64_t& seen) const noexcept;

  struct Deferred {
    MPI_Request request;
    std::atomic<size_t>* pool_in_flight;
  };
  std::mutex mutex_;
  std::vector<Deferred> deferred_;  // completed tasks whose MPI_Grequest_complete is still due
  bool defer_off_thread_ = false;   // below MPI_THREAD_MULTIPLE with the hook available
  std::condition_variable idle_;
  std::vector<Pool*> pools_;
  std::thread thread_;
  bool stop_ = false;
  Client* sleeping_on_ = nullptr;  // the client the thread sleeps on, outside the lock
  std::optional<std::pair<Pool*, size_t>> release_on_waking_;  // its executor, if it failed meanwhile
  // Tasks started and not yet handed to MPI_Grequest_complete, over all pools: the hook's fast exit.
  std::atomic<size_t> active_{0};
  // The thread sleeps on idle_ until submit wakes it (long) or naps (short; submit lets it be).
  enum class Sleep : int { awake, nap, long_wait };
  std::atomic<Sleep> thread_sleep_{Sleep::awake};
  std::atomic<uint64_t> application_polls_{0};
  bool hook_registered_ = false;
};

}  // namespace sidecore::mpi
