// How callers on other hosts follow an executor: it listens on a plain TCP port (named in its card
// as `watch=`) and callers keep one connection to it.
// - When the executor process ends in any way, SIGKILL included, the kernel closes those
//   connections: the caller's socket turns readable (end of file) and the caller fails the
//   executor's tasks with EXECUTOR_LOST, as a pidfd tells callers on the same host. Keepalive probes
//   on the caller's side cover a host that vanished.
// - When the executor's supervisor replaced a worker, it sends every caller its new card, one line
//   "card <card text>\n": the callers connect to the new worker (callers on the executor's host read
//   the card file instead).
// Whatever a peer sends is read and dropped.
#pragma once

#include <poll.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sidecore {

class LivenessListener {
 public:
  // Listens on an ephemeral port on every address. Throws std::system_error.
  LivenessListener();
  ~LivenessListener();
  LivenessListener(const LivenessListener&) = delete;
  LivenessListener& operator=(const LivenessListener&) = delete;

  uint16_t port() const noexcept { return port_; }

  // Driven by the owner's poll loop (the supervisor, single-threaded so that it can fork):
  // appends the descriptors to watch for input, then handles whatever poll() reported on them.
  void add_descriptors(std::vector<pollfd>& fds) const;
  void handle(const pollfd* fds, size_t count);
  // Or by a thread of its own (an executor serving in one process); stopped by the destructor.
  void run_in_thread();

  // Sends `line` (newline included) to every connected caller, best effort: a caller that does not
  // read is dropped rather than waited for.
  void broadcast(std::string_view line) noexcept;
  // In a forked child: closes every descriptor without touching the callers' connections' state.
  void close_after_fork() noexcept;

 private:
  void accept_all();
  void drop(size_t index);

  static constexpr size_t kMaxConnections = 4096;  // beyond this, new ones are closed at once
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd, for the thread
  uint16_t port_ = 0;
  std::vector<int> connections_;
  std::thread thread_;
};

// Caller side: connects to `host`:`port` within `timeout_ms` and turns on fast keepalive; the
// connected socket (non-blocking), or -1.
int connect_liveness(const std::string& host, uint16_t port, int timeout_ms);

}  // namespace sidecore
