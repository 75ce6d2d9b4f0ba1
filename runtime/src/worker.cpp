#include "worker.hpp"

#include <poll.h>
#include <pthread.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "fabric/error.hpp"
#include "fabric/retry.hpp"
#include "log.hpp"
#include "shared_state.hpp"
#include "token.hpp"

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kBatch = 64;
constexpr size_t kReceiveReserve = 64;  // receives for hellos, beyond every peer's credits
constexpr auto kSleepTimeout = std::chrono::milliseconds(100);
// A draining worker counts as drained once no task arrived and nothing was in flight for this
// long: the callers that saw a `declined` have stopped sending, and every result has left.
constexpr auto kDrainQuiet = std::chrono::milliseconds(50);
constexpr size_t kMaxRefused = 256;
// A reply the provider has refused for this long goes, with every later reply to the same caller:
// that caller is gone or unreachable, and its replies must not hold up anyone else's.
constexpr auto kBacklogLimit = std::chrono::seconds(5);

using fabric::kRetryLimit;
using fabric::retry_while_busy;

uint64_t elapsed_ns(Clock::time_point since) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count());
}

}  // namespace

Worker::RingLink::~RingLink() {
  if (pidfd >= 0) close(pidfd);
}

Worker::Worker(unsigned index, int core, std::shared_ptr<fabric::Fabric> fabric, WorkerShared& shared,
               const WorkerOptions& options)
    : index_(index), core_(core), shared_(shared), options_(options) {
  domain_ = std::make_shared<fabric::Domain>(std::move(fabric));
  // A queue descriptor is for sleeping on. It is not free: with tcp;ofi_rxm a queue that has one
  // costs the worker about 1 us per round trip (measured: ratio to raw 1.21 -> 1.14), so a worker
  // that never sleeps (hot) goes without.
  const bool wants_fd = shared_.doorbell == nullptr && options_.poll != PollMode::hot;
  auto cq = std::make_shared<fabric::CompletionQueue>(domain_, 4096, wants_fd);
  auto av = std::make_shared<fabric::AddressVector>(domain_);
  endpoint_ = std::make_shared<fabric::Endpoint>(domain_, std::move(cq), std::move(av));
  buffers_ = std::make_unique<MessageBuffers>(domain_, endpoint_.get(), protocol::kMaxMessageBytes);
  inject_limit_ = domain_->inject_size();
  wakes_due_.reserve(options_.max_peers);
  TaskClock::calibrate();
  if (ReceiveSlabs::supported(*domain_)) {
    try {
      slabs_ = std::make_unique<ReceiveSlabs>(domain_, *endpoint_, protocol::kMaxMessageBytes);
    } catch (const fabric::FabricError& e) {
      logger("sidecore.exec")->debug("worker {}: one receive buffer per message ({})", index_, e.what());
    }
  }
  if (slabs_) {
    aligned_copy_.reset(
        static_cast<std::byte*>(std::aligned_alloc(64, (protocol::kMaxMessageBytes + 63) & ~size_t{63})));
    if (!aligned_copy_) throw std::bad_alloc();
    for (uint32_t i = 0; i < slabs_->count(); ++i) post_slab(i);
    logger("sidecore.exec")
        ->debug("worker {}: {} shared receive buffers of {} KiB (FI_MULTI_RECV)", index_, slabs_->count(),
                ReceiveSlabs::kSlabBytes / 1024);
    return;
  }
  wanted_receives_ = kReceiveReserve;
  for (size_t i = 0; i < wanted_receives_; ++i) post_receive(buffers_->acquire());
}

Worker::~Worker() {
  // Close the endpoint before the buffers it may still write into (posted receives, RMA).
  endpoint_.reset();
}

void Worker::wake() noexcept {
  if (shared_.doorbell) shared_.doorbell->ring(index_);
  if (endpoint_->cq().wait_fd() >= 0) endpoint_->cq().signal();  // only queues with a wait object have one
}

void Worker::announce_deadline(const protocol::MessageHeader& header, int64_t arrived_ns) noexcept {
  if (shared_.deadline == nullptr) return;
  int64_t budget_ms = header.deadline_ms;
  const int64_t site_ms = options_.max_task.count();
  if (site_ms > 0 && (budget_ms == 0 || budget_ms > site_ms)) budget_ms = site_ms;  // a caller only shortens it
  if (budget_ms == 0) return;
  if (arrived_ns == 0) arrived_ns = SharedState::now_ns();
  shared_.deadline->store(arrived_ns + budget_ms * 1'000'000, std::memory_order_relaxed);
  deadline_set_ = true;
}

