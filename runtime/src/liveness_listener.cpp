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
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) fail("liveness listener: eventfd");
  thread_ = std::thread([this] { run(); });
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
  if (listen_fd_ >= 0) close(listen_fd_);
}

void LivenessListener::run() {
  std::vector<pollfd> fds{{stop_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
  while (true) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents != 0) break;
    if (fds[1].revents & POLLIN) {
      int connection;
      while ((connection = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
        if (fds.size() - 2 >= kMaxConnections) {
          close(connection);
          continue;
        }
        fds.push_back({connection, POLLIN, 0});
      }
    }
    for (size_t i = 2; i < fds.size();) {
      if (fds[i].revents == 0) {
        ++i;
        continue;
      }
      char sink[256];
      const ssize_t got = read(fds[i].fd, sink, sizeof sink);
      if (got > 0 || (got < 0 && errno == EAGAIN)) {
        ++i;
        continue;
      }
      close(fds[i].fd);  // the caller left
      fds[i] = fds.back();
      fds.pop_back();
    }
  }
  for (size_t i = 2; i < fds.size(); ++i) close(fds[i].fd);
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
