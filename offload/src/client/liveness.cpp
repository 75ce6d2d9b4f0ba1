// Liveness: pidfds on the executor and its worker processes on this host, the liveness connection
// to one on another host; a loss fails exactly the tasks it takes with it, and a replaced worker is
// greeted once the executor's card names it.
#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "card_reference.hpp"
#include "client/session.hpp"
#include "liveness_listener.hpp"
#include "log.hpp"
#include "token.hpp"

namespace sidecore {

using Clock = client::Clock;
using client::kCardCheckInterval;

namespace {

// What the loss of an executor or a worker says about the tasks that run again (retry_lost).
std::string retried_note(size_t retried) {
  return retried == 0 ? std::string() : fmt::format(", {} run again (retry_lost)", retried);
}

}  // namespace

void Client::Impl::watch_process(ExecutorLink& link) {
  if (link.card.host != local_host_name()) {
    if (link.card.watch > 0) {
      if (!follow_remote(link, static_cast<int>(options.connect_timeout.count()))) {
        logger("sidecore.client")
            ->warn("cannot watch executor {} on {} (port {}): its loss shows only as task "
                   "timeouts",
                   link.card.executor_id, link.card.host, link.card.watch);
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
  logger("sidecore.client")
      ->debug("cannot watch executor {} (pid {}): {}", link.card.executor_id, link.card.pid, std::strerror(errno));
}

bool Client::Impl::follow_remote(ExecutorLink& link, int timeout_ms) {
  const auto port = static_cast<uint16_t>(link.card.watch);
  if (options.liveness_relay != 0 && !relay_broken) {
    if (relay_fd < 0) {
      relay_fd = connect_liveness("localhost", options.liveness_relay, timeout_ms);
      if (relay_fd < 0) relay_fd = connect_liveness(local_host_name(), options.liveness_relay, timeout_ms);
      if (relay_fd < 0) {
        relay_broken = true;
        logger("sidecore.client")
            ->info("no liveness relay on this host (port {}): each executor on another host gets a connection",
                   options.liveness_relay);
      }
    }
    if (relay_fd >= 0) {
      const std::string line = fmt::format("watch {} {} {}\n", token, link.card.host, port);
      if (::send(relay_fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT) ==
          static_cast<ssize_t>(line.size())) {
        link.relayed = true;
        watching_any = true;
        return true;
      }
      read_relay();  // it stopped taking lines: it ended or is stuck; either way, on without it
      close(relay_fd);
      relay_fd = -1;
      relay_broken = true;
    }
  }
  link.pidfd = connect_liveness(link.card.host, port, timeout_ms);
  return link.pidfd >= 0;
}

size_t Client::Impl::read_relay() {
  if (relay_fd < 0) return 0;
  char buffer[4096];
  ssize_t got;
  while ((got = read(relay_fd, buffer, sizeof buffer)) > 0) relay_input.append(buffer, static_cast<size_t>(got));
  const bool ended =
      got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR) || relay_input.size() > (size_t{1} << 20);
  size_t events = 0;
  for (size_t end; (end = relay_input.find('\n')) != std::string::npos; relay_input.erase(0, end + 1)) {
    // "at <host> <port> <line>"; the relay's own lines (its executor's cards) are not for this client.
    std::string_view line(relay_input.data(), end);
    if (!line.starts_with("at ")) continue;
    line.remove_prefix(3);
    const size_t host_end = line.find(' ');
    if (host_end == std::string_view::npos) continue;
    const std::string_view host = line.substr(0, host_end);
    line.remove_prefix(host_end + 1);
    const size_t port_end = line.find(' ');
    if (port_end == std::string_view::npos) continue;
    const long port = std::strtol(std::string(line.substr(0, port_end)).c_str(), nullptr, 10);
    line.remove_prefix(port_end + 1);
    for (uint32_t e = 0; e < executors.size(); ++e) {
      ExecutorLink& link = executors[e];
      if (!link.relayed || link.lost || link.card.watch != port || link.card.host != host) continue;
      if (line == "gone") {
        if (link.joining) {
          fail_join(e, "it is gone");
        } else {
          events += lose_executor(e);
        }
      } else if (line == "unreachable") {
        link.relayed = false;
        if (link.joining) {
          fail_join(e, "its liveness port cannot be reached");
        } else {
          logger("sidecore.client")
              ->warn("cannot watch executor {} on {} (port {}): its loss shows only as task timeouts",
                     link.card.executor_id, link.card.host, link.card.watch);
        }
      } else {
        on_liveness_line(link, line);
      }
    }
  }
  if (!ended) return events;
  close(relay_fd);
  relay_fd = -1;
  relay_input.clear();
  relay_broken = true;
  logger("sidecore.client")
      ->warn("the liveness relay on this host ended: each executor on another host gets a connection");
  for (auto& link : executors) {
    if (!link.relayed || link.lost) continue;
    link.relayed = false;
    link.pidfd = connect_liveness(link.card.host, static_cast<uint16_t>(link.card.watch),
                                  static_cast<int>(options.connect_timeout.count()));
  }
  return events;
}

int Client::Impl::open_pidfd(long pid) { return static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0)); }

void Client::Impl::watch_worker(ExecutorLink& link, uint32_t w) {
  WorkerLink& worker = link.workers[w];
  if (worker.pidfd >= 0) close(worker.pidfd);
  worker.pidfd = w < link.card.worker_pids.size() ? open_pidfd(link.card.worker_pids[w]) : -1;
  watching_any = true;
}

bool Client::Impl::process_ended(int fd) {
  pollfd entry{fd, POLLIN, 0};
  return poll(&entry, 1, 0) > 0;
}

size_t Client::Impl::check_liveness(Clock::time_point now) {
  next_liveness_check = now + options.liveness_interval;
  size_t events = 0;
  if (relay_fd >= 0 && process_ended(relay_fd)) events += read_relay();
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

bool Client::Impl::read_liveness(ExecutorLink& link, int fd) {
  char buffer[4096];
  ssize_t got;
  while ((got = read(fd, buffer, sizeof buffer)) > 0) {
    link.liveness_input.append(buffer, static_cast<size_t>(got));
    if (link.liveness_input.size() > (size_t{1} << 20)) return false;  // not an executor
  }
  if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return false;
  for (size_t end; (end = link.liveness_input.find('\n')) != std::string::npos; link.liveness_input.erase(0, end + 1)) {
    on_liveness_line(link, std::string_view(link.liveness_input.data(), end));
  }
  return true;
}

void Client::Impl::on_liveness_line(ExecutorLink& link, std::string_view line) {
  if (line.starts_with("card ")) {
    try {
      link.newer_card = route_for_caller(parse_card(line.substr(5)), local_host_name());
    } catch (const CardError& e) {
      logger("sidecore.client")
          ->warn("executor {} sent a card this build cannot read: {}", link.card.executor_id, e.what());
    }
  } else if (line.starts_with("lost ")) {
    const unsigned long w = std::strtoul(std::string(line.substr(5)).c_str(), nullptr, 10);
    if (w < link.workers.size() && !link.workers[w].lost) {
      lose_worker(static_cast<uint32_t>(&link - executors.data()), static_cast<uint32_t>(w));
    }
  }
}

size_t Client::Impl::lose_executor(uint32_t e) {
  ExecutorLink& link = executors[e];
  if (link.joining) end_join(e);  // died before it joined: its waiting tasks fail with it, as on any executor
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
  size_t retried = 0;
  const size_t lost = fail_tasks(e, UINT32_MAX, true, &retried);
  if (link.draining && lost == 0) {  // the expected end of a drain
    logger("sidecore.client")->info("executor {} on {} drained and stopped", link.card.executor_id, link.card.host);
    return 0;
  }
  logger("sidecore.client")
      ->warn("executor {} on {} (pid {}) is gone: {} task(s) complete with EXECUTOR_LOST{}", link.card.executor_id,
             link.card.host, link.card.pid, lost - retried, retried_note(retried));
  return lost;
}

size_t Client::Impl::lose_worker(uint32_t e, uint32_t w) {
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
  size_t retried = 0;
  const size_t lost = fail_tasks(e, w, false, &retried);
  logger("sidecore.client")
      ->warn("worker {} of executor {} on {} is gone: {} task(s) complete with EXECUTOR_LOST{}", w,
             link.card.executor_id, link.card.host, lost - retried, retried_note(retried));
  next_card_check = Clock::now();
  return lost;
}

size_t Client::Impl::fail_tasks(uint32_t e, uint32_t w, bool waiting, size_t* retried) {
  const auto now = Clock::now();
  if (waiting) executors[e].waiting.clear();
  std::vector<uint32_t> lost, again;
  for (uint32_t i = 0; i < tasks.size(); ++i) {
    TaskSlot& slot = tasks[i];
    if (!slot.used || slot.executor != e) continue;
    const bool mine = slot.on_wire ? (w == UINT32_MAX || slot.worker == w) : (waiting && slot.waiting);
    if (!mine) continue;
    if (slot.collectable || slot.delivered) {  // timed out before: only its slot was left
      slot.on_wire = false;
      tasks.release_if_finished(i);
      continue;
    }
    lost.push_back(i);
  }
  size_t failed = 0;
  for (const uint32_t i : lost) {
    TaskSlot& slot = tasks[i];  // callbacks below may grow the table: index afresh each time
    const bool expired = slot.deadline != Clock::time_point{} && slot.deadline <= now;
    slot.in_region = {};
    slot.out_region = {};
    slot.on_wire = false;
    if (!expired && options.retry_lost && slot.lost_retries < ClientOptions::kMaxLostRetries) {
      ++slot.lost_retries;
      slot.waiting = true;
      again.push_back(i);
      continue;
    }
    slot.waiting = false;
    tasks.deliver(i, Completion{expired ? ErrorKind::timeout : ErrorKind::executor_lost, 0, 0, false});
    ++failed;
  }
  // Placed again once this executor's state is settled (lost, or its worker out of the count).
  for (const uint32_t i : again) {
    if (tasks[i].waiting) reroute(i);
  }
  if (retried != nullptr) *retried = again.size();
  return failed + again.size();
}

void Client::Impl::apply_card(uint32_t e, const ExecutorCard& card) {
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

bool Client::Impl::on_replacement_answer(uint64_t nonce, const protocol::MessageHeader& header,
                                         const protocol::WelcomeMessage* welcome) {
  for (uint32_t e = 0; e < executors.size(); ++e) {
    for (uint32_t w = 0; w < executors[e].workers.size(); ++w) {
      WorkerLink& worker = executors[e].workers[w];
      if (worker.hello_nonce != nonce || nonce == 0) continue;
      if (executors[e].joining) {
        on_join_answer(e, w, header, welcome);
        return true;
      }
      worker.hello_nonce = 0;
      if (welcome == nullptr) {
        logger("sidecore.client")
            ->warn("the new worker {} of executor {} refused this caller", w, executors[e].card.executor_id);
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

void Client::Impl::look_for_replacements(Clock::time_point now) {
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
      // The cards come on the liveness connection (the executor's only one on another host), or
      // through the relay.
      const int fd = link.card_fd >= 0 ? link.card_fd : (link.card.host != local_host_name() ? link.pidfd : -1);
      if (link.relayed && relay_fd >= 0 && process_ended(relay_fd)) read_relay();
      if (link.lost) continue;
      if (fd >= 0 && process_ended(fd) && !read_liveness(link, fd)) continue;  // check_liveness sees to it
      // No news: greet again a replacement that did not answer.
      const ExecutorCard card = link.newer_card ? *link.newer_card : link.card;
      link.newer_card.reset();
      apply_card(e, card);
    }
  }
}

size_t Client::Impl::fail_everything(const char* what) noexcept {
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

bool Client::Impl::replacements_due() const noexcept {
  for (const auto& executor : executors) {
    if (executor.lost_workers > 0 && !executor.lost) return true;
  }
  return false;
}

}  // namespace sidecore
