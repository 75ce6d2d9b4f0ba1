// The client's state with the executor it serves (Client::Impl), shared by the files of
// offload/src/client/: session.cpp (the data path), handshake.cpp (connecting, lookups),
// liveness.cpp (lost executors and workers), task_table.hpp (the tasks themselves) and
// client.cpp (the public Client, which only forwards here).
#pragma once

#include <rdma/fabric.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "card.hpp"
#include "client/task_table.hpp"
#include "doorbell.hpp"
#include "fabric/endpoint.hpp"
#include "message_buffers.hpp"
#include "protocol.hpp"
#include "sidecore/sidecore.hpp"
#include "transport/message_port.hpp"
#include "transport/ring.hpp"

namespace sidecore {
namespace client {

constexpr size_t kBatch = 64;  // completions or ring messages handled per poll
constexpr size_t kReceiveReserve = 16;
// Receive buffers re-posted at the start of the next pass over the queue rather than right after
// their message is handled: the re-post (about 30 ns on shm) then falls while the caller waits for
// its next result, not between a result's arrival and its delivery. Fewer than kReceiveReserve, so
// every result in flight still finds a posted buffer.
constexpr size_t kDeferredReposts = 8;
static_assert(kDeferredReposts < kReceiveReserve);
// While tasks are in flight and none has a deadline, progress() reads the clock (to see whether a
// liveness check is due) once every this many polls.
constexpr unsigned kPollsPerLivenessClock = 16;
// How often the client looks for a replaced worker's new card while one of its workers is lost.
constexpr auto kCardCheckInterval = std::chrono::milliseconds(20);

}  // namespace client

struct Client::Impl {
  using Clock = client::Clock;
  using TaskSlot = client::TaskSlot;
  using TaskTable = client::TaskTable;

  struct WorkerLink {
    fi_addr_t address = FI_ADDR_NOTAVAIL;
    uint32_t peer_id = 0;
    uint64_t session = 0;
    uint32_t credits = 0;
    uint32_t outstanding = 0;
    bool connected = false;
    // Its process died (worker processes: the executor replaces it). Nothing is sent to it until
    // the card names its replacement, which gets a hello.
    bool lost = false;
    int pidfd = -1;            // its process, when it runs on this host in a process of its own
    uint64_t hello_nonce = 0;  // a hello to the replacement is on its way
    Clock::time_point hello_sent{};
    // Node-local rings (pair w of the client's segment), when the worker took them in its welcome.
    bool on_rings = false;
    bool cma = false;  // it moves large inputs and outputs of ring tasks by cross-memory attach
    transport::RingProducer requests;
    transport::RingConsumer replies;
  };
  struct ExecutorLink {
    ExecutorCard card;
    Doorbell doorbell;
    int pidfd = -1;     // pidfd (same host) or liveness connection (other host): readable once it died
    bool lost = false;  // it died: tasks for it complete with EXECUTOR_LOST
    // It declined a task: it drains before it stops (a lease reclaimed, its step ending). Nothing
    // more goes there; what waited for it, and what it declines, goes to another executor.
    bool draining = false;
    std::vector<WorkerLink> workers;
    std::deque<std::pair<uint32_t, TaskId>> waiting;  // slots queued for a free credit (stale ones skipped)
    bool relayed = false;                    // another host: followed through the relay (ClientOptions::liveness_relay)
    int card_fd = -1;                        // same host, no card reference: a liveness connection, for the cards only
    std::string liveness_input;              // a partial line from the liveness connection
    std::optional<ExecutorCard> newer_card;  // the latest card it sent there, not applied yet
    size_t lost_workers = 0;
    // Its id of each function of the client (by the index Function objects hold), kNoFunction
    // where it has none; ids stay valid across its workers' replacements.
    std::vector<uint32_t> function_ids;
    // Joining (a standby executor taken when a task found no idle worker): its hellos are out; at
    // the first welcome the client asks it for every function's id; once all are answered it
    // joins. Tasks routed to it wait in `waiting` meanwhile.
    bool joining = false;
    bool lookups_sent = false;
    size_t lookups_due = 0;
    Clock::time_point join_deadline = Clock::time_point::max();  // without a liveness connection
  };
  // A function lookup of a joining executor, answered from progress().
  struct JoinLookup {
    uint64_t key;
    uint32_t executor, function;
  };
  struct KnownFunction {
    std::string library, symbol;
  };
  struct Backlog {
    fi_addr_t address;
    uint32_t buffer;
    size_t bytes;
    uint32_t executor, worker;
    Clock::time_point since{};  // first refused ("try again") at
  };
  // An answer to a handshake or lookup, matched by nonce or request id.
  struct Reply {
    uint64_t key = 0;
    bool arrived = false;
    protocol::MessageType type{};
    ErrorKind error = ErrorKind::none;
    protocol::WelcomeMessage welcome{};
    uint32_t function_id = protocol::kNoFunction;
  };