void Worker::post_receive(uint32_t buffer) {
  const ssize_t rc = retry_while_busy(endpoint_->cq().fid(), [&] {
    return fi_recv(endpoint_->fid(), buffers_->data(buffer), buffers_->buffer_bytes(), buffers_->descriptor(buffer),
                   FI_ADDR_UNSPEC, context(OpKind::receive, buffer));
  });
  if (rc == -FI_EAGAIN) {  // the worker goes on with one receive fewer (credits leave a reserve)
    buffers_->release(buffer);
    warn_limited(fmt::format("worker {}: the provider refused a receive buffer for {} s", index_,
                             std::chrono::duration_cast<std::chrono::seconds>(kRetryLimit).count()));
    return;
  }
  fabric::check(rc, "fi_recv");
  ++posted_receives_;
}

void Worker::post_slab(uint32_t index) {
  const ssize_t rc =
      retry_while_busy(endpoint_->cq().fid(), [&] { return slabs_->post(index, context(OpKind::slab, index)); });
  if (rc == -FI_EAGAIN) {
    unposted_slabs_.push_back(index);
    warn_limited(fmt::format("worker {}: the provider refused a shared receive buffer for {} s", index_,
                             std::chrono::duration_cast<std::chrono::seconds>(kRetryLimit).count()));
    return;
  }
  fabric::check(rc, "fi_recvmsg(FI_MULTI_RECV)");
}

void Worker::handle_packed(const void* at, size_t length) {
  const auto* message = static_cast<const std::byte*>(at);
  if (reinterpret_cast<uintptr_t>(message) % 8 != 0) {
    length = std::min(length, protocol::kMaxMessageBytes);
    std::memcpy(aligned_copy_.get(), message, length);
    message = aligned_copy_.get();
  }
  dispatch(std::span<const std::byte>(message, length));
}

void Worker::run() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  CPU_SET(core_, &mask);
  if (pthread_setaffinity_np(pthread_self(), sizeof mask, &mask) != 0) {
    logger("sidecore.exec")->warn("worker {}: could not pin to CPU {}", index_, core_);
  }
  // The spin window runs on TaskClock ticks, which the inline path reads anyway.
  const uint64_t spin_ticks = TaskClock::from_ns(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(options_.spin_window).count()));
  uint64_t last_work = TaskClock::now();
  unsigned empty_polls = 0;
  while (!shared_.stop.load(std::memory_order_relaxed)) {
    // About every few milliseconds of spinning: callers that died leave rings nobody will use.
    if ((++passes_ & 0xffff) == 0 && !ring_peers_.empty()) check_ring_callers();
    if (poll_once() > 0 || busy()) {
      // A task run in this pass read the clock as it finished: close enough for the spin window.
      last_work = tick_fresh_ ? last_tick_ : TaskClock::now();
      tick_fresh_ = false;
      empty_polls = 0;
      quiet_since_ = {};
      continue;
    }
    if (shared_.draining.load(std::memory_order_relaxed)) {
      idle_while_draining();
      continue;
    }
    if (options_.poll == PollMode::hot) continue;
    if (options_.poll == PollMode::adaptive) {
      // Reading the clock costs about as much as an empty poll: look at it every 64th time only.
      if (++empty_polls % 64 != 0) continue;
      if (static_cast<int64_t>(TaskClock::now() - last_work) < static_cast<int64_t>(spin_ticks)) continue;
    }
    // A sleep that timed out leaves last_work alone, so an idle worker goes straight back to sleep
    // instead of spinning through another window.
    if (sleep()) last_work = TaskClock::now();
  }
}

void Worker::idle_while_draining() {
  const auto now = Clock::now();
  if (quiet_since_ == Clock::time_point{}) quiet_since_ = now;
  if (now - quiet_since_ >= kDrainQuiet && !drained_.load(std::memory_order_relaxed)) {
    drained_.store(true, std::memory_order_release);
  }
  // Neither sleep on the queue (the executor polls drained()) nor take the core from a rank.
  usleep(200);
}

bool Worker::sleep() {
  if (shared_.doorbell != nullptr) {
    if (!ring_peers_.empty() && Clock::now() >= next_ring_check_) check_ring_callers();
    shared_.doorbell->prepare_sleep(index_);
    const size_t events = poll_once();
    if (events > 0 || shared_.stop.load(std::memory_order_relaxed)) {
      shared_.doorbell->cancel_sleep(index_);
      return events > 0;
    }
    shared_.doorbell->wait(index_, kSleepTimeout);
    return false;
  }
  if (endpoint_->cq().wait_fd() < 0) {
    usleep(50);  // a provider with neither a wait object nor a doorbell: nap briefly
    return false;
  }
  // Block inside libfabric: with net the descriptor stays readable once anything completed, so
  // poll() on it would return at once and the worker would never really sleep.
  fi_cq_data_entry entries[kBatch];
  const ssize_t count = endpoint_->cq().sread(entries, kBatch, static_cast<int>(kSleepTimeout.count()));
  if (count == -FI_EAVAIL) {
    handle_error();
    wake_callers();
    return true;
  }
  if (count <= 0) return false;
  for (ssize_t i = 0; i < count; ++i) handle_completion(entries[i]);
  wake_callers();
  return true;
}

