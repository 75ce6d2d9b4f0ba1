#include "sidecore/sidecore.hpp"

#include <fmt/format.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <thread>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "card.hpp"
#include "card_reference.hpp"
#include "doorbell.hpp"
#include "fabric/endpoint.hpp"
#include "fabric/error.hpp"
#include "fabric/memory_region.hpp"
#include "fabric/retry.hpp"
#include "fault_injection.hpp"
#include "liveness_listener.hpp"
#include "log.hpp"
#include "message_buffers.hpp"
#include "protocol.hpp"
#include "token.hpp"
#include "transport/message_port.hpp"
#include "transport/ring.hpp"

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kBatch = 64;
constexpr size_t kReceiveReserve = 16;
// Receive buffers re-posted at the start of the next pass over the queue rather than right after
// their message is handled: the re-post (about 30 ns on shm) then falls while the caller waits for
// its next result, not between a result's arrival and its delivery. Fewer than kReceiveReserve, so
// every result in flight still finds a posted buffer.
constexpr size_t kDeferredReposts = 8;
static_assert(kDeferredReposts < kReceiveReserve);
constexpr unsigned kSlotBits = 24;  // TaskId = sequence << 24 | slot
constexpr uint64_t kSlotMask = (uint64_t{1} << kSlotBits) - 1;
constexpr size_t kMaxSlots = size_t{1} << kSlotBits;
// How long a provider may answer "try again" to one message or receive before the client gives up on
// it (fabric/retry.hpp): a message to a worker then counts as lost with the worker, a receive
// buffer is dropped.
using fabric::kRetryLimit;
// How often the client looks for a replaced worker's new card while one of its workers is lost.
constexpr auto kCardCheckInterval = std::chrono::milliseconds(20);

enum class OpKind : uint8_t { receive = 1, send = 2 };

void* context(OpKind kind, uint32_t index) noexcept {
  return reinterpret_cast<void*>((static_cast<uintptr_t>(kind) << 32) | index);
}

}  // namespace

