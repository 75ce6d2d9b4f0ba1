// The C++ side of MPIX_Offload_pool and MPIX_Offload_function.
#pragma once

#include <mpi.h>

#include <atomic>
#include <memory>
#include <mutex>
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
struct Connection;

// What a generalized request carries. Recycled, never freed: free_request() gives it back to the
// process-wide RequestCache, and the next submit takes it again, so a submit allocates nothing.
struct OffloadRequest {
  MPI_Request request = MPI_REQUEST_NULL;
  std::atomic<size_t>* pool_in_flight = nullptr;  // its pool's count (pools outlive their tasks)
  // While its task is with that connection's client; written under the connection's lock (and
  // read without it only by cancel_request, to find the lock).
  std::atomic<Connection*> connection{nullptr};
  OffloadRequest* prev = nullptr;  // in the connection's list of pending requests
  OffloadRequest* next = nullptr;  // ... or, once done, in the cache or the deferred list
  TaskId task = kNoTask;
  // The task again, for the inline fallback when its executors drain before it starts
  // (Completion::not_started); `local` is null when the pool has no fallback for it.
  sidecore_function_t local = nullptr;
  const void* in = nullptr;
  size_t in_bytes = 0;
  void* out = nullptr;
  size_t out_capacity = 0;
  Completion completion;
  int error = MPI_SUCCESS;
  // Set (release) after completion and error are written, read (acquire) by query_request; set
  // again by query_request and read by free_request. MPI's own hand-overs between the completing,
  // the waiting and the freeing thread happen inside uninstrumented libraries, invisible to TSan.
  std::atomic<bool> done{false};
};

// The recycled OffloadRequests: any thread gives one back (a lock-free push), and a thread that
// holds a connection's lock takes them all at once into that connection's own list (an exchange).
// Push-only producers and take-all consumers make the stack immune to ABA.
class RequestCache {
 public:
  static RequestCache& instance();
  void give_back(OffloadRequest* request) noexcept;
  OffloadRequest* take_all() noexcept { return returned_.exchange(nullptr, std::memory_order_acquire); }

 private:
  std::atomic<OffloadRequest*> returned_{nullptr};
};

// One client and everything that goes with it: a node-local executor's, or the one through which
// a rank reaches every executor on other nodes it uses (one endpoint for all of them, connected
// to one executor after the other as the rank's tasks need them). The progress engine owns the
// connections of every registered pool (and keeps them, retired, after the pool is gone); a pool
// points at its own.
//
// Locking: `mutex` guards the client and the fields up to `thread_sleeping`. It is held only for
// a call into the client and the bookkeeping around it, never across a sleep; it is the only
// lock a submit takes (one per connection, so one submitting thread never meets another lock).
// The atomics below it are snapshots that submit reads without the lock to pick a connection.
struct Connection {
  std::mutex mutex;
  std::unique_ptr<Client> client;         // null once it has failed and been released, or before the first executor
  std::vector<std::string> standby;       // other nodes' executors (nearest first), until the client exists
  OffloadRequest* pending = nullptr;      // requests whose task is with the client (a list)
  OffloadRequest* spare = nullptr;        // recycled requests taken from the cache
  std::vector<TaskCompletion> completed;  // what the client handed back, being delivered
  bool thread_sleeping = false;           // the progress thread sleeps on the client (outside the lock)
  bool release_on_waking = false;         // ... and releases it once awake: it failed meanwhile
  std::atomic<bool> failed{false};        // the client threw: no longer used
  // Its executors died or drain: it takes no task now (not the client's accepts_tasks()).
  std::atomic<bool> executor_lost{false};
  std::atomic<size_t> tasks{0};         // tasks in flight on it
  std::atomic<size_t> workers{0};       // of the executors it has connected
  std::atomic<bool> may_grow{false};    // it has standby executors left
  std::atomic<size_t> workers_gone{0};  // of executors that died, drain or refused it (a lease's)
  bool local = false;
  size_t served = 0;      // tasks its executors completed (for a lease's report)
  size_t ran_inline = 0;  // tasks that found them all draining and ran in the rank instead
  size_t index = 0;       // in its pool, for the logs
  size_t table_slot = 0;  // in the progress engine's table
  std::string host;       // its executor's host, for the logs

  // Runs `call` on the client and delivers what it handed back; whatever it throws fails the
  // connection. The lock must be held. False when the connection has failed (now or before).
  template <class Call>
  bool use(Call&& call) noexcept;
  // Takes the client's completions and completes their requests. The lock must be held.
  void deliver_completions() noexcept;
  // The client threw (`why`): stops using it; releases it now, or has the sleeping progress
  // thread release it once awake. The lock must be held.
  void fail(std::string_view why) noexcept;
  // Destroys a failed client, then completes its pending requests with EXECUTOR_LOST: in that
  // order, so that no result lands in a buffer after its request has completed. The lock must be
  // held, and no thread may be inside the client.
  void release_failed_client() noexcept;
  // Its pool is going (drained): destroys the client and keeps nothing that costs memory. The
  // lock must be held.
  void retire() noexcept;
  ~Connection() noexcept;
};