size_t Worker::poll_once() {
  if (!backlog_.empty()) flush_backlog();
  if (!unposted_slabs_.empty()) {
    std::vector<uint32_t> again;
    again.swap(unposted_slabs_);
    for (const uint32_t index : again) post_slab(index);
  }
  size_t events = ring_peers_.empty() ? 0 : serve_rings();
  fi_cq_data_entry entries[kBatch];
  ssize_t count = endpoint_->cq().read(entries, kBatch);
  if (count == -FI_EAVAIL) {
    handle_error();
    ++events;
  } else if (count > 0) {
    for (ssize_t i = 0; i < count; ++i) handle_completion(entries[i]);
    events += static_cast<size_t>(count);
  } else if (count != -FI_EAGAIN) {
    warn_limited(fmt::format("worker {}: fi_cq_read: {}", index_, fi_strerror(static_cast<int>(-count))));
  }
  if (!wakes_due_.empty()) wake_callers();
  return events;
}

void Worker::wake_callers() noexcept {
  for (const uint32_t peer_id : wakes_due_) {
    Peer& peer = peers_[peer_id];
    peer.wake_due = false;
    peer.doorbell.ring(0);
  }
  wakes_due_.clear();
}

void Worker::handle_completion(const fi_cq_data_entry& entry) {
  const auto raw = reinterpret_cast<uintptr_t>(entry.op_context);
  const auto kind = static_cast<OpKind>(raw >> 32);
  const auto index = static_cast<uint32_t>(raw & 0xffffffffu);
  switch (kind) {
    case OpKind::receive:
      --posted_receives_;
      handle_message(index, entry.len);
      break;
    case OpKind::send:
      --operations_in_flight_;
      buffers_->release(index);
      break;
    case OpKind::read:
      --operations_in_flight_;
      on_read_done(index);
      break;
    case OpKind::write:
      --operations_in_flight_;
      on_write_done(index);
      break;
    case OpKind::slab:
      if (entry.len > 0) handle_packed(entry.buf, entry.len);
      // The slab's earlier messages were handled as their completions came: it can go back now.
      if (entry.flags & FI_MULTI_RECV) post_slab(index);
      break;
  }
}

void Worker::handle_error() {
  fi_cq_err_entry entry{};
  std::string why = endpoint_->cq().read_error(entry);
  const auto raw = reinterpret_cast<uintptr_t>(entry.op_context);
  const auto kind = static_cast<OpKind>(raw >> 32);
  const auto index = static_cast<uint32_t>(raw & 0xffffffffu);
  switch (kind) {
    case OpKind::receive:
      --posted_receives_;
      if (entry.err == FI_ECANCELED) {
        buffers_->release(index);
      } else {
        warn_limited(fmt::format("worker {}: receive failed: {}", index_, why));
        post_receive(index);
      }
      break;
    case OpKind::send:
      --operations_in_flight_;
      buffers_->release(index);
      warn_limited(fmt::format("worker {}: a reply could not be delivered: {}", index_, why));
      break;
    case OpKind::read:
    case OpKind::write:
      --operations_in_flight_;
      fail_pending(index, ErrorKind::executor_lost,
                   fmt::format("RMA {} the caller's buffer failed: {}", kind == OpKind::read ? "from" : "to", why));
      break;
    case OpKind::slab:
      if (entry.err == FI_ECANCELED) break;  // the endpoint is closing
      warn_limited(fmt::format("worker {}: receive failed: {}", index_, why));
      if (entry.flags & FI_MULTI_RECV) post_slab(index);
      break;
    default:
      warn_limited(fmt::format("worker {}: completion error without context: {}", index_, why));
  }
}

void Worker::handle_message(uint32_t buffer, size_t length) {
  dispatch(std::span<const std::byte>(buffers_->data(buffer), std::min(length, buffers_->buffer_bytes())));
  // Every handler is done with the buffer (inputs that outlive it were copied or are read by RMA).
  if (posted_receives_ < receive_target()) {
    post_receive(buffer);
  } else {
    buffers_->release(buffer);
  }
}

