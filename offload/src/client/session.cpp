// The data path between a client and its executor: receive buffers and the send backlog on
// libfabric, the rings on this host, tasks dispatched to the least loaded worker, results matched
// to their tasks, and sleeping until a worker answers.
#include <fmt/format.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client/session.hpp"
#include "fabric/error.hpp"
#include "fabric/retry.hpp"
#include "fault_injection.hpp"
#include "log.hpp"
#include "token.hpp"

namespace sidecore {
namespace {

using Clock = client::Clock;
using client::kBatch;
using client::kDeferredReposts;
using client::kReceiveReserve;
// How long a provider may answer "try again" to one message or receive before the client gives up on
// it (fabric/retry.hpp): a message to a worker then counts as lost with the worker, a receive
// buffer is dropped.
using fabric::kRetryLimit;

enum class OpKind : uint8_t { receive = 1, send = 2 };

void* context(OpKind kind, uint32_t index) noexcept {
  return reinterpret_cast<void*>((static_cast<uintptr_t>(kind) << 32) | index);
}

}  // namespace

Client::Impl::Impl(const ClientOptions& o, std::string_view prov)
    : options(o), provider(prov), task_timeout(o.task_timeout) {
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

Client::Impl::~Impl() {
  try {
    fault::inject(fault::Point::client_destroy);
    // Tasks still in flight are abandoned before anything is polled: the user's buffers may be
    // gone already (destroyed before the client, say), and nothing queued is sent any more.
    for (auto& executor : executors) executor.waiting.clear();
    tasks.abandon_all();
    say_goodbye();
  } catch (...) {
    // A destructor must not throw: an executor not told copes (its credits go with the session).
  }
  // Tasks still in flight are abandoned: no output of theirs may land in memory the user frees next.
  if (rings && !executors.empty()) {
    for (uint32_t w = 0; w < executors[0].workers.size(); ++w) close_rings(0, w);
  }
  if (interrupt_fd >= 0) close(interrupt_fd);
  if (relay_fd >= 0) close(relay_fd);
  for (auto& executor : executors) {
    if (executor.pidfd >= 0) close(executor.pidfd);
    for (auto& worker : executor.workers) {
      if (worker.pidfd >= 0) close(worker.pidfd);
    }
  }
  // Close the endpoint before the buffers it may still write into (posted receives, RMA).
  tasks.clear();
  endpoint.reset();
}

void Client::Impl::say_goodbye() {
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

void Client::Impl::post_receives(size_t count) {
  for (size_t i = 0; i < count; ++i) {
    const uint32_t buffer = buffers->acquire();
    repost(buffer);
  }
}

void Client::Impl::repost(uint32_t buffer) {
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

bool Client::Impl::try_send(const Backlog& message) {
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

void Client::Impl::send(fi_addr_t address, uint32_t buffer, size_t bytes, uint32_t executor, uint32_t worker) {
  Backlog message{address, buffer, bytes, executor, worker};
  const bool queued_before =
      std::any_of(backlog.begin(), backlog.end(), [&](const Backlog& waiting) { return waiting.address == address; });
  if (!queued_before && try_send(message)) return;
  message.since = Clock::now();
  backlog.push_back(message);
}

size_t Client::Impl::flush_backlog() {
  if (backlog.empty()) return 0;
  // Messages to one address keep their order; one refused does not hold up those to others (a
  // joining executor that is gone must not delay the hellos to the next).
  std::deque<Backlog> kept;
  std::vector<fi_addr_t> refused;
  std::vector<Backlog> expired;
  Clock::time_point now{};
  while (!backlog.empty()) {
    const Backlog message = backlog.front();
    backlog.pop_front();
    if (std::find(refused.begin(), refused.end(), message.address) != refused.end()) {
      kept.push_back(message);
      continue;
    }
    if (try_send(message)) continue;
    refused.push_back(message.address);
    if (now == Clock::time_point{}) now = Clock::now();
    // A joining executor's messages wait while it joins: its join deadline or its liveness decides
    // (join_next_standby). Over tcp;ofi_rxm in libfabric 2.1, a worker that runs a function longer
    // than kRetryLimit refuses a new caller's hello until the function returns: busy, not gone.
    if (now - message.since < kRetryLimit || executors[message.executor].joining) {
      kept.push_back(message);
    } else {
      expired.push_back(message);
    }
  }
  backlog.swap(kept);
  size_t events = 0;
  for (const Backlog& stuck : expired) {
    logger("sidecore.client")
        ->warn("worker {} of executor {} refused a message for {} s: counting it as lost", stuck.worker,
               executors[stuck.executor].card.executor_id,
               std::chrono::duration_cast<std::chrono::seconds>(kRetryLimit).count());
    buffers->release(stuck.buffer);
    WorkerLink& worker = executors[stuck.executor].workers[stuck.worker];
    if (worker.address == stuck.address) {
      events += lose_worker(stuck.executor, stuck.worker);
      // A hello to a replacement that died as well: greet whichever the card names next at once.
      if (worker.hello_nonce != 0) worker.hello_sent = Clock::now() - options.connect_timeout;
    }
    // Whatever waits for that address goes; messages to the worker's other addresses (a newer
    // replacement) stay.
    std::erase_if(backlog, [&](const Backlog& message) {
      if (message.address != stuck.address) return false;
      buffers->release(message.buffer);
      return true;
    });
  }
  return events;
}

void Client::Impl::send_copy(fi_addr_t address, const void* data, size_t bytes, uint32_t executor, uint32_t worker) {
  const uint32_t buffer = buffers->acquire();
  std::memcpy(buffers->data(buffer), data, bytes);
  send(address, buffer, bytes, executor, worker);
}

void Client::Impl::drop_backlog_of(uint32_t e, uint32_t worker) {
  std::erase_if(backlog, [&](const Backlog& message) {
    if (message.executor != e || (worker != UINT32_MAX && message.worker != worker)) return false;
    buffers->release(message.buffer);
    return true;
  });
}

size_t Client::Impl::progress(bool check_clock) {
  fault::inject(fault::Point::client_progress);
  size_t events = poll_queue();
  if (tasks.in_flight() > 0) {
    // The clock is read on every poll where tasks have deadlines; for liveness alone (checked every
    // liveness_interval, 250 ms by default) on every kPollsPerLivenessClock-th poll: a steady_clock
    // read was a fifth of the cost of an empty poll.
    if (tasks.has_deadlines()) {
      const auto now = Clock::now();
      events += tasks.expire(now);
      if (watching_any && now >= next_liveness_check) events += check_liveness(now);
    } else if (watching_any && (check_clock || ++polls_since_clock >= client::kPollsPerLivenessClock)) {
      polls_since_clock = 0;
      const auto now = Clock::now();
      if (now >= next_liveness_check) events += check_liveness(now);
    }
  }
  if (replacements_due()) look_for_replacements(Clock::now());
  if (joining_count > 0) check_joins(Clock::now());
  return events;
}

size_t Client::Impl::poll_queue() {
  size_t events = 0;
  if (rings && !executors.empty()) {
    for (uint32_t w = 0; w < executors[0].workers.size(); ++w) {
      if (executors[0].workers[w].on_rings) events += poll_ring(0, w);
    }
  }
  return events + poll_fabric_queue();
}

size_t Client::Impl::poll_ring(uint32_t e, uint32_t w) {
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

size_t Client::Impl::poll_fabric_queue() {
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

void Client::Impl::handle_message(std::span<const std::byte> message) {
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
    case protocol::MessageType::result:
      on_result(*header, message);
      break;
    case protocol::MessageType::declined:
      on_declined(*header, message);
      break;
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
        } else {
          on_join_lookup(answer->request_id, answer->error, answer->function_id);
        }
      }
      break;
    default:
      error = fmt::format("unexpected message type {}", static_cast<unsigned>(header->type));
  }
  if (!error.empty()) logger("sidecore.client")->warn("dropped a message: {}", error);
}

uint32_t Client::Impl::take_answer(const protocol::MessageHeader& header, std::span<const std::byte> message,
                                   const char* what) {
  if (message.size() < sizeof(protocol::ResultMessage)) {
    logger("sidecore.client")->warn("dropped a {} of {} bytes", what, message.size());
    return UINT32_MAX;
  }
  const uint64_t request_id = protocol::load<protocol::ResultMessage>(message).request_id;
  TaskSlot* slot = tasks.find(request_id);
  if (slot == nullptr || !slot->on_wire) return UINT32_MAX;  // stale: drop
  WorkerLink& worker = executors[slot->executor].workers[slot->worker];
  if (header.peer_id != worker.peer_id || header.session != worker.session) {
    logger("sidecore.client")->warn("dropped a {} that did not come from the task's worker", what);
    return UINT32_MAX;
  }
  slot->on_wire = false;
  --worker.outstanding;
  return TaskTable::index_of(request_id);
}

void Client::Impl::on_result(const protocol::MessageHeader& header, std::span<const std::byte> message) {
  const uint32_t index = take_answer(header, message, "result");
  if (index == UINT32_MAX) return;
  TaskSlot& slot = tasks[index];
  const uint32_t executor = slot.executor;  // deliver() may hand the slot to a new task
  if (slot.collectable || slot.delivered) {
    // Timed out earlier: the user has moved on, and nothing may touch `out` any more.
    tasks.release_if_finished(index);
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
      if (!result->inline_output.empty())
        std::memcpy(slot.out, result->inline_output.data(), result->inline_output.size());
    }
    tasks.deliver(index, completion);
  }
  auto& waiting = executors[executor].waiting;
  if (!waiting.empty()) dispatch_waiting(waiting);
}

void Client::Impl::on_declined(const protocol::MessageHeader& header, std::span<const std::byte> message) {
  const uint32_t index = take_answer(header, message, "declined answer");
  if (index == UINT32_MAX) return;
  start_draining(tasks[index].executor);
  TaskSlot& slot = tasks[index];             // after: rerouting the queued tasks may run callbacks that grow the table
  if (slot.collectable || slot.delivered) {  // timed out meanwhile: nothing left to run
    tasks.release_if_finished(index);
    return;
  }
  slot.in_region = {};
  slot.out_region = {};
  slot.waiting = true;
  reroute(index);
}

void Client::Impl::start_draining(uint32_t e) {
  ExecutorLink& link = executors[e];
  if (link.draining) return;
  link.draining = true;
  logger("sidecore.client")
      ->info("executor {} on {} drains (it stops soon): its tasks go to other executors", link.card.executor_id,
             link.card.host);
  std::deque<std::pair<uint32_t, TaskId>> waiting;
  waiting.swap(link.waiting);
  for (const auto& [index, id] : waiting) {
    if (tasks[index].id == id && tasks[index].waiting) reroute(index);
  }
}

TaskId Client::Impl::submit(const Function& function, const void* in, size_t in_bytes, void* out, size_t out_capacity,
                            CompletionCallback callback, void* user, bool hand_back) {
  const uint32_t index = tasks.start(hand_back);
  if (index == TaskTable::kFull) return kNoTask;
  TaskSlot& slot = tasks[index];
  slot.callback = callback;
  slot.user = user;
  slot.in = in;
  slot.in_bytes = in_bytes;
  slot.out = out;
  slot.out_capacity = out_capacity;
  const TaskId id = slot.id;
  const bool bad = (in == nullptr && in_bytes > 0) || (out == nullptr && out_capacity > 0) || !function.valid() ||
                   function.owner_ != this || in_bytes > protocol::kMaxTransferBytes ||
                   out_capacity > protocol::kMaxTransferBytes;
  if (bad) {
    tasks.deliver(index, Completion{ErrorKind::bad_arg, 0, 0, false});
    return id;
  }
  // A worker that died while nothing was in flight is noticed here, before a task goes to it
  // (with tasks in flight, progress() watches).
  const bool idle_before = tasks.in_flight() == 1;
  if (task_timeout.count() > 0 || (watching_any && idle_before)) {
    const auto now = Clock::now();
    if (watching_any && now >= next_liveness_check) check_liveness(now);
    if (task_timeout.count() > 0) {
      slot.deadline = now + task_timeout;
      tasks.add_deadline(slot.deadline, id);
    }
  }
  slot.function = function.ids_[0];
  const uint32_t e = executors.size() == 1 && standby.empty() ? 0 : choose_executor(slot.function);
  if (e == UINT32_MAX || executors[e].lost || executors[e].draining) {
    tasks.deliver(index, Completion{ErrorKind::executor_lost, 0, 0, false, true});  // nothing was sent
    return id;
  }
  slot.waiting = true;
  place(index, e);
  return id;
}

uint32_t Client::Impl::choose_executor(uint32_t function) {
  double load = 0;
  const uint32_t e = pick_executor(function, load);
  // No idle worker anywhere: a standby executor joins and takes the task.
  if ((e == UINT32_MAX || load >= 1.0) && !standby.empty()) {
    if (const uint32_t joined = join_next_standby(); joined != UINT32_MAX) return joined;
  }
  return e;
}

void Client::Impl::place(uint32_t index, uint32_t e) {
  TaskSlot& slot = tasks[index];
  ExecutorLink& executor = executors[e];
  slot.executor = e;
  if (executor.joining) {  // its function ids come with the join (finish_join)
    slot.function_id = protocol::kNoFunction;
    executor.waiting.emplace_back(index, slot.id);
    return;
  }
  slot.function_id = executor.function_ids[slot.function];
  if (executor.waiting.empty() && dispatch(index)) return;
  executor.waiting.emplace_back(index, slot.id);
}

uint32_t Client::Impl::pick_executor(uint32_t function, double& best_load) const noexcept {
  uint32_t best = UINT32_MAX;
  best_load = 0;
  for (uint32_t e = 0; e < executors.size(); ++e) {
    const ExecutorLink& executor = executors[e];
    if (executor.lost || executor.draining ||
        (!executor.joining && executor.function_ids[function] == protocol::kNoFunction)) {
      continue;
    }
    size_t busy = executor.waiting.size(), serving = 0;
    for (const WorkerLink& worker : executor.workers) {
      busy += worker.outstanding;
      if (executor.joining || (worker.connected && !worker.lost)) ++serving;
    }
    // One whose workers are all being replaced takes tasks (they wait for the replacements)
    // only when no other executor is alive.
    const double load = serving == 0 ? 1e300 : static_cast<double>(busy) / static_cast<double>(serving);
    if (best == UINT32_MAX || load < best_load) {
      best = e;
      best_load = load;
      if (busy == 0 && serving > 0) break;
    }
  }
  return best;
}

class Client::Impl::RingRequests final : public transport::MessagePort {
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

class Client::Impl::FabricRequests final : public transport::MessagePort {
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

bool Client::Impl::dispatch(uint32_t index) {
  TaskSlot& slot = tasks[index];
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
                             slot.id,
                             slot.function_id,
                             0,
                             slot.in_bytes,
                             slot.out_capacity};
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
      tasks.deliver(index, Completion{ErrorKind::bad_arg, 0, 0, false});
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

bool Client::Impl::fits_ring(const TaskSlot& slot, const WorkerLink& worker) noexcept {
  const bool input_ok = slot.in_bytes <= transport::kRingInlineLimit || worker.cma;
  const bool output_ok =
      slot.out_capacity <= transport::kRingInlineLimit || (worker.cma && slot.deadline == Clock::time_point{});
  return input_ok && output_ok;
}

bool Client::Impl::send_task(transport::MessagePort& port, const TaskSlot& slot, protocol::TaskMessage task,
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

void Client::Impl::dispatch_waiting(std::deque<std::pair<uint32_t, TaskId>>& waiting) {
  while (!waiting.empty()) {
    const auto [index, id] = waiting.front();
    if (tasks[index].id != id || !tasks[index].waiting) {  // timed out or cancelled meanwhile
      waiting.pop_front();
      continue;
    }
    if (!dispatch(index)) return;
    waiting.pop_front();
  }
}

bool Client::Impl::cancel(TaskId id) {
  const TaskSlot* slot = tasks.find(id);
  if (slot == nullptr || !slot->waiting) return false;
  tasks.deliver(TaskTable::index_of(id), Completion{ErrorKind::none, 0, 0, true});
  return true;
}

std::optional<Completion> Client::Impl::collect_after_failure(TaskId id) noexcept {
  try {
    if (const TaskSlot* slot = tasks.find(id); slot != nullptr && slot->collectable) {
      return tasks.collect(TaskTable::index_of(id));
    }
  } catch (...) {
  }
  return Completion{ErrorKind::executor_lost, 0, 0, false};
}

std::optional<Completion> Client::Impl::test(TaskId id) {
  const TaskSlot* slot = tasks.find(id);
  if (slot == nullptr || slot->delivered || slot->hand_back || (slot->callback != nullptr && !slot->collectable)) {
    return Completion{ErrorKind::bad_arg, 0, 0, false};
  }
  const uint32_t index = TaskTable::index_of(id);
  if (auto done = tasks.collect(index)) return done;
  progress();
  return tasks.collect(index);
}

bool Client::Impl::prepare_sleep() {
  if (tasks.has_handed_back()) return false;
  // sleep() runs while other threads may use the client (under their own lock, as the MPI
  // extension's hook and submit do): it must not read the task table, so it gets the next
  // deadline from here.
  next_deadline = tasks.next_deadline();
  if (own_doorbell) {
    own_doorbell.prepare_sleep(0);
    if (progress(true) > 0 || !backlog.empty()) {
      own_doorbell.cancel_sleep(0);
      return false;
    }
    return true;
  }
  if (progress(true) > 0 || !backlog.empty()) return false;
  return endpoint->cq().wait_fd() < 0 || endpoint->cq().trywait();
}

void Client::Impl::sleep(std::chrono::microseconds timeout) {
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

void Client::Impl::interrupt_sleep() noexcept {
  if (own_doorbell) {
    own_doorbell.ring(0);
  } else if (interrupt_fd >= 0) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t written = write(interrupt_fd, &one, sizeof one);
  }
}

}  // namespace sidecore
