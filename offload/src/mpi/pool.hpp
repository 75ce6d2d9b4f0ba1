// The C++ side of MPIX_Offload_pool and MPIX_Offload_function.
#pragma once

#include <mpi.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
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

// What a generalized request carries: set by the completion callback, read by query_fn.
struct OffloadRequest {
  MPI_Request request = MPI_REQUEST_NULL;
  Pool* pool = nullptr;
  Client* client = nullptr;
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
  ~Pool();  // the caller has drained the pool and unregistered it
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  struct Executor {
    std::unique_ptr<Client> client;
    bool local = false;
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

 private:
  size_t pick_executor();

  MPI_Comm user_comm_ = MPI_COMM_NULL;
  MPI_Comm comm_ = MPI_COMM_NULL;
  PoolSettings settings_;
  std::vector<Executor> executors_;
  int local_workers_ = 0;
  int total_workers_ = 0;
  std::atomic<size_t> in_flight_{0};
  size_t next_executor_ = 0;
};

class OffloadFunction {
 public:
  Pool* pool = nullptr;
  std::string library, symbol;
  std::vector<Function> remote;               // per executor of the pool
  sidecore_function_t local = nullptr;        // the inline fallback
  void* local_library = nullptr;              // its dlopen handle
  ~OffloadFunction();
};

}  // namespace sidecore::mpi
