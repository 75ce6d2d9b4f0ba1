// How callers on other hosts notice that an executor died: it listens on a plain TCP port (named
// in its card as `watch=`), callers keep one idle connection to it, and when the executor process
// ends in any way, SIGKILL included, the kernel closes those connections: the caller's socket turns
// readable (end of file) and the caller fails the executor's tasks with EXECUTOR_LOST, as a pidfd
// tells callers on the same host. Keepalive probes on the caller's side cover a host that vanished.
// Nothing is ever sent on these connections; whatever a peer sends is read and dropped.
#pragma once

#include <cstdint>
#include <string>
#include <thread>

namespace sidecore {

class LivenessListener {
 public:
  // Listens on an ephemeral port on every address. Throws std::system_error.
  LivenessListener();
  ~LivenessListener();
  LivenessListener(const LivenessListener&) = delete;
  LivenessListener& operator=(const LivenessListener&) = delete;

  uint16_t port() const noexcept { return port_; }

 private:
  void run();

  static constexpr size_t kMaxConnections = 4096;  // beyond this, new ones are closed at once
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd
  uint16_t port_ = 0;
  std::thread thread_;
};

// Caller side: connects to `host`:`port` within `timeout_ms` and turns on fast keepalive; the
// connected socket (non-blocking), or -1.
int connect_liveness(const std::string& host, uint16_t port, int timeout_ms);

}  // namespace sidecore
