// The Sidecore C++ client: connect to an executor, look up functions, submit tasks without
// blocking, and test or wait for their completion.
//
//   auto client = sidecore::Client::from_environment();          // SIDECORE_EXECUTOR, SIDECORE_TOKEN
//   auto square = client.lookup("/path/libmath.so", "square");    // throws sidecore::Error
//   sidecore::TaskId id = client.submit(square, &x, sizeof x, &y, sizeof y);
//   sidecore::Completion done = client.wait(id);                  // done.error, function_return, out_bytes
//
// Small inputs and outputs (up to 4 KiB) travel inside messages; larger ones are read from and
// written to the caller's buffers by RMA, so `in` and `out` must stay valid, and `out` untouched,
// until the task completes. No byte of `out` is written after completion.
//
// Threading: a Client is used by one thread at a time (like a libfabric endpoint). Progress is
// made inside progress(), test() and wait(); submit() never blocks and never waits for credits:
// tasks beyond what the executor accepts at once queue inside the client.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sidecore/error_kind.hpp"

// Symbols of the client library that applications link against.
#define SIDECORE_API __attribute__((visibility("default")))

namespace sidecore {

// Thrown by connect and lookup (never by the data path).
class SIDECORE_API Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

// How a task ended.
struct Completion {
  ErrorKind error = ErrorKind::none;
  int function_return = 0;  // the function's return value (non-zero means error == FUNCTION)
  size_t out_bytes = 0;     // bytes the function wrote to `out`
  bool cancelled = false;   // cancel() took the task back before it was sent
  // With EXECUTOR_LOST: the task found no executor left to go to (each drains, died or refused
  // the client) while it waited to be sent, so running it elsewhere is safe: it never reached a
  // worker, or it did and retry_lost declared it safe to repeat. The MPI extension then runs it
  // inline where the pool's fallback allows.
  bool not_started = false;
};

using TaskId = uint64_t;
inline constexpr TaskId kNoTask = 0;

// Called from progress(), test() or wait() when a task submitted with a callback completes.
using CompletionCallback = void (*)(void* user, TaskId id, const Completion& completion);

// A completion that progress(completed) hands back, for a task started with submit_handed_back().
struct TaskCompletion {
  TaskId id = kNoTask;
  Completion completion;
  void* user = nullptr;  // what submit_handed_back() was given
};

// A function resolved on the client's executors; cheap to copy.
class SIDECORE_API Function {
 public:
  Function() = default;
  bool valid() const noexcept { return !ids_.empty(); }
  const std::string& library() const noexcept { return library_; }
  const std::string& symbol() const noexcept { return symbol_; }

 private:
  friend class Client;
  std::string library_, symbol_;
  std::vector<uint32_t> ids_;  // the function's id on each executor of the client
  const void* owner_ = nullptr;
};

// How a client reaches workers on its own host. Across hosts it is always libfabric.
enum class Transport {
  automatic,  // the executor's node-local rings where its card offers them, else libfabric
  fabric,     // libfabric (shm on a Slurm node) even on the executor's host
};

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{5000};  // for each executor's handshake and each lookup
  // A task not completed this long after submit completes with TIMEOUT; from then on no byte of
  // its output buffer is written (its registration is revoked, a late result is dropped). 0: none.
  std::chrono::milliseconds task_timeout{0};
  // While tasks are in flight, how often the client checks that an executor on its own host still
  // runs (through a pidfd on the pid in its card). When it has died (killed, crashed), every task
  // on it completes with EXECUTOR_LOST within about this time, and later ones at once.
  std::chrono::milliseconds liveness_interval{250};
  Transport transport = Transport::automatic;
  // The liveness port (its card's watch=) of an executor on this host that follows executors on
  // other hosts for this client: one connection to it in all, instead of one to each of them
  // (liveness_listener.hpp, relay). 0: one connection each. What a pool sets from its node's card.
  uint16_t liveness_relay = 0;
  // A task whose executor or worker dies under it (EXECUTOR_LOST) runs again on another executor,
  // or on the same one once its worker is replaced, up to kMaxLostRetries times, before it
  // completes with EXECUTOR_LOST. Only for functions that are safe to run twice: one may have run
  // in part, or in full, before its worker died. The MPI extension sets it from sidecore_retry=lost.
  bool retry_lost = false;
  static constexpr unsigned kMaxLostRetries = 3;
};

class SIDECORE_API Client {
 public:
  // Connects to the executor described by `card`, presenting `token`. Throws Error: BAD_ARG for a
  // malformed card, NO_EXECUTOR when it cannot be reached, AUTH when it refuses the token.
  // `card` may also be a card reference ("@PATH pid=N timeout_ms=N", what the Slurm plugin puts in
  // SIDECORE_EXECUTOR): connect waits for the card, and after the executor's server dies and its
  // supervisor starts a new one, the next submit() or lookup() connects to the new server (looking
  // every function up again) instead of failing with EXECUTOR_LOST.
  static Client connect(std::string_view card, std::string_view token, const ClientOptions& options = {});
  // connect() with SIDECORE_EXECUTOR and SIDECORE_TOKEN; NO_EXECUTOR when they are unset.
  static Client from_environment(const ClientOptions& options = {});

  // Adds another executor, reached through this client's own endpoint, completion queue and
  // address vector (one address-vector entry per worker), so that a client costs the same
  // whatever the number of executors it uses. The card is a card, not a reference; on another
  // host the executor is reached through its card's remote provider, which must be this client's.
  // Every function looked up so far is looked up there too (one that is missing there is never
  // sent there). From then on each task goes to the executor with the fewest tasks per worker,
  // the earlier one on a tie. Throws Error like connect(); the client is unchanged then.
  void add_executor(std::string_view card);

