// The worker's side of the node-local rings (transport/ring.hpp): attaching a caller's segment,
// taking tasks from its request ring and writing their results into its reply ring, large inputs
// and outputs by cross-memory attach, and letting go of callers that died.
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "log.hpp"
#include "worker.hpp"

namespace sidecore {
namespace {

constexpr size_t kRingBatch = 64;  // tasks taken from one caller's ring before the next caller's
// How often a worker about to sleep looks for ring callers that ended (a poll() on their pidfds):
// a worker that sleeps after every task (warm) should not pay a system call per task for it.
constexpr auto kRingCallerCheck = std::chrono::milliseconds(100);

int open_pidfd(pid_t pid) noexcept { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

uint32_t Worker::attach_rings(uint32_t peer_id, const protocol::RingOffer& offer) {
  // Only a worker that sleeps on the executor's doorbell takes rings: callers ring it after
  // writing a task, as they do after sending one over shm.
  if (shared_.doorbell == nullptr) return 0;
  auto link = std::make_unique<RingLink>();
  try {
    link->segment = transport::RingSegment::attach(static_cast<pid_t>(offer.pid), offer.fd, offer.key, offer.pair);
  } catch (const std::exception& e) {
    warn_limited(fmt::format("worker {}: caller {} keeps to libfabric: {}", index_, peer_id, e.what()));
    return 0;
  }
  link->pid = static_cast<pid_t>(offer.pid);
  link->pidfd = open_pidfd(link->pid);
  if (link->pidfd < 0) {
    warn_limited(fmt::format("worker {}: caller {} keeps to libfabric: pidfd_open({}): {}", index_, peer_id, link->pid,
                             std::strerror(errno)));
    return 0;
  }
  transport::RingPair& pair = link->segment.pair(offer.pair);
  link->requests = transport::RingConsumer(&pair.request, pair.request_data);
  link->replies = transport::RingProducer(&pair.reply, pair.reply_data);
  link->guard = &pair.guard;
  link->cma = transport::cma_works(link->pid, reinterpret_cast<const void*>(offer.key_address), offer.key);
  uint32_t flags = protocol::kWelcomeRings | (link->cma ? protocol::kWelcomeCma : 0u);
  peers_[peer_id].ring = std::move(link);
  ring_peers_.push_back(peer_id);
  return flags;
}

void Worker::detach_rings(uint32_t peer_id) noexcept {
  auto& ring = peers_[peer_id].ring;
  if (!ring) return;
  ring_backlog_ -= ring->backlog.size();
  ring.reset();
  std::erase(ring_peers_, peer_id);
}

size_t Worker::serve_rings() {
  size_t handled = 0;
  // Indexed, not iterated: a task's function may not add callers, but a corrupt ring is only
  // detached after the pass.
  for (size_t i = 0; i < ring_peers_.size(); ++i) {
    const uint32_t peer_id = ring_peers_[i];
    RingLink& link = *peers_[peer_id].ring;
    if (!link.backlog.empty()) flush_ring_backlog(peer_id, link);
    if (!link.requests.ready()) continue;
    std::string error;
    handled += link.requests.consume([&](std::span<const std::byte> message) { on_ring_message(peer_id, message); },
                                     kRingBatch, &error);
    if (!error.empty()) {
      ++dropped_;
      warn_limited(fmt::format("worker {}: dropped caller {}'s rings: {}", index_, peer_id, error));
      broken_rings_.push_back(peer_id);
    }
  }
  if (!broken_rings_.empty()) {
    // The caller's tasks there are lost to it; it sees no more results and times them out, or
    // finds its rings dropped when it says goodbye. Its libfabric session stays.
    for (const uint32_t peer_id : broken_rings_) detach_rings(peer_id);
    broken_rings_.clear();
  }
  return handled;
}

void Worker::on_ring_message(uint32_t peer_id, std::span<const std::byte> message) {
  const Peer& peer = peers_[peer_id];
  const auto header = protocol::peek_header<protocol::TaskMessage>(message, protocol::MessageType::task);
  if (!header || header->peer_id != peer_id || header->session != peer.session) {
    ++dropped_;
    warn_limited(
        fmt::format("worker {}: dropped a ring message from caller {} that is not one of its tasks", index_, peer_id));
    return;
  }
  RingReply reply(*this, peer_id);
  std::string error;
  auto task = protocol::decode_task(message, &error, transport::kRingInlineLimit);
  if (!task) {
    // Answered all the same, so that the caller's request does not wait for ever.
    warn_limited(fmt::format("worker {}: rejected a malformed task on caller {}'s ring: {}", index_, peer_id, error));
    answer(reply, *header, protocol::load<protocol::TaskMessage>(message).request_id, ErrorKind::bad_arg);
    return;
  }
  if (shared_.draining.load(std::memory_order_relaxed)) {
    decline(reply, *header, task->fixed.request_id);
    return;
  }
  if (!task->input && !task->output) {
    run_inline(reply, *header, *task);
    return;
  }
  if (!peer.ring->cma) {
    warn_limited(fmt::format("worker {}: caller {} sent remote buffers on its ring without cross-memory attach", index_,
                             peer_id));
    answer(reply, *header, task->fixed.request_id, ErrorKind::bad_arg);
    return;
  }
  run_ring_cma(reply, peer_id, *header, *task);
}

void Worker::run_ring_cma(transport::MessagePort& reply, uint32_t peer_id, const protocol::MessageHeader& header,
                          const protocol::TaskView& task) {
  const uint64_t received = TaskClock::now();
  RingLink& link = *peers_[peer_id].ring;
  const auto& fixed = task.fixed;
  ErrorKind error = ErrorKind::none;
  int rc = 0;
  size_t out_bytes = 0;
  // An inline output goes straight into the result; a remote one into a scratch buffer first.
  const size_t inline_out = task.output ? 0 : static_cast<size_t>(fixed.out_capacity);
  const std::span<std::byte> room = reply.reserve(sizeof(protocol::ResultMessage) + inline_out);
  uint32_t input_scratch = UINT32_MAX, output_scratch = UINT32_MAX;
  const std::byte* input = task.inline_input.data();
  std::byte* output = room.data() + sizeof(protocol::ResultMessage);
  try {
    if (task.input) {
      input_scratch = acquire_scratch(fixed.in_bytes);
      std::byte* into = scratch_[input_scratch].memory.get();
      input = into;
      if (!transport::cma_read(link.pid, into, reinterpret_cast<const void*>(task.input->address), fixed.in_bytes)) {
        warn_limited(fmt::format("worker {}: cannot read caller {}'s {}-byte input: {}", index_, peer_id,
                                 fixed.in_bytes, std::strerror(errno)));
        error = ErrorKind::bad_arg;
      }
    }
    if (task.output) {
      output_scratch = acquire_scratch(fixed.out_capacity);
      output = scratch_[output_scratch].memory.get();
    }
  } catch (const std::exception& e) {
    warn_limited(fmt::format("worker {}: cannot hold a task's data: {}", index_, e.what()));
    error = ErrorKind::bad_arg;
  }
  if (error == ErrorKind::none) {
    error = call_function(header, fixed, input, output, out_bytes, rc, 0);
    if (error == ErrorKind::none && task.output && out_bytes > 0) {
      // The caller may have given up on its tasks (it is closing): then its buffer is not ours.
      if (!transport::begin_output_write(*link.guard)) {
        error = ErrorKind::executor_lost;
        out_bytes = 0;
      } else {
        const bool written =
            transport::cma_write(link.pid, output, reinterpret_cast<void*>(task.output->address), out_bytes);
        const int write_errno = errno;
        transport::end_output_write(*link.guard);
        if (!written) {
          warn_limited(fmt::format("worker {}: cannot write caller {}'s {}-byte output: {}", index_, peer_id, out_bytes,
                                   std::strerror(write_errno)));
          error = ErrorKind::bad_arg;
          out_bytes = 0;
        }
      }
    }
  }
  release_scratch(input_scratch);
  release_scratch(output_scratch);

  last_tick_ = TaskClock::now();
  tick_fresh_ = true;
  const uint64_t service_ns = TaskClock::to_ns(last_tick_ > received ? last_tick_ - received : 0);
  stats_.add_busy(service_ns);
  stats_.record_task(service_ns, fixed.in_bytes, out_bytes);
  const protocol::ResultMessage result{protocol::make_header(protocol::MessageType::result, peer_id, header.session),
                                       fixed.request_id, error, rc, out_bytes};
  std::memcpy(room.data(), &result, sizeof result);
  reply.commit(sizeof result + (task.output ? 0 : out_bytes));
}

Worker::RingReply::RingReply(Worker& worker, uint32_t peer_id) noexcept
    : worker_(worker), peer_id_(peer_id), link_(*worker.peers_[peer_id].ring) {}

std::span<std::byte> Worker::RingReply::reserve(size_t bytes) {
  // Behind results already waiting, or where the ring is full: a buffer of its own.
  if (link_.backlog.empty()) {
    if (std::span<std::byte> room = link_.replies.reserve(bytes); !room.empty()) return room;
  }
  spill_.resize(bytes);
  return spill_;
}

void Worker::RingReply::commit(size_t bytes) {
  if (spill_.empty()) {
    link_.replies.commit(bytes);
  } else {
    spill_.resize(bytes);
    link_.backlog.push_back(std::move(spill_));
    spill_ = {};
    ++worker_.ring_backlog_;
  }
  worker_.wake_caller(peer_id_);
}

void Worker::flush_ring_backlog(uint32_t peer_id, RingLink& link) {
  while (!link.backlog.empty()) {
    const auto& message = link.backlog.front();
    std::span<std::byte> room = link.replies.reserve(message.size());
    if (room.empty()) break;
    std::memcpy(room.data(), message.data(), message.size());
    link.replies.commit(message.size());
    link.backlog.pop_front();
    --ring_backlog_;
    wake_caller(peer_id);
  }
}

void Worker::check_ring_callers() {
  next_ring_check_ = std::chrono::steady_clock::now() + kRingCallerCheck;
  std::vector<pollfd> fds;
  fds.reserve(ring_peers_.size());
  for (const uint32_t peer_id : ring_peers_) fds.push_back({peers_[peer_id].ring->pidfd, POLLIN, 0});
  if (poll(fds.data(), fds.size(), 0) <= 0) return;
  std::vector<uint32_t> ended;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents != 0) ended.push_back(ring_peers_[i]);
  }
  for (const uint32_t peer_id : ended) {
    logger("sidecore.exec")
        ->debug("worker {}: caller {} ended without a goodbye: its rings are freed", index_, peer_id);
    release_peer(peer_id);
  }
}

}  // namespace sidecore