struct Client::Impl {
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
    std::vector<WorkerLink> workers;
    std::deque<std::pair<uint32_t, TaskId>> waiting;  // slots queued for a free credit (stale ones skipped)
    int card_fd = -1;   // same host, no card reference: a liveness connection, for the cards only
    std::string liveness_input;                        // a partial line from the liveness connection
    std::optional<ExecutorCard> newer_card;            // the latest card it sent there, not applied yet
    size_t lost_workers = 0;
  };
  // A task's slot lives until both sides are done with it: the user has (or was handed) the
  // completion, and no result can arrive for it any more. A timed-out task is handed to the user
  // at once but keeps its slot (and its worker's credit) until the late result comes back.
  struct TaskSlot {
    TaskId id = kNoTask;
    bool used = false;
    bool waiting = false;      // queued in the client for a credit
    bool on_wire = false;      // sent to a worker, result not back yet
    bool collectable = false;  // completion ready for test()/wait()
    bool delivered = false;    // the user has the completion (collected or via callback)
    Clock::time_point deadline{};
    uint32_t executor = 0, worker = 0, function_id = 0;
    const void* in = nullptr;
    size_t in_bytes = 0;
    void* out = nullptr;
    size_t out_capacity = 0;
    bool out_remote = false;  // the output is not inline in the result (RMA, or cross-memory attach)
    fabric::MemoryRegion in_region, out_region;
    Completion completion;
    CompletionCallback callback = nullptr;
    void* user = nullptr;
    bool hand_back = false;  // submit_handed_back(): the completion goes to `handed_back`
    // (reset() below clears every field: keep it in step when adding one)
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
  std::array<uint32_t, kDeferredReposts> deferred_reposts{};
  size_t deferred_count = 0;
  std::vector<ExecutorLink> executors;
  std::vector<TaskSlot> slots;
  std::vector<uint32_t> free_slots;
  uint64_t next_sequence = 1;
  uint64_t next_lookup = 1;
  size_t in_flight = 0;
  // Completions of submit_handed_back() tasks not yet handed back; submit_handed_back() and
  // take_completions() reserve room for every task in flight, so deliver() does not allocate.
  std::vector<TaskCompletion> handed_back;
  size_t total_workers = 0;
  std::deque<Backlog> backlog;
  std::vector<Reply*> expected_replies;
  std::deque<std::pair<Clock::time_point, TaskId>> deadlines;  // in submit order, so in deadline order
  Clock::time_point next_deadline = Clock::time_point::max();  // the first of them at prepare_sleep()
  // Replaced workers (their executor's supervisor publishes a new card: in the file a reference
  // points to, and on the liveness connection): the reference and the token to greet them with.
  // Function ids belong to the executor and stay valid across its workers' replacements.
  std::string card_source;
  std::string token;
  std::vector<uint32_t> known_functions;  // executor function ids, by the index Function objects hold
  Clock::time_point next_card_check{};
  std::chrono::milliseconds task_timeout{0};  // the user's, bounded by the executor's max_task_s
  Clock::time_point next_liveness_check{};
  bool watching_any = false;  // some executor has a pidfd
  Doorbell own_doorbell;  // rung by workers after results, where the queue has no descriptor
  int interrupt_fd = -1;  // wakes sleep() on a queue descriptor
  // The rings shared with the executor on this host, one pair per worker, where its card offers
  // them (transport/ring.hpp); empty otherwise.
  transport::RingSegment rings;

  explicit Impl(const ClientOptions& o, std::string_view prov) : options(o), provider(prov) {
    auto fabric = fabric::Fabric::open(provider);
    domain = std::make_shared<fabric::Domain>(fabric);
    auto cq = std::make_shared<fabric::CompletionQueue>(domain, 4096, true);
    auto av = std::make_shared<fabric::AddressVector>(domain);
    endpoint = std::make_shared<fabric::Endpoint>(domain, std::move(cq), std::move(av));
    buffers = std::make_unique<MessageBuffers>(domain, endpoint.get(), protocol::kMaxMessageBytes);
    inject_limit = domain->inject_size();
    if (endpoint->cq().wait_fd() < 0) {
      own_doorbell = Doorbell::create("/sidecore-c-" + generate_id(), 1);
    } else {
      interrupt_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    post_receives(kReceiveReserve);
  }

  ~Impl() {
    try {
      fault::inject(fault::Point::client_destroy);
      say_goodbye();
    } catch (...) {
      // A destructor must not throw: an executor not told copes (its credits go with the session).
    }
    // Tasks still in flight are abandoned: no output of theirs may land in memory the user frees next.
    if (rings && !executors.empty()) {
      for (uint32_t w = 0; w < executors[0].workers.size(); ++w) close_rings(0, w);
    }
    if (interrupt_fd >= 0) close(interrupt_fd);
    for (auto& executor : executors) {
      if (executor.pidfd >= 0) close(executor.pidfd);
      for (auto& worker : executor.workers) {
        if (worker.pidfd >= 0) close(worker.pidfd);
      }
    }
    // Close the endpoint before the buffers it may still write into (posted receives, RMA).
    slots.clear();
    endpoint.reset();
  }

  void say_goodbye() {
    for (auto& executor : executors) {
      // Nothing goes to a dead executor: with shm, a send into the queue of a process killed while
      // it held the queue's lock spins for ever.
      if (executor.lost || (executor.pidfd >= 0 && process_ended(executor.pidfd))) continue;
      for (uint32_t w = 0; w < executor.workers.size(); ++w) {
        const auto& link = executor.workers[w];
        if (!link.connected || (link.pidfd >= 0 && process_ended(link.pidfd))) continue;
        auto goodbye = protocol::make_header(protocol::MessageType::goodbye, link.peer_id, link.session);
        send_copy(link.address, &goodbye, sizeof goodbye, static_cast<uint32_t>(&executor - executors.data()), w);
      }
    }
    // Give the goodbyes a moment to leave; the executors cope if they do not.
    const auto deadline = Clock::now() + std::chrono::milliseconds(200);
    while (!backlog.empty() && Clock::now() < deadline) progress();
    for (int i = 0; i < 16; ++i) progress();
  }

  void post_receives(size_t count) {
    for (size_t i = 0; i < count; ++i) {
      const uint32_t buffer = buffers->acquire();
      repost(buffer);
    }
  }

  // Posts a receive; a provider that keeps saying "try again" for kRetryLimit, or fails, costs the
  // buffer (logged): the executors' credits leave a reserve, and no loop here is unbounded.
  void repost(uint32_t buffer) {
    fault::inject(fault::Point::client_repost);
    const ssize_t rc = fabric::retry_while_busy(endpoint->cq().fid(), [&] {
      return fi_recv(endpoint->fid(), buffers->data(buffer), buffers->buffer_bytes(), buffers->descriptor(buffer),
                     FI_ADDR_UNSPEC, context(OpKind::receive, buffer));
    });
    if (rc != 0) {
      buffers->release(buffer);
      logger("sidecore.client")->warn("cannot post a receive buffer: {}", fi_strerror(static_cast<int>(-rc)));
      return;
    }
    ++posted_receives;
  }

  // --- sending -----------------------------------------------------------------------------------

  bool try_send(const Backlog& message) {
    ssize_t rc;
    if (message.bytes <= inject_limit) {
      rc = fi_inject(endpoint->fid(), buffers->data(message.buffer), message.bytes, message.address);
      if (rc == 0) buffers->release(message.buffer);
    } else {
      rc = fi_send(endpoint->fid(), buffers->data(message.buffer), message.bytes, buffers->descriptor(message.buffer),
                   message.address, context(OpKind::send, message.buffer));
    }
    // Ring even when refused: a sleeping worker may have to answer shm's connection request
    // before this send can go through.
    executors[message.executor].doorbell.ring(message.worker);
    if (rc == -FI_EAGAIN) return false;
    if (rc != 0) {
      buffers->release(message.buffer);
      logger("sidecore.client")->warn("send failed: {}", fi_strerror(static_cast<int>(-rc)));
    }
    return true;
  }

  void send(fi_addr_t address, uint32_t buffer, size_t bytes, uint32_t executor, uint32_t worker) {
    Backlog message{address, buffer, bytes, executor, worker};
    if (backlog.empty() && try_send(message)) return;
    message.since = Clock::now();
    backlog.push_back(message);
  }

  // Sends what waits in the backlog, in order. A message refused for kRetryLimit costs its worker:
  // it is treated as lost (its tasks complete with EXECUTOR_LOST) rather than retried for ever.
  size_t flush_backlog() {
    size_t events = 0;
    while (!backlog.empty()) {
      if (try_send(backlog.front())) {
        backlog.pop_front();
        continue;
      }
      const Backlog stuck = backlog.front();
      if (Clock::now() - stuck.since < kRetryLimit) break;
      logger("sidecore.client")->warn("worker {} of executor {} refused a message for {} s: counting it as lost",
                                      stuck.worker, executors[stuck.executor].card.executor_id,
                                      std::chrono::duration_cast<std::chrono::seconds>(kRetryLimit).count());
      WorkerLink& worker = executors[stuck.executor].workers[stuck.worker];
      if (worker.address == stuck.address) {
        events += lose_worker(stuck.executor, stuck.worker);
        // A hello to a replacement that died as well: greet whichever the card names next at once.
        if (worker.hello_nonce != 0) worker.hello_sent = Clock::now() - options.connect_timeout;
      }
      // Whatever waits for that address goes, this message included; messages to the worker's
      // other addresses (a newer replacement) stay.
      std::erase_if(backlog, [&](const Backlog& message) {
        if (message.address != stuck.address) return false;
        buffers->release(message.buffer);
        return true;
      });
    }
    return events;
  }

  void send_copy(fi_addr_t address, const void* data, size_t bytes, uint32_t executor, uint32_t worker) {
    const uint32_t buffer = buffers->acquire();
    std::memcpy(buffers->data(buffer), data, bytes);
    send(address, buffer, bytes, executor, worker);
  }

  // --- connecting --------------------------------------------------------------------------------

  // Drops the messages still queued for executor `e` (it failed its handshake, or died), or for
  // one of its workers only.
  void drop_backlog_of(uint32_t e, uint32_t worker = UINT32_MAX) {
    std::erase_if(backlog, [&](const Backlog& message) {
      if (message.executor != e || (worker != UINT32_MAX && message.worker != worker)) return false;
      buffers->release(message.buffer);
      return true;
    });
  }

  // Forgets the executor being added (its handshake failed), with any message still queued for it.
  void abandon_last_executor() {
    drop_backlog_of(static_cast<uint32_t>(executors.size() - 1));
    executors.pop_back();
    if (executors.empty()) rings = {};  // they were made for that executor
  }

  // Greets worker `w` of executor `e`: a hello with the token, offering the worker its ring pair
  // where this client has rings with that executor (the pair starts empty: a worker it served before
  // is dead).
  void send_hello(uint32_t e, uint32_t w, uint64_t nonce, std::string_view with_token) {
    WorkerLink& worker = executors[e].workers[w];
    worker.on_rings = false;
    protocol::RingOffer offer{};
    const bool offer_rings = e == 0 && static_cast<bool>(rings);
    if (offer_rings) {
      transport::RingPair& pair = rings.pair(w);
      for (auto* control : {&pair.request, &pair.reply}) {
        control->tail.store(0, std::memory_order_relaxed);
        control->head.store(0, std::memory_order_relaxed);
      }
      transport::reopen_for_writes(pair.guard);
      offer = {rings.key(),
               reinterpret_cast<uint64_t>(rings.key_address()),
               static_cast<uint32_t>(getpid()),
               rings.fd(),
               w,
               0};
    }
    const uint32_t buffer = buffers->acquire();
    const size_t bytes = protocol::encode_hello(buffers->span(buffer), nonce, with_token, endpoint->name(),
                                                own_doorbell.name(), offer_rings ? &offer : nullptr);
    send(worker.address, buffer, bytes, e, w);
  }

  // Stops worker `w` writing into this process's memory (outputs of large ring tasks): from now on
  // the tasks it has are the client's to fail. Waits for a write under way, unless the worker died.
  void close_rings(uint32_t e, uint32_t w) noexcept {
    WorkerLink& worker = executors[e].workers[w];
    if (!worker.on_rings) return;
    worker.on_rings = false;
    const auto limit = Clock::now() + std::chrono::seconds(5);
    const bool closed = transport::close_for_writes(rings.pair(w).guard, [&] {
      std::this_thread::yield();
      return (worker.pidfd >= 0 && process_ended(worker.pidfd)) || Clock::now() > limit;
    });
    if (!closed) logger("sidecore.client")->warn("worker {} did not finish writing an output within 5 s", w);
  }

  // After a welcome: whether worker `w` of executor `e` serves this client on its ring pair.
  void take_rings(uint32_t e, uint32_t w, uint32_t welcome_flags) {
    WorkerLink& worker = executors[e].workers[w];
    worker.on_rings = e == 0 && static_cast<bool>(rings) && (welcome_flags & protocol::kWelcomeRings);
    worker.cma = worker.on_rings && (welcome_flags & protocol::kWelcomeCma);
    if (!worker.on_rings) return;
    transport::RingPair& pair = rings.pair(w);
    worker.requests = transport::RingProducer(&pair.request, pair.request_data);
    worker.replies = transport::RingConsumer(&pair.reply, pair.reply_data);
  }

  // Waits for `replies` (all registered in expected_replies) until the deadline; false on timeout.
  // With `asked` (an executor and worker), gives up early once that worker is lost.
  bool await(std::vector<Reply>& replies, Clock::time_point deadline,
             std::optional<std::pair<uint32_t, uint32_t>> asked = std::nullopt) {
    for (auto& reply : replies) expected_replies.push_back(&reply);
    bool all = false;
    while (true) {
      progress();
      all = true;
      for (auto& reply : replies) all = all && reply.arrived;
      const auto now = Clock::now();
      if (all || now > deadline) break;
      if (asked) {
        // Nothing may be in flight, so progress() skips the liveness check: make it here.
        if (watching_any && now >= next_liveness_check) check_liveness(now);
        if (executors[asked->first].workers[asked->second].lost) break;
      }
      std::this_thread::yield();
    }
    std::erase_if(expected_replies, [&](Reply* r) { return r >= replies.data() && r < replies.data() + replies.size(); });
    return all;
  }

  void add_executor(const ExecutorCard& card, std::string_view token) {
    if (card.provider != provider) {
      throw Error(ErrorKind::bad_arg, fmt::format("executor {} uses provider '{}', this client '{}'", card.executor_id,
                                                  card.provider, provider));
    }
    if (token.size() > protocol::kMaxTokenBytes) {
      throw Error(ErrorKind::bad_arg, fmt::format("token longer than {} bytes", protocol::kMaxTokenBytes));
    }
    const auto index = static_cast<uint32_t>(executors.size());
    ExecutorLink& link = executors.emplace_back();
    link.card = card;
    if (!card.doorbell.empty()) {
      try {
        link.doorbell = Doorbell::open(card.doorbell, static_cast<unsigned>(card.worker_addresses.size()));
      } catch (const std::exception& e) {
        abandon_last_executor();
        throw Error(ErrorKind::no_executor, fmt::format("executor {} on {} is not reachable from here ({})",
                                                        card.executor_id, card.host, e.what()));
      }
    }
    link.workers.resize(card.worker_addresses.size());
    if (index == 0 && card.rings && own_doorbell && options.transport == Transport::automatic &&
        card.host == local_host_name()) {
      try {
        rings = transport::RingSegment::create(static_cast<uint32_t>(card.worker_addresses.size()));
      } catch (const std::exception& e) {
        logger("sidecore.client")->info("no node-local rings ({}): tasks go over {}", e.what(), provider);
      }
    }
    std::vector<Reply> replies(card.worker_addresses.size());
    for (uint32_t w = 0; w < link.workers.size(); ++w) {
      auto& worker = link.workers[w];
      worker.address = endpoint->av().insert(card.worker_addresses[w]);
      if (worker.address == FI_ADDR_NOTAVAIL) {
        abandon_last_executor();
        throw Error(ErrorKind::bad_arg, fmt::format("executor card address {} is not a valid {} address", w, provider));
      }
      replies[w].key = random_u64();
      send_hello(index, w, replies[w].key, token);
    }
    const bool answered = await(replies, Clock::now() + options.connect_timeout);
    for (uint32_t w = 0; w < link.workers.size(); ++w) {
      const Reply& reply = replies[w];
      if (!reply.arrived) continue;
      if (reply.type == protocol::MessageType::refused) {
        const ErrorKind kind = reply.error;
        abandon_last_executor();
        throw Error(kind, kind == ErrorKind::auth
                              ? fmt::format("executor {} refused the token (AUTH)", card.executor_id)
                              : fmt::format("executor {} refused the connection ({})", card.executor_id, to_string(kind)));
      }
      auto& worker = link.workers[w];
      worker.peer_id = reply.welcome.header.peer_id;
      worker.session = reply.welcome.header.session;
      worker.credits = reply.welcome.credits;
      worker.connected = true;
      take_rings(index, w, reply.welcome.flags);
    }
    if (!answered) {
      abandon_last_executor();
      throw Error(ErrorKind::no_executor, fmt::format("executor {} on {} did not answer within {} ms", card.executor_id,
                                                      card.host, options.connect_timeout.count()));
    }
    // The site's bound on any task (max_task_s) is the longest a task may take from here too.
    task_timeout = options.task_timeout;
    if (card.max_task_s > 0) {
      const std::chrono::milliseconds bound(uint64_t{card.max_task_s} * 1000);
      if (task_timeout.count() == 0 || task_timeout > bound) task_timeout = bound;
    }
    size_t credits = 0;
    for (const auto& worker : link.workers) credits += worker.credits;
    post_receives(credits);
    watch_process(link);
    watching_any = watching_any || link.pidfd >= 0 || link.card_fd >= 0;
    total_workers += link.workers.size();
  }

  // --- liveness ----------------------------------------------------------------------------------

  // An executor on this host is watched through a pidfd on the pid in its card, and each of its
  // worker processes through one on theirs; one elsewhere through a connection to its liveness port,
  // which its kernel closes when it dies and on which it announces replaced workers
  // (liveness_listener.hpp). Each descriptor turns readable then.
  void watch_process(ExecutorLink& link) {
    if (link.card.host != local_host_name()) {
      if (link.card.watch > 0) {
        link.pidfd = connect_liveness(link.card.host, static_cast<uint16_t>(link.card.watch),
                                      static_cast<int>(options.connect_timeout.count()));
        if (link.pidfd < 0) {
          logger("sidecore.client")->warn("cannot watch executor {} on {} (port {}): its loss shows only as task "
                                          "timeouts", link.card.executor_id, link.card.host, link.card.watch);
        }
      }
      return;
    }
    for (uint32_t w = 0; w < link.card.worker_pids.size() && w < link.workers.size(); ++w) {
      watch_worker(link, w);
    }
    // Without a card file to read (an executor of another simulated node, say), replaced workers'
    // cards come over the liveness port, where the executor has one.
    if (card_source.empty() && link.card.watch > 0 && !link.card.worker_pids.empty()) {
      link.card_fd = connect_liveness(link.card.host, static_cast<uint16_t>(link.card.watch),
                                      static_cast<int>(options.connect_timeout.count()));
    }
    if (link.card.pid <= 0) return;
    link.pidfd = open_pidfd(link.card.pid);
    if (link.pidfd >= 0) return;
    if (errno == ESRCH) {  // it answered the handshake and is gone already
      link.lost = true;
      return;
    }
    logger("sidecore.client")->debug("cannot watch executor {} (pid {}): {}", link.card.executor_id, link.card.pid,
                                     std::strerror(errno));
  }

  static int open_pidfd(long pid) { return static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)); }

  void watch_worker(ExecutorLink& link, uint32_t w) {
    WorkerLink& worker = link.workers[w];
    if (worker.pidfd >= 0) close(worker.pidfd);
    worker.pidfd = w < link.card.worker_pids.size() ? open_pidfd(link.card.worker_pids[w]) : -1;
    watching_any = true;
  }

  static bool process_ended(int fd) {
    pollfd entry{fd, POLLIN, 0};
    return poll(&entry, 1, 0) > 0;
  }

  size_t check_liveness(Clock::time_point now) {
    next_liveness_check = now + options.liveness_interval;
    size_t events = 0;
    for (uint32_t e = 0; e < executors.size(); ++e) {
      ExecutorLink& link = executors[e];
      if (link.lost) continue;
      if (link.pidfd >= 0 && process_ended(link.pidfd)) {
        if (link.card.host == local_host_name() || !read_liveness(link, link.pidfd)) {
          events += lose_executor(e);
          continue;
        }
      }
      if (link.card_fd >= 0 && process_ended(link.card_fd) && !read_liveness(link, link.card_fd)) {
        close(link.card_fd);  // the executor ended; its pidfd says so
        link.card_fd = -1;
      }
      for (uint32_t w = 0; w < link.workers.size(); ++w) {
        WorkerLink& worker = link.workers[w];
        if (worker.pidfd >= 0 && !worker.lost && process_ended(worker.pidfd)) events += lose_worker(e, w);
      }
      if (link.newer_card) {
        ExecutorCard card = std::move(*link.newer_card);
        link.newer_card.reset();
        apply_card(e, card);
      }
    }
    return events;
  }

  // Reads what an executor on another host sent on its liveness connection: "card ..." lines (kept
  // in newer_card, applied by check_liveness) and "lost <worker>" lines (applied here). False once
  // the connection is closed: the executor is gone.
  bool read_liveness(ExecutorLink& link, int fd) {
    char buffer[4096];
    ssize_t got;
    while ((got = read(fd, buffer, sizeof buffer)) > 0) {
      link.liveness_input.append(buffer, static_cast<size_t>(got));
      if (link.liveness_input.size() > (size_t{1} << 20)) return false;  // not an executor
    }
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return false;
    for (size_t end; (end = link.liveness_input.find('\n')) != std::string::npos;
         link.liveness_input.erase(0, end + 1)) {
      const std::string_view line(link.liveness_input.data(), end);
      if (line.starts_with("card ")) {
        try {
          link.newer_card = route_for_caller(parse_card(line.substr(5)), local_host_name());
        } catch (const CardError& e) {
          logger("sidecore.client")->warn("executor {} sent a card this build cannot read: {}", link.card.executor_id,
                                          e.what());
        }
      } else if (line.starts_with("lost ")) {
        const unsigned long w = std::strtoul(std::string(line.substr(5)).c_str(), nullptr, 10);
        if (w < link.workers.size() && !link.workers[w].lost) {
          lose_worker(static_cast<uint32_t>(&link - executors.data()), static_cast<uint32_t>(w));
        }
      }
    }
    return true;
  }

  // Completes every task of executor `e` with EXECUTOR_LOST (revoking its access to their buffers
  // first) and fails later ones at once.
  size_t lose_executor(uint32_t e) {
    ExecutorLink& link = executors[e];
    for (uint32_t w = 0; w < link.workers.size(); ++w) {
      if (!link.workers[w].on_rings) continue;
      poll_ring(e, w);  // results written before it died are real
      close_rings(e, w);
    }
    link.lost = true;
    for (auto& worker : link.workers) {
      worker.credits = 0;
      worker.outstanding = 0;
      worker.connected = false;  // nothing more is sent to it, goodbye included
    }
    drop_backlog_of(e);
    const size_t lost = fail_tasks(e, UINT32_MAX, true);
    logger("sidecore.client")->warn("executor {} on {} (pid {}) is gone: {} task(s) complete with EXECUTOR_LOST",
                                    link.card.executor_id, link.card.host, link.card.pid, lost);
    return lost;
  }

  // Worker `w` of executor `e` died (a function crashed it, or its executor replaced it after a
  // deadline): its tasks complete with EXECUTOR_LOST (TIMEOUT where their deadline has passed), the
  // others' go on, and its replacement is greeted once the card names it.
  size_t lose_worker(uint32_t e, uint32_t w) {
    ExecutorLink& link = executors[e];
    WorkerLink& worker = link.workers[w];
    if (worker.lost) return 0;
    // Results it wrote into its reply ring before it died are real: deliver them first.
    if (worker.on_rings) poll_ring(e, w);
    worker.on_rings = false;
    worker.lost = true;
    worker.connected = false;
    worker.credits = 0;
    worker.outstanding = 0;
    worker.hello_nonce = 0;
    ++link.lost_workers;
    drop_backlog_of(e, w);
    const size_t lost = fail_tasks(e, w, false);
    logger("sidecore.client")->warn("worker {} of executor {} on {} is gone: {} task(s) complete with EXECUTOR_LOST",
                                    w, link.card.executor_id, link.card.host, lost);
    next_card_check = Clock::now();
    return lost;
  }

  // Fails the tasks of executor `e` on worker `w` (UINT32_MAX: on any worker; with `waiting`, also
  // those still queued for a credit). Returns how many completed.
  size_t fail_tasks(uint32_t e, uint32_t w, bool waiting) {
    const auto now = Clock::now();
    if (waiting) executors[e].waiting.clear();
    std::vector<uint32_t> lost;
    for (uint32_t i = 0; i < slots.size(); ++i) {
      TaskSlot& slot = slots[i];
      if (!slot.used || slot.executor != e) continue;
      const bool mine = slot.on_wire ? (w == UINT32_MAX || slot.worker == w) : (waiting && slot.waiting);
      if (!mine) continue;
      if (slot.collectable || slot.delivered) {  // timed out before: only its slot was left
        slot.on_wire = false;
        release_if_finished(i);
        continue;
      }
      lost.push_back(i);
    }
    for (const uint32_t i : lost) {
      TaskSlot& slot = slots[i];  // callbacks below may grow `slots`: index afresh each time
      const bool expired = slot.deadline != Clock::time_point{} && slot.deadline <= now;
      slot.in_region = {};
      slot.out_region = {};
      slot.on_wire = false;
      slot.waiting = false;
      deliver(i, Completion{expired ? ErrorKind::timeout : ErrorKind::executor_lost, 0, 0, false});
    }
    return lost.size();
  }

  // Greets the workers that `card` (the executor's latest) names in place of lost ones.
  void apply_card(uint32_t e, const ExecutorCard& card) {
    ExecutorLink& link = executors[e];
    if (card.executor_id != link.card.executor_id || card.provider != link.card.provider ||
        card.worker_addresses.size() != link.workers.size()) {
      return;
    }
    const auto now = Clock::now();
    for (uint32_t w = 0; w < link.workers.size(); ++w) {
      WorkerLink& worker = link.workers[w];
      const bool replaced = card.worker_addresses[w] != link.card.worker_addresses[w];
      if (replaced && !worker.lost) lose_worker(e, w);  // the card is the first news of it (another host)
      if (!worker.lost) continue;
      if (!replaced && !(worker.hello_nonce != 0 && now - worker.hello_sent > options.connect_timeout)) continue;
      if (replaced) {
        // The old entry stays: libfabric 1.17's shm keeps a removed peer's state in the endpoint and
        // hands the entry's index to the next insert, whose sends then touch an unmapped region
        // (a segfault, seen in the mpi tier). One entry per replacement, within the restart limit.
        worker.address = endpoint->av().insert(card.worker_addresses[w]);
        link.card.worker_addresses[w] = card.worker_addresses[w];
        if (w < card.worker_pids.size() && w < link.card.worker_pids.size()) {
          link.card.worker_pids[w] = card.worker_pids[w];
          if (link.card.host == local_host_name()) watch_worker(link, w);
        }
      }
      if (worker.address == FI_ADDR_NOTAVAIL) continue;
      worker.hello_nonce = random_u64();
      worker.hello_sent = now;
      send_hello(e, w, worker.hello_nonce, token);
    }
  }

  // A welcome from a replaced worker: it serves this client again.
  bool on_replacement_answer(uint64_t nonce, const protocol::MessageHeader& header, const protocol::WelcomeMessage* welcome) {
    for (uint32_t e = 0; e < executors.size(); ++e) {
      for (uint32_t w = 0; w < executors[e].workers.size(); ++w) {
        WorkerLink& worker = executors[e].workers[w];
        if (worker.hello_nonce != nonce || nonce == 0) continue;
        worker.hello_nonce = 0;
        if (welcome == nullptr) {
          logger("sidecore.client")->warn("the new worker {} of executor {} refused this caller", w,
                                          executors[e].card.executor_id);
          return true;
        }
        worker.peer_id = header.peer_id;
        worker.session = header.session;
        worker.credits = welcome->credits;
        worker.outstanding = 0;
        worker.connected = true;
        worker.lost = false;
        take_rings(e, w, welcome->flags);
        --executors[e].lost_workers;
        logger("sidecore.client")->info("worker {} of executor {} serves again", w, executors[e].card.executor_id);
        if (!executors[e].waiting.empty()) dispatch_waiting(executors[e].waiting);
        return true;
      }
    }
    return false;
  }

  // While a worker is lost: looks for the card that names its replacement, at most every
  // kCardCheckInterval (the card file through the reference on this host; another host's card
  // comes on the liveness connection).
  void look_for_replacements(Clock::time_point now) {
    if (now < next_card_check) return;
    next_card_check = now + kCardCheckInterval;
    for (uint32_t e = 0; e < executors.size(); ++e) {
      ExecutorLink& link = executors[e];
      if (link.lost || link.lost_workers == 0) continue;
      if (e == 0 && !card_source.empty()) {
        if (const auto text = current_card(card_source)) {
          try {
            apply_card(e, route_for_caller(parse_card(*text), local_host_name()));
          } catch (const CardError&) {
          }
        }
      } else {
        // The cards come on the liveness connection (the executor's only one on another host).
        const int fd = link.card_fd >= 0 ? link.card_fd : (link.card.host != local_host_name() ? link.pidfd : -1);
        if (fd >= 0 && process_ended(fd) && !read_liveness(link, fd)) continue;  // check_liveness sees to it
        // No news: greet again a replacement that did not answer.
        const ExecutorCard card = link.newer_card ? *link.newer_card : link.card;
        link.newer_card.reset();
        apply_card(e, card);
      }
    }
  }

  // An internal failure (no memory, a provider's error): every task completes with EXECUTOR_LOST and
  // the executors count as lost, rather than let an exception reach a caller that cannot take one
  // (the MPI progress hook, a progress thread, a destructor).
  size_t fail_everything(const char* what) noexcept {
    try {
      logger("sidecore.client")->error("the client failed ({}): its tasks complete with EXECUTOR_LOST", what);
      size_t failed = 0;
      for (uint32_t e = 0; e < executors.size(); ++e) {
        if (!executors[e].lost) failed += lose_executor(e);
      }
      return failed;
    } catch (...) {
      return 0;  // nothing more can be done without memory
    }
  }

  // --- receiving ---------------------------------------------------------------------------------

  size_t progress() {
    fault::inject(fault::Point::client_progress);
    size_t events = poll_queue();
    if (in_flight > 0 && (!deadlines.empty() || watching_any)) {
      const auto now = Clock::now();
      if (!deadlines.empty()) events += expire(now);
      if (watching_any && now >= next_liveness_check) events += check_liveness(now);
    }
    if (replacements_due()) look_for_replacements(Clock::now());
    return events;
  }

  bool replacements_due() const noexcept {
    for (const auto& executor : executors) {
      if (executor.lost_workers > 0 && !executor.lost) return true;
    }
    return false;
  }

  size_t poll_queue() {
    size_t events = 0;
    if (rings && !executors.empty()) {
      for (uint32_t w = 0; w < executors[0].workers.size(); ++w) {
        if (executors[0].workers[w].on_rings) events += poll_ring(0, w);
      }
    }
    return events + poll_fabric_queue();
  }

  // Results in worker `w`'s reply ring.
  size_t poll_ring(uint32_t e, uint32_t w) {
    WorkerLink& worker = executors[e].workers[w];
    if (!worker.replies.ready()) return 0;
    std::string error;
    const size_t handled =
        worker.replies.consume([&](std::span<const std::byte> message) { handle_message(message); }, kBatch, &error);
    if (!error.empty()) {
      // Only its worker writes there: count the worker as lost rather than read on.
      logger("sidecore.client")->error("worker {} of executor {}: {}", w, executors[e].card.executor_id, error);
      worker.on_rings = false;
      return handled + lose_worker(e, w);
    }
    return handled;
  }

  size_t poll_fabric_queue() {
    while (deferred_count > 0) repost(deferred_reposts[--deferred_count]);
    if (!backlog.empty()) flush_backlog();
    fi_cq_data_entry entries[kBatch];
    const ssize_t count = endpoint->cq().read(entries, kBatch);
    if (count == -FI_EAGAIN) return 0;
    if (count == -FI_EAVAIL) {
      fi_cq_err_entry error{};
      const std::string why = endpoint->cq().read_error(error);
      const auto raw = reinterpret_cast<uintptr_t>(error.op_context);
      const auto index = static_cast<uint32_t>(raw & 0xffffffffu);
      if (static_cast<OpKind>(raw >> 32) == OpKind::receive) {
        --posted_receives;
        if (error.err != FI_ECANCELED) repost(index);
      } else {
        buffers->release(index);
        logger("sidecore.client")->warn("a message to the executor was not delivered: {}", why);
      }
      return 1;
    }
    if (count < 0) return 0;
    for (ssize_t i = 0; i < count; ++i) {
      const auto raw = reinterpret_cast<uintptr_t>(entries[i].op_context);
      const auto index = static_cast<uint32_t>(raw & 0xffffffffu);
      if (static_cast<OpKind>(raw >> 32) == OpKind::send) {
        buffers->release(index);
        continue;
      }
      --posted_receives;
      handle_message(std::span<const std::byte>(buffers->data(index), std::min(entries[i].len, buffers->buffer_bytes())));
      if (deferred_count < kDeferredReposts) {
        deferred_reposts[deferred_count++] = index;  // the message is handled: nothing refers to it
      } else {
        repost(index);
      }
    }
    return static_cast<size_t>(count);
  }

  Reply* find_reply(uint64_t key) {
    for (Reply* reply : expected_replies) {
      if (reply->key == key && !reply->arrived) return reply;
    }
    return nullptr;
  }

  void handle_message(std::span<const std::byte> message) {
    // Results are nearly all the traffic: decoded once, in on_result.
    if (const auto header = protocol::peek_header<protocol::ResultMessage>(message, protocol::MessageType::result)) {
      on_result(*header, message);
      return;
    }
    std::string error;
    auto header = protocol::decode_header(message, &error);
    if (!header) {
      logger("sidecore.client")->warn("dropped a malformed message: {}", error);
      return;
    }
    switch (header->type) {
      case protocol::MessageType::result: on_result(*header, message); break;
      case protocol::MessageType::welcome:
        if (auto welcome = protocol::decode_welcome(message, &error)) {
          if (Reply* reply = find_reply(welcome->nonce)) {
            reply->arrived = true;
            reply->type = header->type;
            reply->welcome = *welcome;
          } else {
            on_replacement_answer(welcome->nonce, welcome->header, &*welcome);
          }
        }
        break;
      case protocol::MessageType::refused:
        if (auto refused = protocol::decode_refused(message, &error)) {
          if (Reply* reply = find_reply(refused->nonce)) {
            reply->arrived = true;
            reply->type = header->type;
            reply->error = refused->error;
          } else {
            on_replacement_answer(refused->nonce, *header, nullptr);
          }
        }
        break;
      case protocol::MessageType::lookup_reply:
        if (auto answer = protocol::decode_lookup_reply(message, &error)) {
          if (Reply* reply = find_reply(answer->request_id)) {
            reply->arrived = true;
            reply->type = header->type;
            reply->error = answer->error;
            reply->function_id = answer->function_id;
          }
        }
        break;
      default: error = fmt::format("unexpected message type {}", static_cast<unsigned>(header->type));
    }
    if (!error.empty()) logger("sidecore.client")->warn("dropped a message: {}", error);
  }

  void on_result(const protocol::MessageHeader& header, std::span<const std::byte> message) {
    if (message.size() < sizeof(protocol::ResultMessage)) {
      logger("sidecore.client")->warn("dropped a result of {} bytes", message.size());
      return;
    }
    const auto fixed = protocol::load<protocol::ResultMessage>(message);
    const uint64_t slot_index = fixed.request_id & kSlotMask;
    if (slot_index >= slots.size()) return;
    TaskSlot& slot = slots[slot_index];
    if (slot.id != fixed.request_id || !slot.on_wire) return;  // stale: drop
    WorkerLink& worker = executors[slot.executor].workers[slot.worker];
    if (header.peer_id != worker.peer_id || header.session != worker.session) {
      logger("sidecore.client")->warn("dropped a result that did not come from the task's worker");
      return;
    }
    slot.on_wire = false;
    --worker.outstanding;
    const auto index = static_cast<uint32_t>(slot_index);
    const uint32_t executor = slot.executor;  // deliver() may hand the slot to a new task
    if (slot.collectable || slot.delivered) {
      // Timed out earlier: the user has moved on, and nothing may touch `out` any more.
      release_if_finished(index);
    } else {
      std::string error;
      auto result = protocol::decode_result(message, slot.out_remote, &error, transport::kRingInlineLimit);
      Completion completion;
      if (!result) {
        logger("sidecore.client")->warn("malformed result for task {}: {}", slot.id, error);
        completion.error = ErrorKind::executor_lost;
      } else if (result->fixed.out_bytes > slot.out_capacity) {
        completion.error = ErrorKind::function;
      } else {
        completion.error = result->fixed.error;
        completion.function_return = result->fixed.function_return;
        completion.out_bytes = result->fixed.out_bytes;
        if (!result->inline_output.empty()) std::memcpy(slot.out, result->inline_output.data(), result->inline_output.size());
      }
      deliver(index, completion);
    }
    auto& waiting = executors[executor].waiting;
    if (!waiting.empty()) dispatch_waiting(waiting);
  }

  // Times out every task whose deadline has passed.
  size_t expire(Clock::time_point now) {
    size_t expired = 0;
    while (!deadlines.empty() && deadlines.front().first <= now) {
      const TaskId id = deadlines.front().second;
      deadlines.pop_front();
      const uint64_t index = id & kSlotMask;
      if (index >= slots.size() || slots[index].id != id) continue;
      TaskSlot& slot = slots[index];
      if (slot.collectable || slot.delivered) continue;
      // Revoke the executor's access to the buffers first: a late RMA must fail, not land.
      slot.in_region = {};
      slot.out_region = {};
      slot.waiting = false;
      deliver(static_cast<uint32_t>(index), Completion{ErrorKind::timeout, 0, 0, false});
      ++expired;
    }
    return expired;
  }

  // --- tasks -------------------------------------------------------------------------------------

  uint32_t acquire_slot() {
    if (!free_slots.empty()) {
      const uint32_t index = free_slots.back();
      free_slots.pop_back();
      return index;
    }
    if (slots.size() >= kMaxSlots) return UINT32_MAX;
    slots.emplace_back();
    return static_cast<uint32_t>(slots.size() - 1);
  }

  // Back to TaskSlot{} field by field: the registrations are already released (deliver), so this
  // skips constructing, moving and destroying two MemoryRegions per task.
  static void reset(TaskSlot& slot) noexcept {
    if (slot.in_region) slot.in_region = {};
    if (slot.out_region) slot.out_region = {};
    slot.id = kNoTask;
    slot.used = slot.waiting = slot.on_wire = slot.collectable = slot.delivered = false;
    slot.deadline = {};
    slot.executor = slot.worker = slot.function_id = 0;
    slot.in = nullptr;
    slot.in_bytes = 0;
    slot.out = nullptr;
    slot.out_capacity = 0;
    slot.out_remote = false;
    slot.completion = Completion{};
    slot.callback = nullptr;
    slot.user = nullptr;
    slot.hand_back = false;
  }

  void release_if_finished(uint32_t index) {
    TaskSlot& slot = slots[index];
    if (slot.on_wire || slot.waiting || !slot.delivered) return;
    reset(slot);
    free_slots.push_back(index);
  }

  // Hands `completion` to the user: to the callback, to the handed-back list, or for
  // test()/wait() to collect.
  void deliver(uint32_t index, const Completion& completion) {
    TaskSlot& slot = slots[index];
    if (slot.in_region) slot.in_region = {};
    if (slot.out_region) slot.out_region = {};
    slot.waiting = false;
    slot.completion = completion;
    --in_flight;
    if (slot.hand_back) {
      handed_back.push_back(TaskCompletion{slot.id, completion, slot.user});  // room reserved at submit
      slot.hand_back = false;
      slot.delivered = true;
      release_if_finished(index);
    } else if (slot.callback != nullptr) {
      const auto callback = slot.callback;
      void* user = slot.user;
      const TaskId id = slot.id;
      slot.callback = nullptr;
      slot.delivered = true;
      release_if_finished(index);
      callback(user, id, completion);  // last: it may submit again and reuse the slot
    } else {
      slot.collectable = true;
    }
  }

  TaskId submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                CompletionCallback callback, void* user, bool hand_back = false) {
    // Every task in flight may complete before the next take_completions(): room for all of them.
    if (hand_back) handed_back.reserve(handed_back.size() + in_flight + 1);
    const uint32_t index = acquire_slot();
    if (index == UINT32_MAX) return kNoTask;
    TaskSlot& slot = slots[index];
    slot.id = (next_sequence++ << kSlotBits) | index;
    slot.used = true;
    slot.callback = callback;
    slot.user = user;
    slot.hand_back = hand_back;
    slot.in = in;
    slot.in_bytes = in_bytes;
    slot.out = out;
    slot.out_capacity = out_capacity;
    ++in_flight;
    const TaskId id = slot.id;
    const bool bad = (in == nullptr && in_bytes > 0) || (out == nullptr && out_capacity > 0) || !function.valid() ||
                     function.owner_ != this || in_bytes > protocol::kMaxTransferBytes ||
                     out_capacity > protocol::kMaxTransferBytes;
    if (bad) {
      deliver(index, Completion{ErrorKind::bad_arg, 0, 0, false});
      return id;
    }
    if (task_timeout.count() > 0 || watching_any) {
      const auto now = Clock::now();
      // A worker that died while nothing was in flight is noticed here, before a task goes to it.
      if (watching_any && now >= next_liveness_check) check_liveness(now);
      if (task_timeout.count() > 0) {
        slot.deadline = now + task_timeout;
        deadlines.emplace_back(slot.deadline, id);
      }
    }
    // One executor per client; the MPI extension's pool spreads tasks over several clients.
    slot.executor = 0;
    if (executors[0].lost) {
      deliver(index, Completion{ErrorKind::executor_lost, 0, 0, false});
      return id;
    }
    slot.function_id = known_functions[function.ids_[0]];
    ExecutorLink& executor = executors[0];
    slot.waiting = true;
    if (executor.waiting.empty() && dispatch(index)) return id;
    executor.waiting.emplace_back(index, id);
    return id;
  }

  // Sends the task in `index` to the least loaded worker with a free credit; false when none has one.
  // Tasks to one worker over its request ring; the worker is woken (if it sleeps) on commit.
  class RingRequests final : public transport::MessagePort {
   public:
    RingRequests(WorkerLink& worker, Doorbell& doorbell, uint32_t w) noexcept
        : worker_(worker), doorbell_(doorbell), w_(w) {}
    std::span<std::byte> reserve(size_t bytes) override { return worker_.requests.reserve(bytes); }
    void commit(size_t bytes) override {
      worker_.requests.commit(bytes);
      doorbell_.ring(w_);
    }

   private:
    WorkerLink& worker_;
    Doorbell& doorbell_;
    uint32_t w_;
  };
  // Tasks to one worker over libfabric: a message buffer, sent (or queued in the backlog) on commit.
  class FabricRequests final : public transport::MessagePort {
   public:
    FabricRequests(Impl& client, uint32_t e, uint32_t w) noexcept : client_(client), e_(e), w_(w) {}
    std::span<std::byte> reserve(size_t bytes) override {
      buffer_ = client_.buffers->acquire();
      return client_.buffers->span(buffer_).first(std::min(bytes, client_.buffers->buffer_bytes()));
    }
    void commit(size_t bytes) override {
      client_.send(client_.executors[e_].workers[w_].address, buffer_, bytes, e_, w_);
    }

   private:
    Impl& client_;
    uint32_t e_, w_;
    uint32_t buffer_ = UINT32_MAX;
  };

  // Sends the task in `index` to the least loaded worker with a free credit; false when none has one
  // (or its request ring is full): the task then waits in the client.
  bool dispatch(uint32_t index) {
    TaskSlot& slot = slots[index];
    ExecutorLink& executor = executors[slot.executor];
    uint32_t best = UINT32_MAX;
    for (uint32_t w = 0; w < executor.workers.size(); ++w) {
      const WorkerLink& link = executor.workers[w];
      if (link.outstanding < link.credits &&
          (best == UINT32_MAX || link.outstanding < executor.workers[best].outstanding)) {
        best = w;
        if (link.outstanding == 0) break;
      }
    }
    if (best == UINT32_MAX) return false;
    WorkerLink& worker = executor.workers[best];

    protocol::TaskMessage task{protocol::make_header(protocol::MessageType::task, worker.peer_id, worker.session),
                               slot.id, slot.function_id, 0, slot.in_bytes, slot.out_capacity};
    if (slot.deadline != Clock::time_point{}) {  // the time left travels with the task (at least 1 ms)
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(slot.deadline - Clock::now()).count();
      task.header.deadline_ms = static_cast<uint32_t>(std::clamp<int64_t>(left, 1, UINT32_MAX));
    }
    std::optional<protocol::RemoteBuffer> input, output;
    if (worker.on_rings && fits_ring(slot, worker)) {
      // Past the rings' inline limit, buffers are named by their address here (cross-memory attach).
      if (slot.in_bytes > transport::kRingInlineLimit) input = {reinterpret_cast<uint64_t>(slot.in), 0};
      if (slot.out_capacity > transport::kRingInlineLimit) output = {reinterpret_cast<uint64_t>(slot.out), 0};
      RingRequests port(worker, executor.doorbell, best);
      if (!send_task(port, slot, task, input, output)) return false;  // the ring is full
    } else {
      // Past libfabric's inline limit, buffers are registered for the worker's RMA.
      try {
        if (slot.in_bytes > protocol::kInlineLimit) {
          slot.in_region =
              fabric::MemoryRegion(domain, endpoint.get(), const_cast<void*>(slot.in), slot.in_bytes, FI_REMOTE_READ);
          input = {slot.in_region.remote_address(), slot.in_region.key()};
        }
        if (slot.out_capacity > protocol::kInlineLimit) {
          slot.out_region = fabric::MemoryRegion(domain, endpoint.get(), slot.out, slot.out_capacity, FI_REMOTE_WRITE);
          output = {slot.out_region.remote_address(), slot.out_region.key()};
        }
      } catch (const fabric::FabricError& e) {
        logger("sidecore.client")->warn("cannot register task {}'s buffers: {}", slot.id, e.what());
        deliver(index, Completion{ErrorKind::bad_arg, 0, 0, false});
        return true;
      }
      FabricRequests port(*this, slot.executor, best);
      send_task(port, slot, task, input, output);  // a message buffer is always there
    }
    slot.worker = best;
    slot.waiting = false;
    slot.out_remote = output.has_value();
    ++worker.outstanding;
    slot.on_wire = true;
    return true;
  }

  // Whether the task can go on the worker's rings: inline up to kRingInlineLimit, larger inputs and
  // outputs by cross-memory attach where the worker can use it. An output so written could land
  // after the task timed out, so a task with a deadline takes its large output over libfabric,
  // whose registration is revoked at the deadline.
  static bool fits_ring(const TaskSlot& slot, const WorkerLink& worker) noexcept {
    const bool input_ok = slot.in_bytes <= transport::kRingInlineLimit || worker.cma;
    const bool output_ok =
        slot.out_capacity <= transport::kRingInlineLimit || (worker.cma && slot.deadline == Clock::time_point{});
    return input_ok && output_ok;
  }

  // Writes the task message (its remote-buffer descriptors, then its input unless that is remote)
  // through `port`; false when the port has no room now.
  static bool send_task(transport::MessagePort& port, const TaskSlot& slot, protocol::TaskMessage task,
                        const std::optional<protocol::RemoteBuffer>& input,
                        const std::optional<protocol::RemoteBuffer>& output) {
    if (input) task.flags |= protocol::kInputRemote;
    if (output) task.flags |= protocol::kOutputRemote;
    const size_t inline_in = input ? 0 : slot.in_bytes;
    const size_t bytes = sizeof task + (input ? sizeof *input : 0) + (output ? sizeof *output : 0) + inline_in;
    const std::span<std::byte> room = port.reserve(bytes);
    if (room.empty()) return false;
    const size_t header =
        protocol::encode_task_header(room, task, input ? &*input : nullptr, output ? &*output : nullptr);
    if (inline_in > 0) std::memcpy(room.data() + header, slot.in, inline_in);
    port.commit(bytes);
    return true;
  }

  void dispatch_waiting(std::deque<std::pair<uint32_t, TaskId>>& waiting) {
    while (!waiting.empty()) {
      const auto [index, id] = waiting.front();
      if (slots[index].id != id || !slots[index].waiting) {  // timed out or cancelled meanwhile
        waiting.pop_front();
        continue;
      }
      if (!dispatch(index)) return;
      waiting.pop_front();
    }
  }

  bool cancel(TaskId id) {
    const uint64_t index = id & kSlotMask;
    if (id == kNoTask || index >= slots.size() || slots[index].id != id || !slots[index].waiting) return false;
    deliver(static_cast<uint32_t>(index), Completion{ErrorKind::none, 0, 0, true});
    return true;
  }

  std::optional<Completion> collect(uint64_t index) {
    TaskSlot& slot = slots[index];
    if (!slot.collectable) return std::nullopt;
    Completion completion = slot.completion;
    slot.collectable = false;
    slot.delivered = true;
    release_if_finished(static_cast<uint32_t>(index));
    return completion;
  }

  // test() after fail_everything: the task's completion if it has one now, else EXECUTOR_LOST.
  std::optional<Completion> collect_after_failure(TaskId id) noexcept {
    try {
      const uint64_t index = id & kSlotMask;
      if (id != kNoTask && index < slots.size() && slots[index].id == id && slots[index].collectable) {
        return collect(index);
      }
    } catch (...) {
    }
    return Completion{ErrorKind::executor_lost, 0, 0, false};
  }

  std::optional<Completion> test(TaskId id) {
    const uint64_t index = id & kSlotMask;
    if (id == kNoTask || index >= slots.size() || slots[index].id != id || slots[index].delivered ||
        slots[index].hand_back || (slots[index].callback != nullptr && !slots[index].collectable)) {
      return Completion{ErrorKind::bad_arg, 0, 0, false};
    }
    if (auto done = collect(index)) return done;
    progress();
    return collect(index);
  }

  void take_completions(std::vector<TaskCompletion>& completed) {
    if (handed_back.empty()) return;
    if (completed.empty()) {
      completed.swap(handed_back);  // the two buffers take turns: no allocation once both are grown
      try {
        handed_back.reserve(in_flight);  // the tasks still in flight: deliver() must not allocate
      } catch (const std::bad_alloc&) {
        // deliver() then tries again, and a failure there fails the client like any other
      }
      return;
    }
    completed.insert(completed.end(), handed_back.begin(), handed_back.end());
    handed_back.clear();
  }

  bool prepare_sleep() {
    if (!handed_back.empty()) return false;
    // sleep() runs while other threads may use the client (under their own lock, as the MPI
    // extension's hook and submit do): it must not read the task table, so it gets the next
    // deadline from here.
    next_deadline = deadlines.empty() ? Clock::time_point::max() : deadlines.front().first;
    if (own_doorbell) {
      own_doorbell.prepare_sleep(0);
      if (progress() > 0 || !backlog.empty()) {
        own_doorbell.cancel_sleep(0);
        return false;
      }
      return true;
    }
    if (progress() > 0 || !backlog.empty()) return false;
    return endpoint->cq().wait_fd() < 0 || endpoint->cq().trywait();
  }

  void sleep(std::chrono::microseconds timeout) {
    if (next_deadline != Clock::time_point::max()) {  // wake up for the next task deadline
      const auto until_deadline = std::chrono::duration_cast<std::chrono::microseconds>(next_deadline - Clock::now());
      timeout = std::max(std::chrono::microseconds(0), std::min(timeout, until_deadline));
    }
    if (own_doorbell) {
      own_doorbell.wait(0, timeout);
      return;
    }
    const int fd = endpoint->cq().wait_fd();
    if (fd < 0) {
      std::this_thread::sleep_for(std::min(timeout, std::chrono::microseconds(50)));
      return;
    }
    pollfd fds[2] = {{fd, POLLIN, 0}, {interrupt_fd, POLLIN, 0}};
    ::poll(fds, 2, static_cast<int>((timeout.count() + 999) / 1000));
    if (fds[1].revents & POLLIN) {
      uint64_t value;
      [[maybe_unused]] ssize_t drained = read(interrupt_fd, &value, sizeof value);
    }
  }

  void interrupt_sleep() noexcept {
    if (own_doorbell) {
      own_doorbell.ring(0);
    } else if (interrupt_fd >= 0) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t written = write(interrupt_fd, &one, sizeof one);
    }
  }

  Function lookup(std::string_view library, std::string_view symbol) {
    if (library.empty() || library.size() > protocol::kMaxLibraryBytes) {
      throw Error(ErrorKind::bad_arg, fmt::format("library path must be 1 to {} bytes", protocol::kMaxLibraryBytes));
    }
    if (symbol.empty() || symbol.size() > protocol::kMaxSymbolBytes) {
      throw Error(ErrorKind::bad_arg, fmt::format("symbol name must be 1 to {} bytes", protocol::kMaxSymbolBytes));
    }
    if (executors[0].lost) {
      throw Error(ErrorKind::executor_lost, fmt::format("executor {} is gone", executors[0].card.executor_id));
    }
    const uint32_t id = lookup_on(0, library, symbol);
    Function function;
    function.library_ = library;
    function.symbol_ = symbol;
    function.owner_ = this;
    function.ids_.push_back(static_cast<uint32_t>(known_functions.size()));
    known_functions.push_back(id);
    return function;
  }

  // A worker of executor `e` that serves now; while all are being replaced, waits for one up to
  // the connect timeout. Throws Error(EXECUTOR_LOST).
  uint32_t serving_worker(uint32_t e) {
    const auto deadline = Clock::now() + options.connect_timeout;
    while (true) {
      const ExecutorLink& executor = executors[e];
      for (uint32_t w = 0; w < executor.workers.size(); ++w) {
        if (executor.workers[w].connected) return w;
      }
      if (executor.lost || Clock::now() > deadline) {
        throw Error(ErrorKind::executor_lost,
                    fmt::format("no worker of executor {} serves right now", executor.card.executor_id));
      }
      progress();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // The function's id on executor `e`. Throws Error.
  // A worker lost while it was asked costs a second try on another (or its replacement).
  uint32_t lookup_on(uint32_t e, std::string_view library, std::string_view symbol) {
    const auto deadline = Clock::now() + options.connect_timeout;
    std::vector<Reply> replies(1);
    while (true) {
      const uint32_t w = serving_worker(e);
      const WorkerLink& worker = executors[e].workers[w];
      replies[0] = Reply{};
      replies[0].key = next_lookup++;
      const uint32_t buffer = buffers->acquire();
      const size_t bytes = protocol::encode_lookup(buffers->span(buffer), worker.peer_id, worker.session,
                                                   replies[0].key, library, symbol);
      send(worker.address, buffer, bytes, e, w);
      if (await(replies, deadline, std::make_pair(e, w))) break;
      if (Clock::now() > deadline || executors[e].lost) {
        throw Error(ErrorKind::executor_lost, fmt::format("executor {} did not answer a lookup within {} ms",
                                                          executors[e].card.executor_id, options.connect_timeout.count()));
      }
    }
    if (replies[0].error != ErrorKind::none) {
      throw Error(replies[0].error, fmt::format("function '{}' in '{}' not found on executor {} ({})", symbol, library,
                                                executors[e].card.executor_id, to_string(replies[0].error)));
    }
    return replies[0].function_id;
  }
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Client Client::connect(std::string_view card_text, std::string_view token, const ClientOptions& options) {
  std::string resolved;
  try {
    resolved = resolve_card(card_text);  // a reference waits for the card
  } catch (const CardError& e) {
    throw Error(ErrorKind::no_executor, e.what());
  }
  ExecutorCard card;
  try {
    // On another host, an executor with a remote provider is reached through that one.
    card = route_for_caller(parse_card(resolved), local_host_name());
  } catch (const CardError& e) {
    throw Error(ErrorKind::bad_arg, e.what());
  }
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(options, card.provider);
  } catch (const fabric::FabricError& e) {
    throw Error(ErrorKind::no_executor, fmt::format("cannot open the executor's provider: {}", e.what()));
  }
  if (!card_text.empty() && card_text.front() == '@') impl->card_source = card_text;
  impl->token = token;
  impl->add_executor(card, token);
  return Client(std::move(impl));
}

Client Client::from_environment(const ClientOptions& options) {
  const char* card = std::getenv("SIDECORE_EXECUTOR");
  const char* token = std::getenv("SIDECORE_TOKEN");
  if (card == nullptr || *card == '\0') {
    throw Error(ErrorKind::no_executor, "SIDECORE_EXECUTOR is not set: run under sidecore-run or srun --offload");
  }
  return connect(card, token ? token : "", options);  // a reference (Slurm) waits for the card
}

Function Client::lookup(std::string_view library, std::string_view symbol) { return impl_->lookup(library, symbol); }

TaskId Client::submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity) {
  return impl_->submit(function, in, in_bytes, out, out_capacity, nullptr, nullptr);
}