void Worker::dispatch(std::span<const std::byte> message) {
  // Tasks are nearly all the traffic: decoded once, in on_task.
  if (const auto header = protocol::peek_header<protocol::TaskMessage>(message, protocol::MessageType::task)) {
    on_task(*header, message);
    return;
  }
  std::string error;
  if (auto header = protocol::decode_header(message, &error)) {
    switch (header->type) {
      case protocol::MessageType::hello: on_hello(message); break;
      case protocol::MessageType::lookup: on_lookup(*header, message); break;
      case protocol::MessageType::task: on_task(*header, message); break;
      case protocol::MessageType::goodbye: on_goodbye(*header); break;
      default: warn_limited(fmt::format("worker {}: dropped a message of type {} that callers do not send", index_,
                                        static_cast<unsigned>(header->type)));
    }
  } else {
    ++dropped_;
    warn_limited(fmt::format("worker {}: dropped a malformed message: {}", index_, error));
  }
}

const Worker::Peer* Worker::authenticated(const protocol::MessageHeader& header) {
  if (header.peer_id < peers_.size()) {
    const Peer& peer = peers_[header.peer_id];
    if (peer.active && peer.session == header.session) return &peer;
  }
  ++dropped_;
  warn_limited(fmt::format("worker {}: ignored a message from a caller that has not presented the token "
                           "(peer {}, {} such messages so far)",
                           index_, header.peer_id, dropped_));
  return nullptr;
}

void Worker::on_hello(std::span<const std::byte> message) {
  std::string error;
  auto hello = protocol::decode_hello(message, &error);
  if (!hello) {
    ++dropped_;
    warn_limited(fmt::format("worker {}: dropped a malformed hello: {}", index_, error));
    return;
  }
  const fi_addr_t address = endpoint_->av().insert(hello->address);
  if (address == FI_ADDR_NOTAVAIL) {
    warn_limited(fmt::format("worker {}: hello carries an address this provider cannot use", index_));
    return;
  }
  if (!tokens_equal(hello->token, shared_.token)) {
    warn_limited(fmt::format("worker {}: refused a caller that presented a wrong token", index_));
    refuse(address, hello->fixed.nonce, ErrorKind::auth);
    return;
  }
  uint32_t peer_id;
  if (!free_peers_.empty()) {
    peer_id = free_peers_.back();
    free_peers_.pop_back();
    // The slot's previous caller said goodbye long enough ago for its results to have left:
    // its address goes, so the table stays as large as the callers served at once. Not on shm,
    // whose 1.17 endpoint keeps a removed peer's state and hands the freed index to the next
    // insert, whose sends then touch the old peer's unmapped region (docs/design.md, limits);
    // shm callers are this node's ranks, a bounded number.
    const bool shm = domain_->fabric()->provider() == "shm";
    if (!shm && peers_[peer_id].address != address && peers_[peer_id].address != FI_ADDR_NOTAVAIL) {
      endpoint_->av().remove(peers_[peer_id].address);
    }
  } else if (peers_.size() < options_.max_peers) {
    peer_id = static_cast<uint32_t>(peers_.size());
    peers_.emplace_back();
  } else {
    warn_limited(fmt::format("worker {}: refused a caller: already serving {} callers", index_, options_.max_peers));
    refuse(address, hello->fixed.nonce, ErrorKind::no_executor);
    return;
  }
  Peer& peer = peers_[peer_id];
  peer.address = address;
  peer.session = random_u64();
  peer.active = true;
  peer.doorbell = Doorbell();
  peer.ring.reset();
  if (!hello->doorbell.empty()) {
    try {
      peer.doorbell = Doorbell::open(std::string(hello->doorbell), 1);
    } catch (const std::exception& e) {
      // The caller then has to poll for its results; it still gets them.
      warn_limited(fmt::format("worker {}: cannot open caller {}'s doorbell: {}", index_, peer_id, e.what()));
    }
  }
  if (!slabs_) {
    wanted_receives_ += options_.credits_per_peer;
    while (posted_receives_ < receive_target()) post_receive(buffers_->acquire());
  }

  protocol::WelcomeMessage welcome{protocol::make_header(protocol::MessageType::welcome, peer_id, peer.session),
                                   hello->fixed.nonce, options_.credits_per_peer, index_};
  if (hello->rings) welcome.flags = attach_rings(peer_id, *hello->rings);
  send_copy(address, &welcome, sizeof welcome);
  logger("sidecore.exec")
      ->debug("worker {}: caller {} connected{}", index_, peer_id,
              (welcome.flags & protocol::kWelcomeRings) ? " on rings" : "");
}