  // A client of standby executors only (cards, the nearest first; none connected yet): what a
  // rank's pool keeps for the executors of other nodes. The client's provider is the one the first
  // card routes to from this host; standby cards of another provider are skipped. Throws Error:
  // BAD_ARG without a usable card, NO_EXECUTOR when the provider cannot be opened.
  static Client standby(const std::vector<std::string>& cards, std::string_view token,
                        const ClientOptions& options = {});
  // More standby executors, after those already listed. When a task finds no idle worker on the
  // client's executors, the next standby executor joins and takes it: submit() sends the hellos
  // and returns; the executor answers them and the lookups of the client's functions from
  // progress(), and the task waits in the client until then. One that refuses the client (at
  // capacity) or does not answer hands its tasks to another; one that dies fails them
  // (EXECUTOR_LOST).
  void add_standby(const std::vector<std::string>& cards);
  size_t standby_left() const noexcept;  // not joined yet
  size_t executors() const noexcept;     // added or joining, lost ones included

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();  // says goodbye to every worker; tasks still in flight are abandoned

  // Resolves `symbol` in `library` on the client's executors (the path is the executors'). Throws
  // Error (NOT_FOUND when the library or symbol is missing; EXECUTOR_LOST when no executor
  // answered).
  Function lookup(std::string_view library, std::string_view symbol);

  // Starts a task; never blocks. The result is collected with test() or wait().
  TaskId submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity);
  // Starts a task whose completion is delivered to `callback` instead (test/wait do not apply).
  TaskId submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                CompletionCallback callback, void* user);
  // Starts a task whose completion progress(completed) hands back, with `user` (test/wait do not
  // apply). Nothing calls back into the caller: a progress engine that drives several clients
  // gets each one's completions as data and decides what to do with them.
  TaskId submit_handed_back(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                            void* user);

  // Makes progress; returns the completion and forgets the task once it is done. A TaskId that
  // is unknown (already collected) yields a BAD_ARG completion.
  std::optional<Completion> test(TaskId id);
  Completion wait(TaskId id);
  // Makes progress without collecting anything; returns the number of events handled.
  size_t progress();
  // progress(), then appends to `completed` every completion of a submit_handed_back() task that
  // happened since the last call (also those that completed inside submit, cancel or a failure of
  // the client). Allocates nothing in a steady state when `completed` is handed in empty: its
  // storage is swapped with the client's.
  size_t progress(std::vector<TaskCompletion>& completed);
  // The same without making progress: only what completed since the last call.
  void take_completions(std::vector<TaskCompletion>& completed);
  // Takes back a task that has not been sent to a worker yet (it waits for a credit); it then
  // completes with `cancelled` set. False when the task is already on its way or done.
  bool cancel(TaskId id);

  // Sleeping until something happens, for a progress thread that must not spin (two steps, so a
  // caller can hold its own lock around the first and not around the second):
  // prepare_sleep() makes progress once and returns true when nothing happened and sleeping is
  // safe (and no completion waits to be handed back); sleep() then waits until a worker sends
  // something, interrupt_sleep() is called, or the timeout passes (or the first task deadline
  // prepare_sleep() saw). sleep() touches no task state: while one thread sleeps in it, another
  // may use the client as usual (one at a time), and interrupt_sleep() may come from any thread.
  bool prepare_sleep();
  void sleep(std::chrono::microseconds timeout);
  void interrupt_sleep() noexcept;

  size_t in_flight() const noexcept;  // submitted and not yet completed
  size_t workers() const noexcept;    // workers across all connected executors
  // Workers of the executors that take no more tasks: they died, drain (a lease reclaimed) or
  // refused the client. What progress() has noticed so far.
  size_t workers_gone() const noexcept;
  const std::string& provider() const noexcept;
  // Whether tasks reach the executor's workers over node-local rings (its card offers them, this
  // client's transport is automatic, and its workers took them) rather than over provider().
  bool on_rings() const noexcept;
  const std::string& executor_host() const noexcept;  // the host name in the first executor's card
  // Every executor of the client died: every task completes with EXECUTOR_LOST.
  bool executor_lost() const noexcept;
  // Some executor can take a task now: one that is neither lost nor draining, or a standby one.
  // When none can, a task completes at once with EXECUTOR_LOST and Completion::not_started.
  bool accepts_tasks() const noexcept;
  // Makes progress on what a lost worker needs: noticing the loss, greeting the worker its executor
  // started in its place (cheap to call often). True while the client's executor is alive; its
  // workers are replaced on their own, so this never has to be called for that.
  bool reconnect();

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Follows a lease job (srun --offload-lease sets SIDECORE_LEASE_JOB in the step's tasks): on a
// thread of its own it reads the job's record through Slurm (squeue) and calls `on_cards` with the
// cards of the lease's executors as they become ready, new ones only, until the lease has published
// all of them, has ended, or this object is destroyed (the destructor waits for the thread). Hand
// the cards to Client::standby() or Client::add_standby(): the client grows when the lease starts,
// without waiting for it. `on_cards` runs on that thread and must not throw.
class SIDECORE_API LeaseWatch {
 public:
  using CardsCallback = std::function<void(const std::vector<std::string>& cards)>;
  LeaseWatch(std::string job, CardsCallback on_cards);
  ~LeaseWatch();
  LeaseWatch(const LeaseWatch&) = delete;
  LeaseWatch& operator=(const LeaseWatch&) = delete;

  // SIDECORE_LEASE_JOB, when it names a job.
  static std::optional<std::string> job_from_environment();
  // The cards in a lease job's comment ("sidecore-lease/1 tasks=N|card|card..."), and N (0 when
  // the text is not a lease's).
  static std::vector<std::string> parse_comment(std::string_view comment, size_t* tasks = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sidecore