  ClientOptions options;
  std::string provider;
  std::shared_ptr<fabric::Domain> domain;
  std::shared_ptr<fabric::Endpoint> endpoint;
  std::unique_ptr<MessageBuffers> buffers;
  size_t inject_limit = 0;
  size_t posted_receives = 0;
  std::array<uint32_t, client::kDeferredReposts> deferred_reposts{};
  size_t deferred_count = 0;
  std::vector<ExecutorLink> executors;
  TaskTable tasks;
  uint64_t next_lookup = 1;
  size_t total_workers = 0;
  std::deque<Backlog> backlog;
  std::vector<Reply*> expected_replies;
  Clock::time_point next_deadline = Clock::time_point::max();  // the first task deadline at prepare_sleep()
  // Replaced workers (their executor's supervisor publishes a new card: in the file a reference
  // points to, and on the liveness connection): the reference and the token to greet them with.
  std::string card_source;
  std::string token;
  std::vector<KnownFunction> known_functions;  // by the index Function objects hold
  // Standby executors (cards, nearest first): one joins when a task finds no idle worker.
  std::deque<std::string> standby;
  std::vector<JoinLookup> join_lookups;
  size_t joining_count = 0;
  Clock::time_point next_card_check{};
  std::chrono::milliseconds task_timeout{0};  // the user's, bounded by the executor's max_task_s
  Clock::time_point next_liveness_check{};
  unsigned polls_since_clock = 0;
  bool watching_any = false;  // some executor has a pidfd
  // The connection to the relay on this host, once one executor on another host is followed
  // through it; a partial line from it. A relay that ended is not asked again.
  int relay_fd = -1;
  std::string relay_input;
  bool relay_broken = false;
  Doorbell own_doorbell;  // rung by workers after results, where the queue has no descriptor
  int interrupt_fd = -1;  // wakes sleep() on a queue descriptor
  // The rings shared with the executor on this host, one pair per worker, where its card offers
  // them (transport/ring.hpp); empty otherwise.
  transport::RingSegment rings;

  // --- session.cpp: the data path to the executor: messages out and in, tasks dispatched and
  // completed, sleeping

  explicit Impl(const ClientOptions& o, std::string_view prov);
  ~Impl();
  void say_goodbye();
  void post_receives(size_t count);

  // Posts a receive; a provider that keeps saying "try again" for kRetryLimit, or fails, costs the
  // buffer (logged): the executors' credits leave a reserve, and no loop here is unbounded.
  void repost(uint32_t buffer);

  // sending

  bool try_send(const Backlog& message);
  void send(fi_addr_t address, uint32_t buffer, size_t bytes, uint32_t executor, uint32_t worker);

  // Sends what waits in the backlog, in order. A message refused for kRetryLimit costs its worker:
  // it is treated as lost (its tasks complete with EXECUTOR_LOST) rather than retried for ever,
  // except while its executor joins (the join's deadline or liveness decides there).
  size_t flush_backlog();
  void send_copy(fi_addr_t address, const void* data, size_t bytes, uint32_t executor, uint32_t worker);

  // Drops the messages still queued for executor `e` (it failed its handshake, or died), or for
  // one of its workers only.
  void drop_backlog_of(uint32_t e, uint32_t worker = UINT32_MAX);

  // receiving

  // One poll of the rings and the queue, deadlines, and (every kPollsPerLivenessClock-th call, or
  // with `check_clock`) liveness.
  size_t progress(bool check_clock = false);
  size_t poll_queue();

  // Results in worker `w`'s reply ring.
  size_t poll_ring(uint32_t e, uint32_t w);
  size_t poll_fabric_queue();
  void handle_message(std::span<const std::byte> message);
  // A result or a declined answer (both the ResultMessage layout): when it is for a task on the
  // wire and from that task's worker, the task is off the wire and its credit back; its slot's
  // index, else UINT32_MAX (dropped; `what` names it in the warning).
  uint32_t take_answer(const protocol::MessageHeader& header, std::span<const std::byte> message, const char* what);
  void on_result(const protocol::MessageHeader& header, std::span<const std::byte> message);
  // A draining worker declined a task: it goes elsewhere, with every task waiting for that executor.
  void on_declined(const protocol::MessageHeader& header, std::span<const std::byte> message);
  void start_draining(uint32_t e);
  TaskId submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                CompletionCallback callback, void* user, bool hand_back = false);