void Worker::refuse(fi_addr_t address, uint64_t nonce, ErrorKind error) {
  protocol::RefusedMessage refused{protocol::make_header(protocol::MessageType::refused), nonce, error, 0};
  send_copy(address, &refused, sizeof refused);
  // The address was inserted only to answer; keep a bounded number so a flood cannot grow the table.
  refused_.push_back(address);
  if (refused_.size() > kMaxRefused) {
    for (size_t i = 0; i < kMaxRefused / 2; ++i) endpoint_->av().remove(refused_[i]);
    refused_.erase(refused_.begin(), refused_.begin() + kMaxRefused / 2);
  }
}

void Worker::on_goodbye(const protocol::MessageHeader& header) {
  if (authenticated(header) == nullptr) return;
  release_peer(header.peer_id);
  logger("sidecore.exec")->debug("worker {}: caller {} said goodbye", index_, header.peer_id);
}

void Worker::release_peer(uint32_t peer_id) {
  Peer& peer = peers_[peer_id];
  // Leave the address in the table: results of tasks still in flight may be on their way to it.
  peer.active = false;
  peer.doorbell = Doorbell();
  detach_rings(peer_id);
  free_peers_.push_back(peer_id);
  if (!slabs_) wanted_receives_ -= options_.credits_per_peer;
}

void Worker::on_lookup(const protocol::MessageHeader& header, std::span<const std::byte> message) {
  const Peer* peer = authenticated(header);
  if (peer == nullptr) return;
  std::string error;
  auto lookup = protocol::decode_lookup(message, &error);
  if (!lookup) {
    warn_limited(fmt::format("worker {}: dropped a malformed lookup: {}", index_, error));
    return;
  }
  const auto started = Clock::now();
  auto found = shared_.loader->lookup(lookup->library, lookup->symbol);
  stats_.add_busy(elapsed_ns(started));
  protocol::LookupReplyMessage reply{protocol::make_header(protocol::MessageType::lookup_reply, header.peer_id, header.session),
                                     lookup->fixed.request_id, ErrorKind::none, found.id};
  if (!found.error.empty()) {
    logger("sidecore.exec")->info("lookup failed: {}", found.error);
    reply.error = ErrorKind::not_found;
    reply.function_id = protocol::kNoFunction;
  }
  send_copy(peer->address, &reply, sizeof reply);
}

void Worker::on_task(const protocol::MessageHeader& header, std::span<const std::byte> message) {
  const Peer* peer = authenticated(header);
  if (peer == nullptr) return;
  std::string error;
  auto task = protocol::decode_task(message, &error);
  if (!task) {
    // The request id sits at a fixed place; answer it if the message is long enough to hold one,
    // so the caller's request does not wait forever.
    warn_limited(fmt::format("worker {}: rejected a malformed task: {}", index_, error));
    if (message.size() >= sizeof(protocol::MessageHeader) + sizeof(uint64_t)) {
      FabricReply reply(*this, peer->address, header.peer_id);
      answer(reply, header, protocol::load<uint64_t>(message.subspan(sizeof(protocol::MessageHeader))),
             ErrorKind::bad_arg);
    }
    return;
  }
  if (shared_.draining.load(std::memory_order_relaxed)) {
    FabricReply reply(*this, peer->address, header.peer_id);
    decline(reply, header, task->fixed.request_id);
    return;
  }
  if (!task->input && !task->output) {
    FabricReply reply(*this, peer->address, header.peer_id);
    run_inline(reply, header, *task);
    return;
  }
  const uint32_t index = acquire_pending();
  PendingTask& pending = pending_[index];
  pending.task = task->fixed;
  pending.output_remote = task->output.has_value();
  if (task->output) pending.output = *task->output;
  pending.peer_address = peer->address;
  pending.peer_id = header.peer_id;
  pending.session = header.session;
  pending.received = Clock::now();

  if (!task->input) {
    pending.input = const_cast<std::byte*>(task->inline_input.data());
    run_task(index);  // runs now, while the receive buffer still holds the input
    return;
  }
  if (task->fixed.in_bytes > domain_->info()->ep_attr->max_msg_size) {
    fail_pending(index, ErrorKind::bad_arg, "input is larger than the provider's largest transfer");
    return;
  }
  try {
    pending.input_scratch = acquire_scratch(task->fixed.in_bytes);
  } catch (const std::exception& e) {
    fail_pending(index, ErrorKind::bad_arg, fmt::format("cannot hold a {}-byte input: {}", task->fixed.in_bytes, e.what()));
    return;
  }
  Scratch& scratch = scratch_[pending.input_scratch];
  pending.input = scratch.memory.get();
  const ssize_t rc = retry_while_busy(endpoint_->cq().fid(), [&] {
    return fi_read(endpoint_->fid(), scratch.memory.get(), task->fixed.in_bytes, scratch.region.descriptor(),
                   peer->address, task->input->address, task->input->key, context(OpKind::read, index));
  });
  if (rc != 0) {
    fail_pending(index, ErrorKind::executor_lost, fmt::format("fi_read: {}", fi_strerror(static_cast<int>(-rc))));
    return;
  }
  ++operations_in_flight_;
}

