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
// per result. Under MPICH the requests' own poll and wait functions (pool.cpp) play the hook's
// part, for the requests the application tests or waits on; there every MPI_Grequest_complete runs
// on the application's thread, at every thread level, outside every lock of ours (MPICH enters its
// global critical section in it, and holds that section while a request's cancel callback waits
// for a connection's lock).
//
// Locks: each connection (one executor's client) has its own mutex, and a submit takes only that
// one: a thread that submits alone never meets another thread's lock, and several submitting
// threads meet only on a connection they share. The hook finds the connections in a table it
// reads without a lock (entries change under the engine's mutex; a connection is never freed,
// only retired, so a hook that read an entry just before it changed still holds a valid one) and
// only try-locks each, so it never blocks an MPI call, and returns at once (one atomic load) when
// no offload request is in flight. The engine's own mutex guards the table's changes and the
// thread's state; the thread holds it for its passes. Completed requests go back to a lock-free
// cache, and requests awaiting the application's thread to a lock-free list.
//
// Below MPI_THREAD_MULTIPLE, MPI may only be called from the application's thread, and Open MPI
// then updates request reference counts without atomics. So at those levels the thread does all
// the data movement (results land in the user's buffers, statuses are filled) but leaves the
// MPI_Grequest_complete calls to the hook (or MPICH's poll), which runs on the application's thread
// inside its next MPI call. Completion is only observable through MPI calls, so nothing is lost by the wait.
#pragma once

#include <mpi.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "sidecore/sidecore.hpp"

namespace sidecore::mpi {

// Built against MPICH (any mpi.h that defines MPICH_VERSION): offload requests are MPICH's extended
// generalized requests, whose poll and wait functions (pool.cpp) MPICH runs on the application's
// thread; they take the opal_progress hook's part.
#ifdef MPICH_VERSION
inline constexpr bool kMpichGrequests = true;
#else
inline constexpr bool kMpichGrequests = false;
#endif

class Pool;
struct Connection;
struct OffloadRequest;

class ProgressEngine {
 public:
  static ProgressEngine& instance();

  // Registers a pool and takes its connections (starting the thread and the hook with the first
  // one).
  void add(Pool* pool);
  // Unregisters a pool and destroys its connections (stopping the thread and the hook with the
  // last one); the pool has drained.
  void remove(Pool* pool);
  // When a task's request has started: counts it in the pool's and the engine's tasks in flight.
  void started(std::atomic<size_t>& pool_in_flight) noexcept;
  // After a submit, so an idle thread starts watching the new task.
  void submitted() noexcept;
  // Completes a finished request (its completion and error are filled) now or, under MPICH and on
  // the progress thread below MPI_THREAD_MULTIPLE, queues it for the application's thread. After
  // this the request may be freed at any time.
  void complete(OffloadRequest* request) noexcept;
  // On the application's thread (any thread but the progress thread): completes the requests the
  // thread deferred and, with `poll_clients`, makes progress on every connection whose lock is
  // free. Returns events.
  size_t progress_on_application_thread(bool poll_clients = true) noexcept;

 private:
  ProgressEngine() = default;
  // The progress thread: run_loop(), restarted after anything it throws.
  void run() noexcept;
  void run_loop();
  static int opal_hook() noexcept;
  // Whether the caller is the progress thread (everyone else is the application).
  bool on_progress_thread() const noexcept;
  // Progress on every connection: blocking on their locks (the thread) or not (the hook).
  size_t progress_connections(bool try_only) noexcept;
  size_t complete_deferred() noexcept;
  // The application's thread is inside an MPI or MPIX call.
  void note_application_poll() noexcept;
  // Whether it has been since the count was `seen` (which this updates).
  bool application_polled_since(uint64_t& seen) const noexcept;

  static constexpr size_t kMaxConnections = 1024;
  std::mutex mutex_;  // changes to table_, pools_, connections_; stop_, sleeping_on_; the thread's passes
  std::vector<Pool*> pools_;
  // Every connection ever registered, live or retired: never freed (a few hundred bytes each),
  // so that a lock-free reader of table_ never holds a dangling pointer.
  std::vector<std::unique_ptr<Connection>> connections_;
  std::array<std::atomic<Connection*>, kMaxConnections> table_{};  // the live ones; null: free
  std::atomic<size_t> table_end_{0};                               // entries at and past it have never been used
  std::condition_variable idle_;
  std::condition_variable thread_back_;  // sleeping_on_ went back to null
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};  // the running progress thread's
  bool stop_ = false;
  Connection* sleeping_on_ = nullptr;  // the connection the thread sleeps on, outside every lock
  // Below MPI_THREAD_MULTIPLE under Open MPI's opal_progress hook: the thread leaves completion to
  // the application's thread. (Under MPICH, complete() leaves it there at every level.)
  bool defer_off_thread_ = false;
  // Completed requests whose MPI_Grequest_complete is due on the application's thread: a
  // lock-free stack (pushed by the thread, taken whole by the application's thread).
  std::atomic<OffloadRequest*> deferred_{nullptr};
  std::atomic<size_t> deferred_count_{0};  // how many (a hint for the thread's sleep)
  // Tasks started and not yet handed to MPI_Grequest_complete, over all pools: the hook's fast exit.
  std::atomic<size_t> active_{0};
  // The thread sleeps on idle_ until submit wakes it (long) or naps (short; submit lets it be).
  enum class Sleep : int { awake, nap, long_wait };
  std::atomic<Sleep> thread_sleep_{Sleep::awake};
  std::atomic<uint64_t> application_polls_{0};
  bool hook_registered_ = false;
};

}  // namespace sidecore::mpi
