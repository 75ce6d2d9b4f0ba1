#include "liveness_listener.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

namespace sidecore {
namespace {

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

}  // namespace

LivenessListener::LivenessListener() {
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
  for (int fd : connections_) close(fd);
  if (listen_fd_ >= 0) close(listen_fd_);
}

void LivenessListener::add_descriptors(std::vector<pollfd>& fds) const {
  fds.push_back({listen_fd_, POLLIN, 0});
  for (int fd : connections_) fds.push_back({fd, POLLIN, 0});
}

void LivenessListener::handle(const pollfd* fds, size_t count) {
  // fds[0] is the listening socket, then one per connection, in the order add_descriptors gave.
  std::vector<int> gone;
  for (size_t i = 1; i < count; ++i) {
    if (fds[i].revents == 0) continue;
    char sink[256];
    const ssize_t got = read(fds[i].fd, sink, sizeof sink);
    if (got > 0 || (got < 0 && errno == EAGAIN)) continue;
    gone.push_back(fds[i].fd);  // the caller left
  }
  for (int fd : gone) {
    for (size_t i = 0; i < connections_.size(); ++i) {
      if (connections_[i] == fd) {
        drop(i);
        break;
      }
    }
  }
  if (count > 0 && (fds[0].revents & POLLIN)) accept_all();
}

void LivenessListener::accept_all() {
  int connection;
  while ((connection = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
    if (connections_.size() >= kMaxConnections) {
      close(connection);
      continue;
    }
    connections_.push_back(connection);
  }
}

void LivenessListener::drop(size_t index) {
  close(connections_[index]);
  connections_[index] = connections_.back();
  connections_.pop_back();
}

void LivenessListener::run_in_thread() {
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) fail("liveness listener: eventfd");
  thread_ = std::thread([this] {
    std::vector<pollfd> fds;
    while (true) {
      fds.assign(1, pollfd{stop_fd_, POLLIN, 0});
      add_descriptors(fds);
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (fds[0].revents != 0) break;
      handle(fds.data() + 1, fds.size() - 1);
    }
  });
}

void LivenessListener::broadcast(std::string_view line) noexcept {
  for (size_t i = 0; i < connections_.size();) {
    // A card line is a few hundred bytes, far below any socket buffer: a short write means the
    // caller stopped reading, and it loses its connection (it then sees its executor as lost).
    const ssize_t sent = send(connections_[i], line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent == static_cast<ssize_t>(line.size())) {
      ++i;
    } else {
      drop(i);
    }
  }
}

void LivenessListener::close_after_fork() noexcept {
  for (int fd : connections_) close(fd);
  if (listen_fd_ >= 0) close(listen_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
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
    // A host that vanishes (no FIN, no RST) shows within about 3 s.
    int on = 1, idle = 1, interval = 1, count = 2;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    connected = fd;
  }
  freeaddrinfo(found);
  return connected;
}

}  // namespace sidecore