ErrorKind Worker::call_function(const protocol::MessageHeader& header, const protocol::TaskMessage& fixed,
                                const std::byte* input, std::byte* output, size_t& out_bytes, int& rc,
                                int64_t arrived_ns) {
  sidecore_function_t function = shared_.loader->get(fixed.function_id);
  if (function == nullptr) return ErrorKind::not_found;
  announce_deadline(header, arrived_ns);
  rc = function(fixed.in_bytes ? input : nullptr, fixed.in_bytes, fixed.out_capacity ? output : nullptr,
                fixed.out_capacity, &out_bytes);
  clear_deadline();
  if (rc == 0 && out_bytes <= fixed.out_capacity) return ErrorKind::none;
  if (rc == 0) {
    warn_limited(fmt::format("worker {}: function {} claimed {} output bytes with room for {}", index_,
                             fixed.function_id, out_bytes, fixed.out_capacity));
  }
  out_bytes = 0;
  return ErrorKind::function;
}

void Worker::run_inline(transport::MessagePort& reply, const protocol::MessageHeader& header,
                        const protocol::TaskView& task) {
  const uint64_t received = TaskClock::now();
  const auto& fixed = task.fixed;
  const std::span<std::byte> room = reply.reserve(sizeof(protocol::ResultMessage) + fixed.out_capacity);
  size_t out_bytes = 0;
  int rc = 0;
  const ErrorKind error = call_function(header, fixed, task.inline_input.data(),
                                        room.data() + sizeof(protocol::ResultMessage), out_bytes, rc, 0);
  last_tick_ = TaskClock::now();
  tick_fresh_ = true;
  const uint64_t service_ns = TaskClock::to_ns(last_tick_ > received ? last_tick_ - received : 0);
  stats_.add_busy(service_ns);
  stats_.record_task(service_ns, fixed.in_bytes, out_bytes);
  const protocol::ResultMessage result{
      protocol::make_header(protocol::MessageType::result, header.peer_id, header.session), fixed.request_id, error, rc,
      out_bytes};
  std::memcpy(room.data(), &result, sizeof result);
  reply.commit(sizeof result + out_bytes);
}

void Worker::answer(transport::MessagePort& reply, const protocol::MessageHeader& header, uint64_t request_id,
                    ErrorKind error, protocol::MessageType type) {
  const protocol::ResultMessage result{protocol::make_header(type, header.peer_id, header.session), request_id, error,
                                       0, 0};
  std::memcpy(reply.reserve(sizeof result).data(), &result, sizeof result);
  reply.commit(sizeof result);
}

void Worker::decline(transport::MessagePort& reply, const protocol::MessageHeader& header, uint64_t request_id) {
  answer(reply, header, request_id, ErrorKind::none, protocol::MessageType::declined);
  quiet_since_ = {};
  drained_.store(false, std::memory_order_relaxed);
}

std::span<std::byte> Worker::FabricReply::reserve(size_t bytes) {
  buffer_ = worker_.buffers_->acquire();
  return worker_.buffers_->span(buffer_).first(std::min(bytes, worker_.buffers_->buffer_bytes()));
}

void Worker::FabricReply::commit(size_t bytes) { worker_.send_buffer(address_, buffer_, bytes, peer_id_); }

void Worker::on_read_done(uint32_t index) {
  if (index < pending_.size() && pending_[index].in_use) run_task(index);
}

