#include "liveness_listener.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

#include "token.hpp"

namespace sidecore {
namespace {

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

// What a relayed line starts with: "at <host> <port> ".
std::string fmt_at(std::string_view host, uint16_t port) {
  return "at " + std::string(host) + " " + std::to_string(port) + " ";
}

}  // namespace

LivenessListener::LivenessListener(std::string token) : token_(std::move(token)) {
  listen_fd_ = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  bool v6 = listen_fd_ >= 0;
  if (v6) {
    int off = 0;  // IPv4 callers too, through mapped addresses
    setsockopt(listen_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    sockaddr_in6 any{};
    any.sin6_family = AF_INET6;
    any.sin6_addr = in6addr_any;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) {
      close(listen_fd_);
      v6 = false;
    }
  }
  if (!v6) {  // no IPv6 on this host
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd_ < 0) fail("liveness listener: socket");
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) fail("liveness listener: bind");
  }
  if (listen(listen_fd_, 128) != 0) fail("liveness listener: listen");
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  if (getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length) != 0) fail("liveness listener: getsockname");
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

LivenessListener::~LivenessListener() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof one) < 0) {
      // the thread then ends with the process
    }
    thread_.join();
  }
  if (stop_fd_ >= 0) close(stop_fd_);
  for (const Caller& caller : callers_) close(caller.fd);
  for (const Upstream& upstream : upstreams_) close(upstream.fd);
  if (listen_fd_ >= 0) close(listen_fd_);
}

void LivenessListener::add_descriptors(std::vector<pollfd>& fds) const {
  fds.push_back({listen_fd_, POLLIN, 0});
  for (const Caller& caller : callers_) fds.push_back({caller.fd, POLLIN, 0});
  for (const Upstream& upstream : upstreams_) {
    fds.push_back({upstream.fd, static_cast<short>(upstream.connected ? POLLIN : POLLOUT), 0});
  }
}

int LivenessListener::poll_timeout_ms() const noexcept {
  int timeout = -1;
  const auto now = Clock::now();
  for (const Upstream& upstream : upstreams_) {
    if (upstream.connected) continue;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(upstream.deadline - now).count();
    const int ms = static_cast<int>(std::max<int64_t>(left, 0));
    timeout = timeout < 0 ? ms : std::min(timeout, ms);
  }
  return timeout;
}

void LivenessListener::handle(const pollfd* fds, size_t count) {
  // fds[0] is the listening socket, then the callers' and the upstreams' descriptors, in the order
  // add_descriptors gave; either list may have changed since, so each is found by its descriptor.
  for (size_t i = 1; i < count; ++i) {
    if (fds[i].revents == 0) continue;
    const int fd = fds[i].fd;
    if (auto caller = std::find_if(callers_.begin(), callers_.end(), [&](const Caller& c) { return c.fd == fd; });
        caller != callers_.end()) {
      if (!read_caller(*caller)) doomed_.push_back(fd);
      continue;
    }
    for (size_t u = 0; u < upstreams_.size(); ++u) {
      if (upstreams_[u].fd == fd) {
        on_upstream_event(u, fds[i].revents);
        break;
      }
    }
  }
  const auto now = Clock::now();
  for (size_t u = upstreams_.size(); u-- > 0;) {
    if (!upstreams_[u].connected && now >= upstreams_[u].deadline) end_upstream(u, "unreachable");
  }
  std::vector<int> doomed;
  doomed.swap(doomed_);
  for (const int fd : doomed) drop_caller(fd);
  if (count > 0 && (fds[0].revents & POLLIN)) accept_all();
}

void LivenessListener::accept_all() {
  int connection;
  while ((connection = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
    if (callers_.size() >= kMaxConnections) {
      close(connection);
      continue;
    }
    callers_.push_back({connection, {}});
  }
}

bool LivenessListener::read_caller(Caller& caller) {
  char buffer[1024];
  ssize_t got;
  while ((got = read(caller.fd, buffer, sizeof buffer)) > 0) {
    if (token_.empty()) continue;  // no relay: nothing a caller says matters
    caller.input.append(buffer, static_cast<size_t>(got));
    size_t end;
    while ((end = caller.input.find('\n')) != std::string::npos) {
      const std::string line = caller.input.substr(0, end);
      caller.input.erase(0, end + 1);
      on_caller_line(caller.fd, line);
    }
    if (caller.input.size() > kMaxLine) return false;
  }
  return got < 0 && (errno == EAGAIN || errno == EINTR);
}

void LivenessListener::on_caller_line(int fd, std::string_view line) {
  // "watch <token> <host> <port>"
  std::vector<std::string_view> words;
  for (size_t at = 0; at <= line.size();) {
    const size_t space = std::min(line.find(' ', at), line.size());
    if (space > at) words.push_back(line.substr(at, space - at));
    at = space + 1;
  }
  if (words.size() != 4 || words[0] != "watch" || !tokens_equal(words[1], token_)) return;
  const std::string port_text(words[3]);
  char* end = nullptr;
  const unsigned long port = std::strtoul(port_text.c_str(), &end, 10);
  if (end == port_text.c_str() || *end != '\0' || port == 0 || port > 65535) return;
  subscribe(fd, words[2], static_cast<uint16_t>(port));
}

void LivenessListener::subscribe(int fd, std::string_view host, uint16_t port) {
  for (Upstream& upstream : upstreams_) {
    if (upstream.port != port || upstream.host != host) continue;
    if (std::find(upstream.subscribers.begin(), upstream.subscribers.end(), fd) == upstream.subscribers.end()) {
      upstream.subscribers.push_back(fd);
    }
    return;
  }
  const std::string at = fmt_at(host, port);
  if (upstreams_.size() >= kMaxUpstreams) {
    tell(fd, at + "unreachable\n");
    return;
  }
  Upstream upstream;
  upstream.host = std::string(host);
  upstream.port = port;
  upstream.deadline = Clock::now() + kConnectTimeout;
  upstream.subscribers.push_back(fd);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(upstream.host.c_str(), std::to_string(port).c_str(), &hints, &found) == 0) {
    for (addrinfo* entry = found; entry != nullptr && upstream.fd < 0; entry = entry->ai_next) {
      const int candidate =
          socket(entry->ai_family, entry->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, entry->ai_protocol);
      if (candidate < 0) continue;
      if (connect(candidate, entry->ai_addr, entry->ai_addrlen) == 0 || errno == EINPROGRESS) {
        upstream.fd = candidate;
      } else {
        close(candidate);
      }
    }
    freeaddrinfo(found);
  }
  if (upstream.fd < 0) {
    tell(fd, at + "unreachable\n");
    return;
  }
  upstreams_.push_back(std::move(upstream));
}