class OffloadFunction;

class Pool {
 public:
  // Collective over `comm`: exchanges the executor cards (one per node) and connects to the
  // executors of this node; those of other nodes that the scope allows are connected when tasks
  // first need them. Throws PoolError.
  Pool(MPI_Comm comm, const PoolSettings& settings);
  ~Pool() noexcept;  // the caller has drained the pool and unregistered it
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // The pool's private copy of the communicator, for its own collectives.
  MPI_Comm comm() const noexcept { return comm_; }
  // The communicator the pool was created on: errors go through its current error handler.
  MPI_Comm user_comm() const noexcept { return user_comm_; }
  const PoolSettings& settings() const noexcept { return settings_; }
  // Its connections, node-local ones first; owned by the progress engine once registered.
  const std::vector<Connection*>& connections() const noexcept { return connections_; }
  // Hands the connections over to the progress engine (ProgressEngine::add).
  std::vector<std::unique_ptr<Connection>> release_connections() noexcept { return std::move(owned_); }
  int local_workers() const noexcept { return local_workers_; }
  // Grows when a lease's executors join (on the lease watch's thread), and shrinks once they are
  // gone (drained when Slurm took the cores back, died, or refused this rank): asks the lease's
  // client first, so that a rank with no task in flight sees it too.
  int total_workers() noexcept;
  // Tasks submitted and not yet delivered to their request.
  std::atomic<size_t>& in_flight() noexcept { return in_flight_; }

  // Resolves a function on every executor (or in this process when there is none and the
  // fallback is inline). Throws PoolError. Takes each connection's lock itself.
  std::unique_ptr<OffloadFunction> lookup(const std::string& library, const std::string& symbol);
  // Starts a task and its generalized request; returns an MPI error code (MPI_SUCCESS).
  int submit(OffloadFunction& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
             MPI_Request* request);
  // Makes progress until no task of this pool is in flight.
  void drain();

  // A lease (srun --offload-lease: SIDECORE_LEASE_JOB): follows its job record and adds its
  // executors to the pool's lease connection as they start. Start once the engine owns the
  // connections; stop before it lets them go. Both are no-ops without a lease.
  void start_lease_watch();
  void stop_lease_watch() noexcept;
  // With srun --offload-stats (SIDECORE_LEASE_STATS): one line on stderr with what the lease did
  // for this rank's pool. Before the engine lets the connections go.
  void report_lease() noexcept;

 private:
  // The connection for the next task, from the snapshots only (no lock, no call into a client:
  // noticing a lost executor and greeting replaced workers is the progress side's job); none
  // when every connection has failed.
  std::optional<size_t> pick_connection() const noexcept;
  // The lease watch's callback: the cards of executors the lease just started.
  void add_lease_executors(const std::vector<std::string>& cards) noexcept;

  MPI_Comm user_comm_ = MPI_COMM_NULL;
  MPI_Comm comm_ = MPI_COMM_NULL;
  PoolSettings settings_;
  std::string token_;
  ClientOptions options_;
  std::vector<std::unique_ptr<Connection>> owned_;  // until the engine takes them
  std::vector<Connection*> connections_;
  int local_workers_ = 0;
  std::atomic<int> total_workers_{0};
  std::atomic<int> lease_workers_{0};  // of total_workers_: those of the lease's published executors
  std::atomic<size_t> in_flight_{0};
  std::string lease_job_;        // the lease's Slurm job id, when the step has one
  Connection* lease_ = nullptr;  // its executors' connection (among connections_)
  std::unique_ptr<LeaseWatch> lease_watch_;
};

template <class Call>
bool Connection::use(Call&& call) noexcept {
  if (failed.load(std::memory_order_relaxed) || !client) return false;
  try {
    call(*client);
    deliver_completions();
    executor_lost.store(!client->accepts_tasks(), std::memory_order_relaxed);
    workers.store(client->workers(), std::memory_order_relaxed);
    may_grow.store(client->standby_left() > 0, std::memory_order_relaxed);
    workers_gone.store(client->workers_gone(), std::memory_order_relaxed);
    return true;
  } catch (const std::exception& e) {
    fail(e.what());
  } catch (...) {
    fail("unknown exception");
  }
  return false;
}

class OffloadFunction {
 public:
  Pool* pool = nullptr;
  std::string library, symbol;
  std::vector<Function> remote;               // per connection of the pool
  sidecore_function_t local = nullptr;        // the inline fallback
  void* local_library = nullptr;              // its dlopen handle
  ~OffloadFunction() noexcept;
};

}  // namespace sidecore::mpi
