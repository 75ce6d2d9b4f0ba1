// One executor worker: a thread pinned to one core that owns its own libfabric domain, endpoint,
// completion queue and address vector, and serves every caller that says hello to it. A caller on
// the worker's host may also offer node-local rings in its hello (transport/ring.hpp); the worker
// then takes that caller's tasks from its request ring and writes their results into its reply ring.
//
// Progress model: the worker is a poller. It drains its completion queue in batches; each
// completion advances one task (message received -> [read input] -> run -> [write output] ->
// result sent). Functions run on the worker thread itself, so one worker runs one function at a
// time, while RMA for other tasks stays in flight. When the queue is empty it spins (hot), sleeps
// at once (warm) or spins for a window and then sleeps (adaptive), on the queue's file descriptor
// where the provider has one and on the Doorbell otherwise.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <rdma/fi_eq.h>

#include "doorbell.hpp"
#include "fabric/endpoint.hpp"
#include "fabric/memory_region.hpp"
#include "function_loader.hpp"
#include "message_buffers.hpp"
#include "poll_mode.hpp"
#include "protocol.hpp"
#include "receive_slabs.hpp"
#include "service_stats.hpp"
#include "transport/message_port.hpp"
#include "transport/ring.hpp"

namespace sidecore {

struct WorkerOptions {
  PollMode poll = PollMode::adaptive;
  std::chrono::microseconds spin_window{1000};  // adaptive: how long to spin after the last message
  uint32_t credits_per_peer = 64;               // tasks a caller may have outstanding per worker
  // Callers per worker: a cross-node worker of an N-node job with R ranks per node can have
  // (N - 1)·R of them. A caller costs a peer entry and its address (reused once it says goodbye),
  // not receive buffers beyond kMaxPostedReceives.
  uint32_t max_peers = 65536;
  std::chrono::milliseconds max_task{0};        // the site's bound on any task (max_task_s); 0: none
};

// What all workers of one executor share.
struct WorkerShared {
  std::string token;
  FunctionLoader* loader = nullptr;
  Doorbell* doorbell = nullptr;  // set for providers without a wait descriptor
  std::atomic<bool> stop{false};
  // Set by Executor::drain: tasks that arrive from now on are declined (the caller sends them
  // elsewhere); the ones accepted before finish and return their results.
  std::atomic<bool> draining{false};
  // In a worker process (shared_state.hpp): where the worker announces the deadline of the function
  // it runs, for its supervisor to watch, and where it keeps its counters. Null: not watched, own
  // counters.
  std::atomic<int64_t>* deadline = nullptr;
  ServiceStats* stats = nullptr;
};

class Worker {
 public:
  // Opens the worker's fabric objects and posts its receives; throws FabricError.
  Worker(unsigned index, int core, std::shared_ptr<fabric::Fabric> fabric, WorkerShared& shared,
         const WorkerOptions& options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The thread body: pins itself to its core and serves until shared.stop is set.
  void run();
  // Wakes the worker if it sleeps (after shared.stop or shared.draining was set).
  void wake() noexcept;
  // While draining: it has nothing in flight and no task arrived for kDrainQuiet.
  bool drained() const noexcept { return drained_.load(std::memory_order_acquire); }

  const std::string& address() const noexcept { return endpoint_->name(); }
  int core() const noexcept { return core_; }
  const ServiceStats& stats() const noexcept { return stats_; }

 private:
  enum class OpKind : uint8_t { receive = 1, send = 2, read = 3, write = 4, slab = 5 };
  // A caller's node-local rings, mapped from its segment.
  struct RingLink {
    transport::RingSegment segment;
    transport::RingConsumer requests;
    transport::RingProducer replies;
    transport::OutputGuard* guard = nullptr;
    pid_t pid = 0;
    int pidfd = -1;    // readable once the caller has exited: its rings are then freed
    bool cma = false;  // its large inputs and outputs are read and written by cross-memory attach
    std::deque<std::vector<std::byte>> backlog;  // results that did not fit in the reply ring yet
    RingLink() = default;
    RingLink(const RingLink&) = delete;
    RingLink& operator=(const RingLink&) = delete;
    ~RingLink();
  };
  struct Peer {
    fi_addr_t address = FI_ADDR_NOTAVAIL;
    uint64_t session = 0;
    bool active = false;
    bool wake_due = false;  // listed in wakes_due_
    Doorbell doorbell;      // the caller's, rung after results when it has one
    std::unique_ptr<RingLink> ring;  // set when the caller's tasks come on node-local rings
  };
  // A task waiting on RMA: its input being read or its output being written.
  struct PendingTask {
    protocol::TaskMessage task{};
    protocol::RemoteBuffer output{};
    bool output_remote = false;
    fi_addr_t peer_address = FI_ADDR_NOTAVAIL;
    uint32_t peer_id = 0;
    uint64_t session = 0;
    std::chrono::steady_clock::time_point received{};
    std::byte* input = nullptr;
    std::byte* result_output = nullptr;
    uint32_t input_scratch = UINT32_MAX;
    uint32_t output_scratch = UINT32_MAX;
    int32_t function_return = 0;
    uint64_t out_bytes = 0;
    bool in_use = false;
  };
  // A reusable buffer for large inputs and outputs.
  struct Scratch {
    std::unique_ptr<std::byte, void (*)(void*)> memory{nullptr, std::free};
    size_t bytes = 0;
    fabric::MemoryRegion region;
    bool in_use = false;
  };
  // A message that could not be sent yet (the provider said try again).
  struct Backlog {
    fi_addr_t address;
    uint32_t buffer;
    size_t bytes;
    std::chrono::steady_clock::time_point since;
    uint32_t wake_peer;  // caller to ring once it is sent (a result), or kNoWake
  };
  static constexpr uint32_t kNoWake = UINT32_MAX;

  // Results to one caller over libfabric: a message buffer, sent (or queued) on commit.
  class FabricReply final : public transport::MessagePort {
   public:
    FabricReply(Worker& worker, fi_addr_t address, uint32_t peer_id) noexcept
        : worker_(worker), address_(address), peer_id_(peer_id) {}
    std::span<std::byte> reserve(size_t bytes) override;
    void commit(size_t bytes) override;

   private:
    Worker& worker_;
    fi_addr_t address_;
    uint32_t peer_id_;
    uint32_t buffer_ = UINT32_MAX;
  };
  // Results to one caller over its reply ring. A result the ring cannot take now waits in the
  // caller's backlog, so reserve() always gives room.
  class RingReply final : public transport::MessagePort {
   public:
    RingReply(Worker& worker, uint32_t peer_id) noexcept;
    std::span<std::byte> reserve(size_t bytes) override;
    void commit(size_t bytes) override;

   private:
    Worker& worker_;
    uint32_t peer_id_;
    RingLink& link_;
    std::vector<std::byte> spill_;
  };

  static void* context(OpKind kind, uint32_t index) noexcept {
    return reinterpret_cast<void*>((static_cast<uintptr_t>(kind) << 32) | index);
  }

  size_t poll_once();
  void handle_completion(const fi_cq_data_entry& entry);
  void handle_error();
  void handle_message(uint32_t buffer, size_t length);
  void dispatch(std::span<const std::byte> message);
  void on_hello(std::span<const std::byte> message);
  void on_lookup(const protocol::MessageHeader& header, std::span<const std::byte> message);
  void on_task(const protocol::MessageHeader& header, std::span<const std::byte> message);
  void on_goodbye(const protocol::MessageHeader& header);
  // Lets the peer go: a goodbye, or its process ended.
  void release_peer(uint32_t peer_id);
  // --- node-local rings --------------------------------------------------------------------------
  // Maps the rings a hello offers; returns the welcome's flags (0: the caller keeps to libfabric).
  uint32_t attach_rings(uint32_t peer_id, const protocol::RingOffer& offer);
  void detach_rings(uint32_t peer_id) noexcept;
  // Takes tasks from every ring caller; returns the messages handled.
  size_t serve_rings();
  void on_ring_message(uint32_t peer_id, std::span<const std::byte> message);
  // A ring task with a remote input or output: each moved with one cross-memory-attach copy.
  void run_ring_cma(transport::MessagePort& reply, uint32_t peer_id, const protocol::MessageHeader& header,
                    const protocol::TaskView& task);
  // Results the reply ring could not take yet, in order, as far as it has room now.
  void flush_ring_backlog(uint32_t peer_id, RingLink& link);
  // Frees the rings (and the peer) of callers whose process has ended.
  void check_ring_callers();
  // Calls the task's function between announce_deadline and clear_deadline; the error to report
  // (out_bytes and rc are reset where the function failed).
  ErrorKind call_function(const protocol::MessageHeader& header, const protocol::TaskMessage& fixed,
                          const std::byte* input, std::byte* output, size_t& out_bytes, int& rc, int64_t arrived_ns);
  // Fast path: input and output both inline; no pending-task bookkeeping. The input is read where
  // it arrived (receive buffer, request ring) and the output written straight into the result.
  void run_inline(transport::MessagePort& reply, const protocol::MessageHeader& header, const protocol::TaskView& task);
  // A result that carries only an error (and the request id), for tasks that never ran; with
  // `type` declined, the draining worker's answer in the same layout.
  void answer(transport::MessagePort& reply, const protocol::MessageHeader& header, uint64_t request_id,
              ErrorKind error, protocol::MessageType type = protocol::MessageType::result);
  void on_read_done(uint32_t pending);
  void on_write_done(uint32_t pending);
  void run_task(uint32_t pending_index);
  void finish_task(PendingTask& task, ErrorKind error);
  void fail_pending(uint32_t pending_index, ErrorKind error, const std::string& why);

  const Peer* authenticated(const protocol::MessageHeader& header);
  // True while the caller that sent a task is still connected under the same session.
  bool still_connected(uint32_t peer_id, uint64_t session) const noexcept {
    return peer_id < peers_.size() && peers_[peer_id].active && peers_[peer_id].session == session;
  }
  void post_receive(uint32_t buffer);
  // Shared receive buffers (receive_slabs.hpp): posts slab `index` again once the provider let it go.
  void post_slab(uint32_t index);
  // A message the provider packed into a slab.
  void handle_packed(const void* at, size_t length);
  // Returns false when the provider said "try again" (the buffer is still ours).
  bool try_send(fi_addr_t address, uint32_t buffer, size_t bytes);
  // `wake_peer`: for results, the caller to ring once the message has really gone out.
  void send_buffer(fi_addr_t address, uint32_t buffer, size_t bytes, uint32_t wake_peer = kNoWake);
  void send_copy(fi_addr_t address, const void* message, size_t bytes, uint32_t wake_peer = kNoWake);
  // Wakes the caller if it sleeps on its doorbell waiting for results: marks it, and the rings
  // go out together (wake_callers) once the current batch of completions is handled, so a batch
  // of results costs one fence per caller rather than one per result.
  void wake_caller(uint32_t peer_id) noexcept {
    if (peer_id < peers_.size() && peers_[peer_id].doorbell && !peers_[peer_id].wake_due) {
      peers_[peer_id].wake_due = true;
      wakes_due_.push_back(peer_id);  // never reallocates: reserved for max_peers, each peer once
    }
  }
  void wake_callers() noexcept;
  void flush_backlog();
  void refuse(fi_addr_t address, uint64_t nonce, ErrorKind error);
  uint32_t acquire_pending();
  uint32_t acquire_scratch(size_t bytes);
  void release_scratch(uint32_t& index) noexcept;
  // Answers a task with `declined` instead of running it (the worker drains).
  void decline(transport::MessagePort& reply, const protocol::MessageHeader& header, uint64_t request_id);
  // One pass of the serve loop while draining, after a pass with nothing to do.
  void idle_while_draining();
  bool busy() const noexcept { return operations_in_flight_ > 0 || !backlog_.empty() || ring_backlog_ > 0; }
  // Before a function runs: tells the supervisor when the task must be done, counted from
  // `arrived_ns` (CLOCK_MONOTONIC; 0: now). Nothing when neither the caller nor the site set a bound.
  void announce_deadline(const protocol::MessageHeader& header, int64_t arrived_ns) noexcept;
  void clear_deadline() noexcept {
    if (deadline_set_) {
      shared_.deadline->store(0, std::memory_order_relaxed);
      deadline_set_ = false;
    }
  }
  // Sleeps until a message or timeout; true when it handled completions itself.
  bool sleep();
  void warn_limited(const std::string& message);

  unsigned index_;
  int core_;
  WorkerShared& shared_;
  WorkerOptions options_;
  std::shared_ptr<fabric::Domain> domain_;
  std::shared_ptr<fabric::Endpoint> endpoint_;
  std::unique_ptr<MessageBuffers> buffers_;
  // Set where the provider packs messages into shared buffers (FI_MULTI_RECV): the worker then
  // posts these slabs and no buffer per message, whatever the number of its callers.
  std::unique_ptr<ReceiveSlabs> slabs_;
  std::vector<uint32_t> unposted_slabs_;  // the provider said "try again" for so long: retried each pass
  // A packed message starts wherever the previous one ended: one that does not start on 8 bytes
  // is copied here first, so a function's inline input keeps the alignment it has in a buffer of
  // its own (8 bytes).
  std::unique_ptr<std::byte, void (*)(void*)> aligned_copy_{nullptr, std::free};
  size_t inject_limit_ = 0;

  std::vector<Peer> peers_;
  std::vector<uint32_t> free_peers_;
  std::vector<uint32_t> ring_peers_;    // callers whose tasks come on rings
  std::vector<uint32_t> broken_rings_;  // found corrupt while serving: detached after the pass
  size_t ring_backlog_ = 0;             // results waiting in RingLink backlogs, over all callers
  uint32_t passes_ = 0;                 // poll passes, for the occasional check of ring callers
  // Before sleeping, ended ring callers are looked for at most every 100 ms.
  std::chrono::steady_clock::time_point next_ring_check_{};
  std::vector<uint32_t> wakes_due_;  // callers to ring once the current batch is handled
  size_t posted_receives_ = 0;
  size_t wanted_receives_ = 0;  // a reserve plus each caller's credits
  // At most this many receives are posted (4224 B each, 17 MiB), whatever the callers: past about
  // 60 callers their credits add up to more messages than are ever in flight at once, and a message
  // that finds no posted buffer waits in the provider until one is re-posted.
  static constexpr size_t kMaxPostedReceives = 4096;
  size_t receive_target() const noexcept { return std::min(wanted_receives_, kMaxPostedReceives); }
  std::vector<PendingTask> pending_;
  std::vector<uint32_t> free_pending_;
  std::vector<Scratch> scratch_;
  std::deque<Backlog> backlog_;
  size_t operations_in_flight_ = 0;  // sends, reads and writes awaiting completion
  std::vector<fi_addr_t> refused_;   // addresses inserted only to send a refusal
  uint64_t dropped_ = 0;             // unauthenticated or malformed messages
  std::chrono::steady_clock::time_point last_warning_{};
  uint64_t last_tick_ = 0;   // TaskClock tick at which the last inline task finished
  bool tick_fresh_ = false;  // last_tick_ was read in this poll pass
  // Draining: since when nothing happened (the epoch: something just did), and whether that has
  // lasted kDrainQuiet with nothing in flight.
  std::chrono::steady_clock::time_point quiet_since_{};
  std::atomic<bool> drained_{false};

  bool deadline_set_ = false;
  ServiceStats own_stats_;
  ServiceStats& stats_ = shared_.stats != nullptr ? *shared_.stats : own_stats_;
};

}  // namespace sidecore
