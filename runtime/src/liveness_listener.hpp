// How callers on other hosts follow an executor: it listens on a plain TCP port (named in its card
// as `watch=`) and callers keep one connection to it.
// - When the executor process ends in any way, SIGKILL included, the kernel closes those
//   connections: the caller's socket turns readable (end of file) and the caller fails the
//   executor's tasks with EXECUTOR_LOST, as a pidfd tells callers on the same host. Keepalive probes
//   on the caller's side cover a host that vanished.
// - When the executor's supervisor replaced a worker, it sends every caller its new card, one line
//   "card <card text>\n": the callers connect to the new worker (callers on the executor's host read
//   the card file instead).
// - Relay: a caller on this host that follows executors on other hosts asks this listener to
//   follow them for it, one line "watch <token> <host> <port>\n" each. The listener keeps one
//   connection to each such executor's port for all its callers and passes on what it hears as
//   "at <host> <port> <line>\n": the executor's own lines, then "at <host> <port> gone\n" when
//   that connection ends, or "... unreachable\n" when it could not be opened. A node's ranks then
//   hold one liveness connection in all, and an executor one per node that uses it, not one per
//   rank. Only callers that present the step's token are served; anything else a peer sends is
//   read and dropped.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sidecore {

class LivenessListener {
 public:
  // Listens on an ephemeral port on every address. `token`: what callers present to have other
  // executors followed for them (empty: no relay). Throws std::system_error.
  explicit LivenessListener(std::string token = {});
  ~LivenessListener();
  LivenessListener(const LivenessListener&) = delete;
  LivenessListener& operator=(const LivenessListener&) = delete;

  uint16_t port() const noexcept { return port_; }

  // Driven by the owner's poll loop (the supervisor, single-threaded so that it can fork):
  // appends the descriptors to watch for input, then handles whatever poll() reported on them.
  void add_descriptors(std::vector<pollfd>& fds) const;
  void handle(const pollfd* fds, size_t count);
  // How long the owner's poll may wait at most: a relay connection being opened has a deadline.
  // -1: no bound.
  int poll_timeout_ms() const noexcept;
  // Or by a thread of its own (an executor serving in one process); stopped by the destructor.
  void run_in_thread();

  // Sends `line` (newline included) to every connected caller, best effort: a caller that does not
  // read is dropped rather than waited for.
  void broadcast(std::string_view line) noexcept;
  // In a forked child: closes every descriptor without touching the callers' connections' state.
  void close_after_fork() noexcept;

 private:
  using Clock = std::chrono::steady_clock;
  struct Caller {
    int fd = -1;
    std::string input;  // a partial line
  };
  // An executor on another host that this listener follows for its callers.
  struct Upstream {
    std::string host;
    uint16_t port = 0;
    int fd = -1;
    bool connected = false;
    Clock::time_point deadline{};  // for the connection to open
    std::string input;
    std::vector<int> subscribers;  // callers' descriptors
  };

  void accept_all();
  // False once the caller has gone (or sent what no caller sends).
  bool read_caller(Caller& caller);
  void on_caller_line(int fd, std::string_view line);
  void subscribe(int fd, std::string_view host, uint16_t port);
  void on_upstream_event(size_t index, short revents);
  // Tells the upstream's callers `what` ("gone", "unreachable") and closes it.
  void end_upstream(size_t index, std::string_view what);
  void tell(int fd, std::string_view line);
  void drop_caller(int fd);

  static constexpr size_t kMaxConnections = 4096;  // beyond this, new ones are closed at once
  static constexpr size_t kMaxUpstreams = 4096;
  static constexpr size_t kMaxLine = 4096;
  static constexpr auto kConnectTimeout = std::chrono::seconds(5);
  std::string token_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd, for the thread
  uint16_t port_ = 0;
  std::vector<Caller> callers_;
  std::vector<Upstream> upstreams_;
  std::vector<int> doomed_;  // callers to drop once the current pass is done
  std::thread thread_;
};

// Caller side: connects to `host`:`port` within `timeout_ms` and turns on fast keepalive; the
// connected socket (non-blocking), or -1.
int connect_liveness(const std::string& host, uint16_t port, int timeout_ms);
// What connect_liveness sets on a connection: a vanished host shows within about 3 s.
void keep_alive_fast(int fd) noexcept;

}  // namespace sidecore