void Worker::run_task(uint32_t index) {
  PendingTask& pending = pending_[index];
  const auto& task = pending.task;
  sidecore_function_t function = shared_.loader->get(task.function_id);
  if (function == nullptr) {
    finish_task(pending, ErrorKind::not_found);
    return;
  }
  // The output goes straight into the result message when it fits, else into a scratch buffer.
  std::byte* output = nullptr;
  uint32_t result_buffer = UINT32_MAX;
  if (pending.output_remote) {
    try {
      pending.output_scratch = acquire_scratch(task.out_capacity);
    } catch (const std::exception& e) {
      fail_pending(index, ErrorKind::bad_arg, fmt::format("cannot hold a {}-byte output: {}", task.out_capacity, e.what()));
      return;
    }
    output = scratch_[pending.output_scratch].memory.get();
  } else {
    result_buffer = buffers_->acquire();
    output = buffers_->data(result_buffer) + sizeof(protocol::ResultMessage);
  }

  size_t out_bytes = 0;
  const auto started = Clock::now();
  announce_deadline(task.header, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     pending.received.time_since_epoch()).count());
  const int rc = function(task.in_bytes ? pending.input : nullptr, task.in_bytes,
                          task.out_capacity ? output : nullptr, task.out_capacity, &out_bytes);
  clear_deadline();
  stats_.add_busy(elapsed_ns(started));
  pending.function_return = rc;
  ErrorKind error = ErrorKind::none;
  if (rc != 0) {
    error = ErrorKind::function;
    out_bytes = 0;
  } else if (out_bytes > task.out_capacity) {
    warn_limited(fmt::format("worker {}: function {} claimed {} output bytes with room for {}", index_,
                             task.function_id, out_bytes, task.out_capacity));
    error = ErrorKind::function;
    out_bytes = 0;
  }
  pending.out_bytes = out_bytes;
  release_scratch(pending.input_scratch);

  if (result_buffer != UINT32_MAX) {
    if (!still_connected(pending.peer_id, pending.session)) {  // the caller left: nobody to answer
      buffers_->release(result_buffer);
      pending.in_use = false;
      free_pending_.push_back(index);
      return;
    }
    protocol::ResultMessage result{
        protocol::make_header(protocol::MessageType::result, pending.peer_id, pending.session), task.request_id, error,
        rc, out_bytes};
    std::memcpy(buffers_->data(result_buffer), &result, sizeof result);
    stats_.record_task(elapsed_ns(pending.received), task.in_bytes, out_bytes);
    send_buffer(pending.peer_address, result_buffer, sizeof result + out_bytes, pending.peer_id);
    pending.in_use = false;
    free_pending_.push_back(index);
    return;
  }
  if (error != ErrorKind::none || out_bytes == 0) {
    finish_task(pending, error);
    return;
  }
  Scratch& scratch = scratch_[pending.output_scratch];
  // Delivery-complete, so the result message cannot overtake the output it announces.
  iovec iov{scratch.memory.get(), out_bytes};
  void* descriptor = scratch.region.descriptor();
  fi_rma_iov remote{pending.output.address, out_bytes, pending.output.key};
  fi_msg_rma msg{&iov, &descriptor, 1, pending.peer_address, &remote, 1, context(OpKind::write, index), 0};
  const ssize_t wrc = retry_while_busy(endpoint_->cq().fid(), [&] {
    return fi_writemsg(endpoint_->fid(), &msg, FI_COMPLETION | FI_DELIVERY_COMPLETE);
  });
  if (wrc != 0) {
    fail_pending(index, ErrorKind::executor_lost, fmt::format("fi_write: {}", fi_strerror(static_cast<int>(-wrc))));
    return;
  }
  ++operations_in_flight_;
}

void Worker::on_write_done(uint32_t index) {
  if (index >= pending_.size() || !pending_[index].in_use) return;
  finish_task(pending_[index], ErrorKind::none);
}

void Worker::finish_task(PendingTask& pending, ErrorKind error) {
  protocol::ResultMessage result{
      protocol::make_header(protocol::MessageType::result, pending.peer_id, pending.session), pending.task.request_id,
      error, pending.function_return, error == ErrorKind::none ? pending.out_bytes : 0};
  stats_.record_task(elapsed_ns(pending.received), pending.task.in_bytes, result.out_bytes);
  if (still_connected(pending.peer_id, pending.session)) {
    send_copy(pending.peer_address, &result, sizeof result, pending.peer_id);
  }
  release_scratch(pending.input_scratch);
  release_scratch(pending.output_scratch);
  pending.in_use = false;
  free_pending_.push_back(static_cast<uint32_t>(&pending - pending_.data()));
}

void Worker::fail_pending(uint32_t index, ErrorKind error, const std::string& why) {
  if (index >= pending_.size() || !pending_[index].in_use) return;
  warn_limited(fmt::format("worker {}: task {} failed: {}", index_, pending_[index].task.request_id, why));
  pending_[index].function_return = 0;
  finish_task(pending_[index], error);
}

uint32_t Worker::acquire_pending() {
  uint32_t index;
  if (!free_pending_.empty()) {
    index = free_pending_.back();
    free_pending_.pop_back();
  } else {
    index = static_cast<uint32_t>(pending_.size());
    pending_.emplace_back();
  }
  pending_[index] = PendingTask{};
  pending_[index].in_use = true;
  return index;
}