  // tasks

  // Tasks to one worker over its request ring; the worker is woken (if it sleeps) on commit.
  class RingRequests;
  // Tasks to one worker over libfabric: a message buffer, sent (or queued in the backlog) on commit.
  class FabricRequests;

  // Sends the task in `index` to the least loaded worker with a free credit; false when none has one
  // (or its request ring is full): the task then waits in the client.
  bool dispatch(uint32_t index);

  // Whether the task can go on the worker's rings: inline up to kRingInlineLimit, larger inputs and
  // outputs by cross-memory attach where the worker can use it. An output so written could land
  // after the task timed out, so a task with a deadline takes its large output over libfabric,
  // whose registration is revoked at the deadline.
  static bool fits_ring(const TaskSlot& slot, const WorkerLink& worker) noexcept;

  // Writes the task message (its remote-buffer descriptors, then its input unless that is remote)
  // through `port`; false when the port has no room now.
  static bool send_task(transport::MessagePort& port, const TaskSlot& slot, protocol::TaskMessage task,
                        const std::optional<protocol::RemoteBuffer>& input,
                        const std::optional<protocol::RemoteBuffer>& output);
  void dispatch_waiting(std::deque<std::pair<uint32_t, TaskId>>& waiting);

  // The executor for a task of function `function` (an index of known_functions): the one alive,
  // with the function (or joining), and with the fewest tasks per serving worker (a joining one
  // counts all its workers), the first on a tie; its load in `load`. UINT32_MAX when none is alive.
  uint32_t pick_executor(uint32_t function, double& load) const noexcept;
  // pick_executor, but when no worker is idle anywhere and a standby executor is left, that one
  // joins and is the answer. UINT32_MAX when none is alive.
  uint32_t choose_executor(uint32_t function);
  // Gives the task in `index` (waiting, its function set) to executor `e`: queued while `e` joins,
  // else sent now when nothing waits before it, else queued for a credit.
  void place(uint32_t index, uint32_t e);
  bool cancel(TaskId id);

  // test() after fail_everything: the task's completion if it has one now, else EXECUTOR_LOST.
  std::optional<Completion> collect_after_failure(TaskId id) noexcept;
  std::optional<Completion> test(TaskId id);
  bool prepare_sleep();
  void sleep(std::chrono::microseconds timeout);
  void interrupt_sleep() noexcept;

  // --- handshake.cpp: greeting workers (rings offered and taken), adding the executor, lookups

  // Forgets the executor being added (its handshake failed), with any message still queued for it.
  void abandon_last_executor();

  // Greets worker `w` of executor `e`: a hello with the token, offering the worker its ring pair
  // where this client has rings with that executor (the pair starts empty: a worker it served before
  // is dead).
  void send_hello(uint32_t e, uint32_t w, uint64_t nonce, std::string_view with_token);

  // Stops worker `w` writing into this process's memory (outputs of large ring tasks): from now on
  // the tasks it has are the client's to fail. Waits for a write under way, unless the worker died.
  void close_rings(uint32_t e, uint32_t w) noexcept;

  // After a welcome: whether worker `w` of executor `e` serves this client on its ring pair.
  void take_rings(uint32_t e, uint32_t w, uint32_t welcome_flags);

  // Waits for `replies` (all registered in expected_replies) until the deadline; false on timeout.
  // With `asked` (an executor and worker), gives up early once that worker is lost.
  bool await(std::vector<Reply>& replies, Clock::time_point deadline,
             std::optional<std::pair<uint32_t, uint32_t>> asked = std::nullopt);
  void add_executor(const ExecutorCard& card, std::string_view token);
  // Looks up every function of the client on executor `e` (just added); one it lacks, or that it
  // could not answer for, is never sent there.
  void lookup_known_functions(uint32_t e);
  Reply* find_reply(uint64_t key);
  Function lookup(std::string_view library, std::string_view symbol);
  bool all_executors_lost() const noexcept;
  bool accepts_tasks() const noexcept;
  bool has_executor(std::string_view executor_id) const noexcept;
  // The site's bound on any task of `card`'s executor (max_task_s) is the longest a task may take
  // from here too: the client keeps the smallest bound of its executors.
  void apply_task_bound(const ExecutorCard& card) noexcept;

  // --- joining.cpp: standby executors taken on demand, without waiting for them

