// Standby executors, joined on demand: a client told of executors it may use (a rank's pool, for
// the executors of other nodes) connects to one only when a task finds no idle worker, and never
// waits for it. The join sends hellos; the first welcome brings lookups of every function the
// client knows; the last answer makes the executor an ordinary one and sends the tasks that
// waited for it. An executor that refuses (at capacity, say) or does not answer hands its
// waiting tasks to another executor; one that dies fails them, as any executor does.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "card.hpp"
#include "client/session.hpp"
#include "liveness_listener.hpp"
#include "log.hpp"
#include "token.hpp"

namespace sidecore {

namespace {
// The liveness connection of a joining executor is opened on the submit path: an unreachable
// node may cost at most this much there (the executor's listener answers at once).
constexpr int kJoinWatchTimeoutMs = 1000;
}  // namespace

uint32_t Client::Impl::join_next_standby() {
  const std::string host = local_host_name();
  while (!standby.empty()) {
    const std::string text = std::move(standby.front());
    standby.pop_front();
    ExecutorCard card;
    try {
      card = route_for_caller(parse_card(text), host);
    } catch (const CardError& e) {
      logger("sidecore.client")->warn("skipping a standby executor: {}", e.what());
      continue;
    }
    const bool known = has_executor(card.executor_id);
    if (known || card.provider != provider || card.worker_addresses.empty()) {
      logger("sidecore.client")
          ->warn("skipping standby executor {} on {}: {}", card.executor_id, card.host,
                 known ? "already one of this client's"
                       : "its provider is " + card.provider + ", this client's " + provider);
      continue;
    }
    const auto e = static_cast<uint32_t>(executors.size());
    ExecutorLink& link = executors.emplace_back();
    link.card = card;
    link.workers.resize(card.worker_addresses.size());
    bool usable = true;
    for (auto& worker : link.workers) {
      worker.address = endpoint->av().insert(card.worker_addresses[&worker - link.workers.data()]);
      usable = usable && worker.address != FI_ADDR_NOTAVAIL;
    }
    if (usable && card.host != host && card.watch > 0) {
      usable =
          follow_remote(link, std::min<int>(kJoinWatchTimeoutMs, static_cast<int>(options.connect_timeout.count())));
    }
    if (!usable) {
      logger("sidecore.client")
          ->warn("standby executor {} on {} is not reachable: skipped", card.executor_id, card.host);
      abandon_last_executor();
      continue;
    }
    watching_any = watching_any || link.pidfd >= 0 || link.relayed;
    link.joining = true;
    // Followed (liveness connection or relay), the client waits as long as the executor lives (a
    // busy worker answers a hello once its function returns); otherwise for the connect timeout.
    if (link.pidfd < 0 && !link.relayed) link.join_deadline = Clock::now() + options.connect_timeout;
    ++joining_count;
    total_workers += link.workers.size();
    const auto now = Clock::now();
    for (uint32_t w = 0; w < link.workers.size(); ++w) {
      WorkerLink& worker = link.workers[w];
      worker.hello_nonce = random_u64();
      worker.hello_sent = now;
      send_hello(e, w, worker.hello_nonce, token);
    }
    logger("sidecore.client")->debug("executor {} on {} joins", card.executor_id, card.host);
    return e;
  }
  return UINT32_MAX;
}

void Client::Impl::on_join_answer(uint32_t e, uint32_t w, const protocol::MessageHeader& header,
                                  const protocol::WelcomeMessage* welcome) {
  ExecutorLink& link = executors[e];
  WorkerLink& worker = link.workers[w];
  worker.hello_nonce = 0;
  if (welcome == nullptr) {
    fail_join(e, "it refused this caller");
    return;
  }
  worker.peer_id = header.peer_id;
  worker.session = header.session;
  worker.credits = welcome->credits;
  worker.outstanding = 0;
  worker.connected = true;
  if (worker.lost) {  // replaced while the join was on its way: this is the new one
    worker.lost = false;
    --link.lost_workers;
  }
  post_receives(worker.credits);
  if (link.lookups_sent) return;
  link.lookups_sent = true;
  link.function_ids.assign(known_functions.size(), protocol::kNoFunction);
  for (uint32_t f = 0; f < known_functions.size(); ++f) send_join_lookup(e, w, f);
  if (link.lookups_due == 0) finish_join(e);
}

void Client::Impl::send_join_lookup(uint32_t e, uint32_t w, uint32_t f) {
  const WorkerLink& worker = executors[e].workers[w];
  const uint64_t key = next_lookup++;
  join_lookups.push_back({key, e, f});
  ++executors[e].lookups_due;
  const uint32_t buffer = buffers->acquire();
  const size_t bytes = protocol::encode_lookup(buffers->span(buffer), worker.peer_id, worker.session, key,
                                               known_functions[f].library, known_functions[f].symbol);
  send(worker.address, buffer, bytes, e, w);
}

bool Client::Impl::on_join_lookup(uint64_t key, ErrorKind error, uint32_t function_id) {
  const auto found =
      std::find_if(join_lookups.begin(), join_lookups.end(), [&](const JoinLookup& l) { return l.key == key; });
  if (found == join_lookups.end()) return false;
  const JoinLookup lookup = *found;
  join_lookups.erase(found);
  ExecutorLink& link = executors[lookup.executor];
  if (!link.joining) return true;
  if (error == ErrorKind::none) {
    link.function_ids[lookup.function] = function_id;
  } else {
    const KnownFunction& known = known_functions[lookup.function];
    logger("sidecore.client")
        ->warn("executor {} cannot run '{}' from '{}' ({}): its tasks go to the other executors", link.card.executor_id,
               known.symbol, known.library, to_string(error));
  }
  if (--link.lookups_due == 0) finish_join(lookup.executor);
  return true;
}

void Client::Impl::end_join(uint32_t e) {
  executors[e].joining = false;
  --joining_count;
  std::erase_if(join_lookups, [&](const JoinLookup& l) { return l.executor == e; });
}

void Client::Impl::finish_join(uint32_t e) {
  ExecutorLink& link = executors[e];
  end_join(e);
  apply_task_bound(link.card);
  if (link.card.host == local_host_name()) {
    watch_process(link);
    watching_any = watching_any || link.pidfd >= 0 || link.card_fd >= 0;
  }
  logger("sidecore.client")
      ->debug("executor {} on {} joined: {} worker(s) over {}", link.card.executor_id, link.card.host,
              link.workers.size(), provider);
  // The tasks that waited for it: to it where it has their function, elsewhere otherwise.
  std::deque<std::pair<uint32_t, TaskId>> waited;
  waited.swap(link.waiting);
  for (const auto& [index, id] : waited) {
    TaskSlot& slot = tasks[index];
    if (slot.id != id || !slot.waiting) continue;  // timed out or cancelled meanwhile
    slot.function_id = link.function_ids[slot.function];
    if (slot.function_id == protocol::kNoFunction) {
      reroute(index);
    } else {
      link.waiting.emplace_back(index, id);
    }
  }
  dispatch_waiting(link.waiting);
}

void Client::Impl::fail_join(uint32_t e, std::string_view why) {
  ExecutorLink& link = executors[e];
  logger("sidecore.client")
      ->warn("executor {} on {} did not join ({}): its tasks go to the other executors", link.card.executor_id,
             link.card.host, why);
  end_join(e);
  link.lost = true;
  total_workers -= std::min(total_workers, link.workers.size());
  for (auto& worker : link.workers) {
    worker.connected = false;
    worker.hello_nonce = 0;
  }
  drop_backlog_of(e);
  std::deque<std::pair<uint32_t, TaskId>> waited;
  waited.swap(link.waiting);
  for (const auto& [index, id] : waited) {
    if (tasks[index].id == id && tasks[index].waiting) reroute(index);
  }
}

void Client::Impl::reroute(uint32_t index) {
  const uint32_t e = choose_executor(tasks[index].function);
  if (e == UINT32_MAX) {
    tasks.deliver(index, Completion{ErrorKind::executor_lost, 0, 0, false, true});  // it waited: never ran
    return;
  }
  place(index, e);
  // What waited there before it (stale entries included) goes as far as credits allow.
  if (!executors[e].joining) dispatch_waiting(executors[e].waiting);
}

void Client::Impl::check_joins(Clock::time_point now) {
  for (uint32_t e = 0; e < executors.size(); ++e) {
    ExecutorLink& link = executors[e];
    if (!link.joining || now < link.join_deadline) continue;
    fail_join(e, fmt::format("no answer within {} ms", options.connect_timeout.count()));
  }
}

}  // namespace sidecore
