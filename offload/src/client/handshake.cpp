// Connecting a client to its executor: a hello to every worker (offering the node-local rings
// where the card has them), the welcomes awaited, and function lookups.
#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include <unistd.h>

#include "client/session.hpp"
#include "log.hpp"
#include "token.hpp"

namespace sidecore {

using Clock = client::Clock;

void Client::Impl::abandon_last_executor() {
  drop_backlog_of(static_cast<uint32_t>(executors.size() - 1));
  executors.pop_back();
  if (executors.empty()) rings = {};  // they were made for that executor
}

void Client::Impl::send_hello(uint32_t e, uint32_t w, uint64_t nonce, std::string_view with_token) {
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

void Client::Impl::close_rings(uint32_t e, uint32_t w) noexcept {
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

void Client::Impl::take_rings(uint32_t e, uint32_t w, uint32_t welcome_flags) {
  WorkerLink& worker = executors[e].workers[w];
  worker.on_rings = e == 0 && static_cast<bool>(rings) && (welcome_flags & protocol::kWelcomeRings);
  worker.cma = worker.on_rings && (welcome_flags & protocol::kWelcomeCma);
  if (!worker.on_rings) return;
  transport::RingPair& pair = rings.pair(w);
  worker.requests = transport::RingProducer(&pair.request, pair.request_data);
  worker.replies = transport::RingConsumer(&pair.reply, pair.reply_data);
}

bool Client::Impl::await(std::vector<Reply>& replies, Clock::time_point deadline,
                         std::optional<std::pair<uint32_t, uint32_t>> asked) {
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

void Client::Impl::add_executor(const ExecutorCard& card, std::string_view token) {
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
      throw Error(kind, kind == ErrorKind::auth ? fmt::format("executor {} refused the token (AUTH)", card.executor_id)
                                                : fmt::format("executor {} refused the connection ({})",
                                                              card.executor_id, to_string(kind)));
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
  apply_task_bound(card);
  size_t credits = 0;
  for (const auto& worker : link.workers) credits += worker.credits;
  post_receives(credits);
  watch_process(link);
  watching_any = watching_any || link.pidfd >= 0 || link.card_fd >= 0 || link.relayed;
  total_workers += link.workers.size();
  link.function_ids.assign(known_functions.size(), protocol::kNoFunction);
}

void Client::Impl::lookup_known_functions(uint32_t e) {
  for (size_t f = 0; f < known_functions.size(); ++f) {
    const KnownFunction& known = known_functions[f];
    try {
      executors[e].function_ids[f] = lookup_on(e, known.library, known.symbol);
    } catch (const Error& error) {
      logger("sidecore.client")
          ->warn("executor {} cannot run '{}' from '{}' ({}): its tasks go to the other executors",
                 executors[e].card.executor_id, known.symbol, known.library, error.what());
    }
  }
}

bool Client::Impl::has_executor(std::string_view executor_id) const noexcept {
  return std::any_of(executors.begin(), executors.end(),
                     [&](const ExecutorLink& link) { return link.card.executor_id == executor_id; });
}

void Client::Impl::apply_task_bound(const ExecutorCard& card) noexcept {
  if (card.max_task_s == 0) return;
  const std::chrono::milliseconds bound(uint64_t{card.max_task_s} * 1000);
  if (task_timeout.count() == 0 || task_timeout > bound) task_timeout = bound;
}

bool Client::Impl::accepts_tasks() const noexcept {
  if (!standby.empty()) return true;
  for (const auto& executor : executors) {
    if (!executor.lost && !executor.draining) return true;
  }
  return false;
}

bool Client::Impl::all_executors_lost() const noexcept {
  if (!standby.empty()) return false;
  for (const auto& executor : executors) {
    if (!executor.lost) return false;
  }
  return true;
}

Client::Impl::Reply* Client::Impl::find_reply(uint64_t key) {
  for (Reply* reply : expected_replies) {
    if (reply->key == key && !reply->arrived) return reply;
  }
  return nullptr;
}

Function Client::Impl::lookup(std::string_view library, std::string_view symbol) {
  if (library.empty() || library.size() > protocol::kMaxLibraryBytes) {
    throw Error(ErrorKind::bad_arg, fmt::format("library path must be 1 to {} bytes", protocol::kMaxLibraryBytes));
  }
  if (symbol.empty() || symbol.size() > protocol::kMaxSymbolBytes) {
    throw Error(ErrorKind::bad_arg, fmt::format("symbol name must be 1 to {} bytes", protocol::kMaxSymbolBytes));
  }
  if (executors.size() == 1 && executors[0].lost) {
    throw Error(ErrorKind::executor_lost, fmt::format("executor {} is gone", executors[0].card.executor_id));
  }
  // Asked of every executor alive: one that is lost meanwhile is skipped while another answers;
  // any other error (the function is missing, the arguments are bad) is the caller's.
  std::vector<uint32_t> ids(executors.size(), protocol::kNoFunction);
  std::optional<Error> lost;
  bool found = false;
  for (uint32_t e = 0; e < executors.size(); ++e) {
    if (executors[e].lost) continue;
    if (executors[e].joining) {  // asked as part of its join, below
      found = true;
      continue;
    }
    try {
      ids[e] = lookup_on(e, library, symbol);
      found = true;
    } catch (const Error& error) {
      if (error.kind() != ErrorKind::executor_lost) throw;
      if (!lost) lost = error;
    }
  }
  // With standby executors left, the function is asked of each as it joins.
  if (!found && standby.empty()) {
    throw lost ? *lost : Error(ErrorKind::executor_lost, "every executor of the client is gone");
  }
  Function function;
  function.library_ = library;
  function.symbol_ = symbol;
  function.owner_ = this;
  function.ids_.push_back(static_cast<uint32_t>(known_functions.size()));
  known_functions.push_back({std::string(library), std::string(symbol)});
  const auto f = static_cast<uint32_t>(known_functions.size() - 1);
  for (uint32_t e = 0; e < executors.size(); ++e) {
    ExecutorLink& executor = executors[e];
    if (executor.function_ids.size() == f) executor.function_ids.push_back(ids[e]);
    if (!executor.joining || !executor.lookups_sent) continue;  // not joining, or asks at its welcome
    for (uint32_t w = 0; w < executor.workers.size(); ++w) {
      if (executor.workers[w].connected) {
        send_join_lookup(e, w, f);
        break;
      }
    }
  }
  return function;
}

uint32_t Client::Impl::serving_worker(uint32_t e) {
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

uint32_t Client::Impl::lookup_on(uint32_t e, std::string_view library, std::string_view symbol) {
  const auto deadline = Clock::now() + options.connect_timeout;
  std::vector<Reply> replies(1);
  while (true) {
    const uint32_t w = serving_worker(e);
    const WorkerLink& worker = executors[e].workers[w];
    replies[0] = Reply{};
    replies[0].key = next_lookup++;
    const uint32_t buffer = buffers->acquire();
    const size_t bytes =
        protocol::encode_lookup(buffers->span(buffer), worker.peer_id, worker.session, replies[0].key, library, symbol);
    send(worker.address, buffer, bytes, e, w);
    if (await(replies, deadline, std::make_pair(e, w))) break;
    if (Clock::now() > deadline || executors[e].lost) {
      throw Error(ErrorKind::executor_lost,
                  fmt::format("executor {} did not answer a lookup within {} ms", executors[e].card.executor_id,
                              options.connect_timeout.count()));
    }
  }
  if (replies[0].error != ErrorKind::none) {
    throw Error(replies[0].error, fmt::format("function '{}' in '{}' not found on executor {} ({})", symbol, library,
                                              executors[e].card.executor_id, to_string(replies[0].error)));
  }
  return replies[0].function_id;
}

}  // namespace sidecore