void LivenessListener::on_upstream_event(size_t index, short revents) {
  Upstream& upstream = upstreams_[index];
  if (!upstream.connected) {
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(upstream.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0 || (revents & POLLERR)) {
      end_upstream(index, "unreachable");
      return;
    }
    upstream.connected = true;
    keep_alive_fast(upstream.fd);
    return;
  }
  char buffer[4096];
  ssize_t got;
  while ((got = read(upstream.fd, buffer, sizeof buffer)) > 0) upstream.input.append(buffer, static_cast<size_t>(got));
  const std::string at = fmt_at(upstream.host, upstream.port);
  size_t end;
  while ((end = upstream.input.find('\n')) != std::string::npos) {
    const std::string line = at + upstream.input.substr(0, end + 1);
    upstream.input.erase(0, end + 1);
    for (const int fd : upstream.subscribers) tell(fd, line);
  }
  if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR) || upstream.input.size() > (size_t{1} << 20)) {
    end_upstream(index, "gone");
  }
}

void LivenessListener::end_upstream(size_t index, std::string_view what) {
  Upstream& upstream = upstreams_[index];
  const std::string line = fmt_at(upstream.host, upstream.port) + std::string(what) + "\n";
  for (const int fd : upstream.subscribers) tell(fd, line);
  close(upstream.fd);
  upstreams_[index] = std::move(upstreams_.back());
  upstreams_.pop_back();
}

void LivenessListener::tell(int fd, std::string_view line) {
  // Far below any socket buffer: a short write means the caller stopped reading; it loses its
  // connection (and then follows its executors itself).
  const ssize_t sent = send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent != static_cast<ssize_t>(line.size())) doomed_.push_back(fd);
}

void LivenessListener::drop_caller(int fd) {
  auto caller = std::find_if(callers_.begin(), callers_.end(), [&](const Caller& c) { return c.fd == fd; });
  if (caller == callers_.end()) return;  // doomed twice
  for (size_t u = upstreams_.size(); u-- > 0;) {
    auto& subscribers = upstreams_[u].subscribers;
    subscribers.erase(std::remove(subscribers.begin(), subscribers.end(), fd), subscribers.end());
    if (subscribers.empty()) {  // nobody follows it any more
      close(upstreams_[u].fd);
      upstreams_[u] = std::move(upstreams_.back());
      upstreams_.pop_back();
    }
  }
  close(fd);
  *caller = std::move(callers_.back());
  callers_.pop_back();
}

void LivenessListener::run_in_thread() {
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) fail("liveness listener: eventfd");
  thread_ = std::thread([this] {
    std::vector<pollfd> fds;
    while (true) {
      fds.assign(1, pollfd{stop_fd_, POLLIN, 0});
      add_descriptors(fds);
      if (poll(fds.data(), fds.size(), poll_timeout_ms()) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[0].revents != 0) break;
      handle(fds.data() + 1, fds.size() - 1);
    }
  });
}

void LivenessListener::broadcast(std::string_view line) noexcept {
  // A card line is a few hundred bytes: a caller that does not take it loses its connection (it
  // then sees its executor as lost).
  for (const Caller& caller : callers_) tell(caller.fd, line);
  std::vector<int> doomed;
  doomed.swap(doomed_);
  for (const int fd : doomed) drop_caller(fd);
}

void LivenessListener::close_after_fork() noexcept {
  for (const Caller& caller : callers_) close(caller.fd);
  for (const Upstream& upstream : upstreams_) close(upstream.fd);
  if (listen_fd_ >= 0) close(listen_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void keep_alive_fast(int fd) noexcept {
  // A host that vanishes (no FIN, no RST) shows within about 3 s.
  int on = 1, idle = 1, interval = 1, count = 2;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

int connect_liveness(const std::string& host, uint16_t port, int timeout_ms) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return -1;
  int connected = -1;
  for (addrinfo* entry = found; entry != nullptr && connected < 0; entry = entry->ai_next) {
    const int fd = socket(entry->ai_family, entry->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, entry->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, entry->ai_addr, entry->ai_addrlen) != 0 && errno != EINPROGRESS) {
      close(fd);
      continue;
    }
    pollfd wait{fd, POLLOUT, 0};
    int error = 0;
    socklen_t length = sizeof error;
    if (poll(&wait, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
      close(fd);
      continue;
    }
    keep_alive_fast(fd);
    connected = fd;
  }
  freeaddrinfo(found);
  return connected;
}

}  // namespace sidecore
