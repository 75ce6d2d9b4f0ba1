// The C++ side of MPIX_Offload_pool and MPIX_Offload_function.
#pragma once

#include <mpi.h>

#include <atomic>
#include <list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "mpi/pool_settings.hpp"
#include "sidecore/function.h"
#include "sidecore/sidecore.hpp"

namespace sidecore::mpi {

// A failure of a setup call, with the kind the caller sees.
class PoolError : public std::runtime_error {
 public:
  PoolError(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

class Pool;
struct OffloadRequest;

// What a task's completion callback carries: its request, or null once the pool has completed the
// request without the client (the client failed). The executor owns its tickets and outlives its
// client, so the late callbacks a failed client makes from its destructor land here harmlessly.
struct Ticket {
  OffloadRequest* request = nullptr;
  size_t executor = 0;  // the index of its executor in the pool
};

// What a generalized request carries: set by the completion callback, read by query_fn.
struct OffloadRequest {
  MPI_Request request = MPI_REQUEST_NULL;
  Pool* pool = nullptr;
  Client* client = nullptr;         // null once the task is done with its client
  std::list<Ticket>::iterator ticket;  // its ticket, while client is set
  TaskId task = kNoTask;
  Completion completion;
  int error = MPI_SUCCESS;
};

class OffloadFunction;

class Pool {
 public:
  // Collective over `comm`: exchanges every rank's executor card and connects to the executors
  // the scope allows. Throws PoolError.
  Pool(MPI_Comm comm, const PoolSettings& settings);
  ~Pool() noexcept;  // the caller has drained the pool and unregistered it
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  struct Executor {
    std::list<Ticket> tickets;  // its tasks not yet completed; declared first, so destroyed last
    std::unique_ptr<Client> client;  // null once it has failed and been released
    bool local = false;
    // Its client threw: the pool no longer calls it, and its tasks complete with EXECUTOR_LOST.
    bool failed = false;
  };

  // The pool's private copy of the communicator, for its own collectives.
  MPI_Comm comm() const noexcept { return comm_; }
  // The communicator the pool was created on: errors go through its current error handler.
  MPI_Comm user_comm() const noexcept { return user_comm_; }
  const PoolSettings& settings() const noexcept { return settings_; }
  std::vector<Executor>& executors() noexcept { return executors_; }
  int local_workers() const noexcept { return local_workers_; }
  int total_workers() const noexcept { return total_workers_; }
  // Tasks submitted and not yet delivered to their request.
  std::atomic<size_t>& in_flight() noexcept { return in_flight_; }

  // Resolves a function on every executor (or in this process when there is none and the
  // fallback is inline). Throws PoolError. Takes the progress lock itself.
  std::unique_ptr<OffloadFunction> lookup(const std::string& library, const std::string& symbol);
  // Starts a task and its generalized request; returns an MPI error code (MPI_SUCCESS).
  int submit(OffloadFunction& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
             MPI_Request* request);
  // Makes progress until no task of this pool is in flight.
  void drain();
  // After the client of executor `index` threw (`why`): stops using it, destroys it and completes
  // its pending tasks with EXECUTOR_LOST; if the progress thread sleeps on it, wakes the thread,
  // which finishes the job (release_failed_client). The engine's lock must be held.
  void fail_executor(size_t index, std::string_view why) noexcept;
  // Destroys a failed executor's client, then completes its pending tasks with EXECUTOR_LOST: in
  // that order, so that no result lands in a buffer (inline, or by RMA) after its request has
  // completed. The engine's lock must be held, and no thread may be using the client.
  void release_failed_client(size_t index) noexcept;
  // Runs `call` on executor `index`'s client; whatever it throws fails the executor. The engine's
  // lock must be held. False when the executor has failed (now or before).
  template <class Call>
  bool use_client(size_t index, Call&& call) noexcept;

 private:
  // The executor for the next task; none when every executor's client has failed.
  std::optional<size_t> pick_executor() noexcept;

  MPI_Comm user_comm_ = MPI_COMM_NULL;
  MPI_Comm comm_ = MPI_COMM_NULL;
  PoolSettings settings_;
  std::vector<Executor> executors_;
  int local_workers_ = 0;
  int total_workers_ = 0;
  std::atomic<size_t> in_flight_{0};
  size_t next_executor_ = 0;
};

template <class Call>
bool Pool::use_client(size_t index, Call&& call) noexcept {
  Executor& executor = executors_[index];
  if (executor.failed) return false;
  try {
    call(*executor.client);
    return true;
  } catch (const std::exception& e) {
    fail_executor(index, e.what());
  } catch (...) {
    fail_executor(index, "unknown exception");
  }
  return false;
}

class OffloadFunction {
 public:
  Pool* pool = nullptr;
  std::string library, symbol;
  std::vector<Function> remote;               // per executor of the pool
  sidecore_function_t local = nullptr;        // the inline fallback
  void* local_library = nullptr;              // its dlopen handle
  ~OffloadFunction() noexcept;
};

}  // namespace sidecore::mpi