TaskId Client::submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                      CompletionCallback callback, void* user) {
  return impl_->submit(function, in, in_bytes, out, out_capacity, callback, user);
}

TaskId Client::submit_handed_back(const Function& function, const void* in, size_t in_bytes, void* out,
                                  size_t out_capacity, void* user) {
  return impl_->submit(function, in, in_bytes, out, out_capacity, nullptr, user, true);
}

// The calls a progress loop makes never throw: an internal failure fails the client's tasks instead.
std::optional<Completion> Client::test(TaskId id) {
  try {
    return impl_->test(id);
  } catch (const std::exception& e) {
    impl_->fail_everything(e.what());
  } catch (...) {
    impl_->fail_everything("unknown exception");
  }
  return impl_->collect_after_failure(id);
}

bool Client::cancel(TaskId id) { return impl_->cancel(id); }

bool Client::prepare_sleep() {
  try {
    return impl_->prepare_sleep();
  } catch (const std::exception& e) {
    impl_->fail_everything(e.what());
  } catch (...) {
    impl_->fail_everything("unknown exception");
  }
  return false;
}

void Client::sleep(std::chrono::microseconds timeout) {
  try {
    impl_->sleep(timeout);
  } catch (...) {
    // a failed wait is a short sleep
  }
}
void Client::interrupt_sleep() noexcept { impl_->interrupt_sleep(); }
const std::string& Client::executor_host() const noexcept { return impl_->executors.front().card.host; }
bool Client::executor_lost() const noexcept { return impl_->executors.front().lost; }
bool Client::reconnect() {
  progress();  // notices a lost executor, and greets replaced workers
  return !impl_->executors.front().lost;
}

Completion Client::wait(TaskId id) {
  while (true) {
    if (auto done = impl_->test(id)) return *done;
  }
}

size_t Client::progress() {
  try {
    return impl_->progress();
  } catch (const std::exception& e) {
    return impl_->fail_everything(e.what());
  } catch (...) {
    return impl_->fail_everything("unknown exception");
  }
}
size_t Client::progress(std::vector<TaskCompletion>& completed) {
  const size_t events = progress();
  impl_->take_completions(completed);
  return events;
}
void Client::take_completions(std::vector<TaskCompletion>& completed) { impl_->take_completions(completed); }
size_t Client::in_flight() const noexcept { return impl_->in_flight; }
size_t Client::workers() const noexcept { return impl_->total_workers; }
const std::string& Client::provider() const noexcept { return impl_->provider; }
bool Client::on_rings() const noexcept {
  for (const auto& worker : impl_->executors.front().workers) {
    if (worker.on_rings) return true;
  }
  return false;
}

}  // namespace sidecore