uint32_t Worker::acquire_scratch(size_t bytes) {
  // Reuse the smallest free buffer that fits; large transfers keep their registration.
  uint32_t best = UINT32_MAX;
  for (uint32_t i = 0; i < scratch_.size(); ++i) {
    if (!scratch_[i].in_use && scratch_[i].bytes >= bytes && (best == UINT32_MAX || scratch_[i].bytes < scratch_[best].bytes)) {
      best = i;
    }
  }
  if (best == UINT32_MAX) {
    const size_t rounded = std::max<size_t>((bytes + 4095) & ~size_t{4095}, 4096);
    Scratch scratch;
    scratch.memory.reset(static_cast<std::byte*>(std::aligned_alloc(4096, rounded)));
    if (!scratch.memory) throw std::bad_alloc();
    scratch.bytes = rounded;
    scratch.region = fabric::MemoryRegion(domain_, endpoint_.get(), scratch.memory.get(), rounded, FI_READ | FI_WRITE);
    // Keep at most a few idle buffers: drop a free one to make room.
    for (uint32_t i = 0; i < scratch_.size(); ++i) {
      if (!scratch_[i].in_use) {
        scratch_[i] = std::move(scratch);
        best = i;
        break;
      }
    }
    if (best == UINT32_MAX) {
      best = static_cast<uint32_t>(scratch_.size());
      scratch_.push_back(std::move(scratch));
    }
  }
  scratch_[best].in_use = true;
  return best;
}

void Worker::release_scratch(uint32_t& index) noexcept {
  if (index != UINT32_MAX) {
    scratch_[index].in_use = false;
    index = UINT32_MAX;
  }
}

bool Worker::try_send(fi_addr_t address, uint32_t buffer, size_t bytes) {
  ssize_t rc;
  if (bytes <= inject_limit_) {
    rc = fi_inject(endpoint_->fid(), buffers_->data(buffer), bytes, address);
    if (rc == 0) buffers_->release(buffer);
  } else {
    rc = fi_send(endpoint_->fid(), buffers_->data(buffer), bytes, buffers_->descriptor(buffer), address,
                 context(OpKind::send, buffer));
    if (rc == 0) ++operations_in_flight_;
  }
  if (rc == -FI_EAGAIN) return false;
  if (rc != 0) {
    buffers_->release(buffer);
    warn_limited(fmt::format("worker {}: sending a reply failed: {}", index_, fi_strerror(static_cast<int>(-rc))));
  }
  return true;
}

void Worker::send_buffer(fi_addr_t address, uint32_t buffer, size_t bytes, uint32_t wake_peer) {
  // Replies to one caller stay in order: once one waits, later ones to that caller queue behind it.
  // Replies to other callers go out at once.
  const bool caller_waits =
      std::any_of(backlog_.begin(), backlog_.end(), [&](const Backlog& b) { return b.address == address; });
  if (caller_waits || !try_send(address, buffer, bytes)) {
    backlog_.push_back({address, buffer, bytes, Clock::now(), wake_peer});
  } else if (wake_peer != kNoWake) {
    wake_caller(wake_peer);
  }
}

void Worker::send_copy(fi_addr_t address, const void* message, size_t bytes, uint32_t wake_peer) {
  const uint32_t buffer = buffers_->acquire();
  std::memcpy(buffers_->data(buffer), message, bytes);
  send_buffer(address, buffer, bytes, wake_peer);
}

void Worker::flush_backlog() {
  const auto now = Clock::now();
  std::vector<fi_addr_t> blocked, expired;
  for (auto it = backlog_.begin(); it != backlog_.end();) {
    const bool skip = std::find(blocked.begin(), blocked.end(), it->address) != blocked.end();
    if (!skip && try_send(it->address, it->buffer, it->bytes)) {
      // A result rings its caller only now that it is out: rung before, a sleeping caller would
      // find nothing, sleep again and wait for its timeout.
      if (it->wake_peer != kNoWake) wake_caller(it->wake_peer);
      it = backlog_.erase(it);
      continue;
    }
    if (!skip) {
      blocked.push_back(it->address);
      if (now - it->since > kBacklogLimit) expired.push_back(it->address);
    }
    ++it;
  }
  wake_callers();  // poll_once may return before it rings
  if (expired.empty()) return;
  const size_t before = backlog_.size();
  std::erase_if(backlog_, [&](const Backlog& b) {
    if (std::find(expired.begin(), expired.end(), b.address) == expired.end()) return false;
    buffers_->release(b.buffer);
    return true;
  });
  warn_limited(fmt::format("worker {}: dropped {} replies to {} caller(s) unreachable for {} s", index_,
                           before - backlog_.size(), expired.size(), kBacklogLimit.count()));
}

void Worker::warn_limited(const std::string& message) {
  // At most one warning per second per worker, so hostile or broken traffic cannot flood the log.
  const auto now = Clock::now();
  if (now - last_warning_ < std::chrono::seconds(1)) return;
  last_warning_ = now;
  logger("sidecore.exec")->warn("{}", message);
}

}  // namespace sidecore