  // Starts joining the next standby executor that can be reached (its card routed, its liveness
  // connection open when it has one, hellos sent); its index, or UINT32_MAX when none is left.
  uint32_t join_next_standby();
  // A welcome (or, with null, a refusal) from worker `w` of joining executor `e`.
  void on_join_answer(uint32_t e, uint32_t w, const protocol::MessageHeader& header,
                      const protocol::WelcomeMessage* welcome);
  // Asks worker `w` of executor `e` for function `f`'s id (answered in on_join_lookup).
  void send_join_lookup(uint32_t e, uint32_t w, uint32_t f);
  bool on_join_lookup(uint64_t key, ErrorKind error, uint32_t function_id);
  // The executor has every answer: its waiting tasks get their function ids and go.
  void finish_join(uint32_t e);
  // It refused the client, or did not answer in time: its waiting tasks go to another executor.
  void fail_join(uint32_t e, std::string_view why);
  // Sends the waiting task in `index` to another executor (joining one where needed), or fails it.
  void reroute(uint32_t index);
  // Stops treating executor `e` as joining (joined, refused, or dead): no lookups wait for it.
  void end_join(uint32_t e);
  void check_joins(Clock::time_point now);

  // A worker of executor `e` that serves now; while all are being replaced, waits for one up to
  // the connect timeout. Throws Error(EXECUTOR_LOST).
  uint32_t serving_worker(uint32_t e);

  // The function's id on executor `e`. Throws Error.
  // A worker lost while it was asked costs a second try on another (or its replacement).
  uint32_t lookup_on(uint32_t e, std::string_view library, std::string_view symbol);

  // --- liveness.cpp: noticing dead executors and workers, failing their tasks, greeting replacements

  // An executor on this host is watched through a pidfd on the pid in its card, and each of its
  // worker processes through one on theirs; one elsewhere through a connection to its liveness port,
  // which its kernel closes when it dies and on which it announces replaced workers
  // (liveness_listener.hpp). Each descriptor turns readable then.
  void watch_process(ExecutorLink& link);
  static int open_pidfd(long pid);
  void watch_worker(ExecutorLink& link, uint32_t w);
  static bool process_ended(int fd);
  size_t check_liveness(Clock::time_point now);

  // Reads what an executor on another host sent on its liveness connection: "card ..." lines (kept
  // in newer_card, applied by check_liveness) and "lost <worker>" lines (applied here). False once
  // the connection is closed: the executor is gone.
  bool read_liveness(ExecutorLink& link, int fd);
  // One such line (one it does not know is ignored).
  void on_liveness_line(ExecutorLink& link, std::string_view line);
  // Follows executor `link` on another host: through the relay where the options name one, else
  // with a liveness connection of its own (opened within `timeout_ms`). False when neither is open.
  bool follow_remote(ExecutorLink& link, int timeout_ms);
  // What the relay passed on ("at <host> <port> <line>"); when it ended, each executor it followed
  // gets a connection of its own. Returns the tasks that completed.
  size_t read_relay();

  // Completes every task of executor `e` with EXECUTOR_LOST (revoking its access to their buffers
  // first) and fails later ones at once.
  size_t lose_executor(uint32_t e);

  // Worker `w` of executor `e` died (a function crashed it, or its executor replaced it after a
  // deadline): its tasks complete with EXECUTOR_LOST (TIMEOUT where their deadline has passed), the
  // others' go on, and its replacement is greeted once the card names it.
  size_t lose_worker(uint32_t e, uint32_t w);

  // Fails the tasks of executor `e` on worker `w` (UINT32_MAX: on any worker; with `waiting`, also
  // those still queued for a credit). Returns how many completed. With options.retry_lost, a task
  // within its retries is placed again instead (reroute), counted in `retried` too.
  size_t fail_tasks(uint32_t e, uint32_t w, bool waiting, size_t* retried = nullptr);

  // Greets the workers that `card` (the executor's latest) names in place of lost ones.
  void apply_card(uint32_t e, const ExecutorCard& card);

  // A welcome from a replaced worker: it serves this client again.
  bool on_replacement_answer(uint64_t nonce, const protocol::MessageHeader& header,
                             const protocol::WelcomeMessage* welcome);

  // While a worker is lost: looks for the card that names its replacement, at most every
  // kCardCheckInterval (the card file through the reference on this host; another host's card
  // comes on the liveness connection).
  void look_for_replacements(Clock::time_point now);

  // An internal failure (no memory, a provider's error): every task completes with EXECUTOR_LOST and
  // the executors count as lost, rather than let an exception reach a caller that cannot take one
  // (the MPI progress hook, a progress thread, a destructor).
  size_t fail_everything(const char* what) noexcept;
  bool replacements_due() const noexcept;
};

}  // namespace sidecore
