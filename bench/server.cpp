#include "server.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "control_channel.hpp"
#include "executor.hpp"
#include "raw_fabric.hpp"
#include "token.hpp"

namespace sidecore::bench {
namespace {

// A round that makes no progress for this long means the parent is wedged.
constexpr auto kStallTimeout = std::chrono::seconds(120);

// The bench process that started this server; when it is gone, the server stops.
pid_t bench_process = 0;

// The raw side of the server: echoes messages, or reads the client's buffer by RMA and answers.
// Runs on the server's main thread only while a round is on; between rounds that thread blocks on
// the control pipe, so it never competes with the executor worker for the CPU.
class RawServer {
 public:
  explicit RawServer(const std::string& provider) : endpoint_(provider) {}

  const std::string& address() const noexcept { return endpoint_.address(); }
  void set_peer(std::string_view raw_address) { endpoint_.set_peer(raw_address); }

  // Posts the receives of an echo round: `count` messages of `bytes`, at most `window` at once
  // from the client. Twice that many receives stay posted, so a message that arrives between a
  // reply and the re-post of its buffer still finds one (the worker, too, keeps a reserve of
  // receives beyond its callers' credits); without the slack it would take the provider's slower
  // unexpected-message path.
  void prepare_echo(uint64_t count, size_t bytes, size_t window) {
    count_ = count;
    bytes_ = bytes;
    const size_t slots = 2 * window;
    if (!messages_.fits(slots, bytes)) {
      messages_ = RegisteredBuffer(endpoint_.domain(), endpoint_.endpoint(), slots, bytes, endpoint_.message_access());
    }
    posted_ = 0;
    for (uint32_t i = 0; i < slots && posted_ < count_; ++i) post(i);
  }

  // Echoes every message back to the peer; a slot's receive is posted again once its reply left.
  void run_echo() {
    uint64_t replied = 0;
    fi_cq_data_entry entries[RawEndpoint::kBatch];
    Watchdog watchdog;
    while (replied < count_) {
      const size_t n = endpoint_.poll(entries, RawEndpoint::kBatch);
      if (n == 0) {
        watchdog.idle();
        continue;
      }
      watchdog.progressed();
      for (size_t i = 0; i < n; ++i) {
        const uint32_t slot = raw_index(entries[i].op_context);
        if (raw_op(entries[i].op_context) == RawOp::receive) {
          if (!endpoint_.send(messages_.slot(slot), entries[i].len, messages_.descriptor(),
                              raw_context(RawOp::send, slot))) {
            ++replied;
            repost(slot);
          }
        } else {
          ++replied;
          repost(slot);
        }
      }
    }
  }

  // Posts the receive for the first request of a read round of `count` transfers of `bytes`.
  void prepare_read(uint64_t count, size_t bytes) {
    count_ = count;
    bytes_ = bytes;
    // The destination is registered once and reused, as the worker keeps its scratch buffers.
    if (!target_.fits(1, bytes)) {
      target_ = RegisteredBuffer(endpoint_.domain(), endpoint_.endpoint(), 1, bytes, FI_READ | FI_WRITE);
    }
    if (!requests_.fits(2, sizeof(ReadRequest))) {
      requests_ = RegisteredBuffer(endpoint_.domain(), endpoint_.endpoint(), 2, sizeof(ReadRequest),
                                   endpoint_.message_access());
    }
    posted_ = 0;
    if (count_ > 0) {
      endpoint_.post_receive(requests_.slot(0), sizeof(ReadRequest), requests_.descriptor(),
                             raw_context(RawOp::receive, 0));
      ++posted_;
    }
  }

  // For each request: fi_read the client's buffer, then answer with the byte count.
  void run_read() {
    uint64_t answered = 0;
    fi_cq_data_entry entries[RawEndpoint::kBatch];
    Watchdog watchdog;
    while (answered < count_) {
      const size_t n = endpoint_.poll(entries, RawEndpoint::kBatch);
      if (n == 0) {
        watchdog.idle();
        continue;
      }
      watchdog.progressed();
      for (size_t i = 0; i < n; ++i) {
        switch (raw_op(entries[i].op_context)) {
          case RawOp::receive: {
            ReadRequest request;
            if (entries[i].len != sizeof request) throw std::runtime_error("raw baseline: malformed read request");
            std::memcpy(&request, requests_.slot(0), sizeof request);
            if (request.bytes > target_.slot_bytes()) throw std::runtime_error("raw baseline: read request too large");
            endpoint_.read(target_.slot(0), request.bytes, target_.descriptor(), request.address, request.key,
                           raw_context(RawOp::read, 0));
            break;
          }
          case RawOp::read: {
            // Post the next request's receive before answering, so it is there when the request comes.
            if (posted_ < count_) {
              endpoint_.post_receive(requests_.slot(0), sizeof(ReadRequest), requests_.descriptor(),
                                     raw_context(RawOp::receive, 0));
              ++posted_;
            }
            const uint64_t done = bytes_;
            std::memcpy(requests_.slot(1), &done, sizeof done);
            if (!endpoint_.send(requests_.slot(1), sizeof done, requests_.descriptor(), raw_context(RawOp::send, 1))) {
              ++answered;
            }
            break;
          }
          case RawOp::send: ++answered; break;
        }
      }
    }
  }

 private:
  // Looks at the clock and the parent only every few thousand empty polls, so it costs the
  // baseline nothing.
  struct Watchdog {
    Clock::time_point deadline = Clock::now() + kStallTimeout;
    unsigned empty = 0;
    bool progress = false;
    void progressed() noexcept { progress = true; }
    void idle() {
      if (++empty % 4096 != 0) return;
      if (getppid() != bench_process) throw std::runtime_error("the bench process is gone");
      const auto now = Clock::now();
      if (progress) {
        progress = false;
        deadline = now + kStallTimeout;
      } else if (now > deadline) {
        throw std::runtime_error("raw baseline: the round made no progress for 120 s");
      }
    }
  };

  void post(uint32_t slot) {
    endpoint_.post_receive(messages_.slot(slot), bytes_, messages_.descriptor(), raw_context(RawOp::receive, slot));
    ++posted_;
  }
  void repost(uint32_t slot) {
    if (posted_ < count_) post(slot);
  }

  RawEndpoint endpoint_;
  RegisteredBuffer messages_, requests_, target_;
  uint64_t count_ = 0, posted_ = 0;
  size_t bytes_ = 0;
};

// Every thread of this process except the main one: the executor's worker, and any thread a
// provider starts. The main thread runs the raw baseline and reads the control pipe.
class ExecutorThreads {
 public:
  // Before a raw round: the executor's threads go to SCHED_IDLE, so a worker that has not gone to
  // sleep cannot take the CPU from the raw echo. A sleeping worker (the normal case) is unaffected.
  void demote() {
    demoted_ = list();
    for (pid_t tid : demoted_) set_policy(tid, SCHED_IDLE);
  }
  // After the round: back to the normal policy.
  void restore() {
    for (pid_t tid : demoted_) set_policy(tid, SCHED_OTHER);
    demoted_.clear();
  }
  // CPU time (ns) all of them have used so far.
  static uint64_t cpu_ns() {
    uint64_t total = 0;
    for (pid_t tid : list()) {
      std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/schedstat");
      uint64_t on_cpu = 0;
      if (stat >> on_cpu) total += on_cpu;
    }
    return total;
  }

 private:
  static std::vector<pid_t> list() {
    std::vector<pid_t> tids;
    const pid_t self = gettid();
    if (DIR* dir = opendir("/proc/self/task")) {
      while (const dirent* entry = readdir(dir)) {
        const pid_t tid = static_cast<pid_t>(std::atoi(entry->d_name));
        if (tid > 0 && tid != self) tids.push_back(tid);
      }
      closedir(dir);
    }
    return tids;
  }
  static void set_policy(pid_t tid, int policy) {
    sched_param param{};
    if (sched_setscheduler(tid, policy, &param) != 0 && errno != ESRCH) {
      throw std::runtime_error(fmt::format("cannot change the scheduling policy of thread {}: {}", tid,
                                           std::strerror(errno)));
    }
  }
  std::vector<pid_t> demoted_;
};

void pin_process(int cpu) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  CPU_SET(cpu, &mask);
  if (sched_setaffinity(0, sizeof mask, &mask) != 0) {
    throw std::runtime_error(fmt::format("cannot pin the server to CPU {}: {}", cpu, std::strerror(errno)));
  }
}

// Moves this (still single-threaded) process into the network namespace `name` made by ip-netns(8),
// so the bench measures between two simulated nodes (slurm/local-cluster.sh up --nodes N).
void enter_network_namespace(const std::string& name) {
  const std::string path = "/run/netns/" + name;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot open network namespace {}: {}", path, std::strerror(errno)));
  const int rc = setns(fd, CLONE_NEWNET);
  const int error = errno;
  close(fd);
  if (rc != 0) {
    throw std::runtime_error(fmt::format("cannot enter network namespace {} (needs root): {}", name, std::strerror(error)));
  }
}

}  // namespace

int run_server(const ServerOptions& options) {
  // This server ends when its control pipe closes or its parent disappears, and always through the
  // destructors, so the executor's doorbell and the providers' shared-memory segments are removed.
  bench_process = getppid();
  const auto control = open_child_control("sidecore-bench serve");
  if (!control) return 1;
  try {
    if (!options.netns.empty()) enter_network_namespace(options.netns);
    // Pin before the executor starts: its worker threads inherit the mask, and the executor checks
    // that its cores are ones this process may use.
    pin_process(options.cpu);

    ExecutorConfig config;
    config.cores = CoreSet({options.cpu});
    config.provider = options.provider;
    config.worker.poll = options.poll;
    config.worker.spin_window = std::chrono::microseconds(options.spin_us);
    config.worker.credits_per_peer = options.credits;
    config.token = generate_token();
    config.preload = {options.library};
    const std::string token = config.token;
    Executor executor(std::move(config));
    RawServer raw(options.provider);
    executor.start();

    control->say("card " + executor.card_text());
    control->say("token " + token);
    control->say("raw " + to_hex(raw.address()));
    control->say("ready");

    ExecutorThreads executor_threads;
    // Runs a raw round with the executor's threads held at idle priority, restoring them even
    // when the round fails.
    auto raw_round = [&](auto&& run) {
      executor_threads.demote();
      try {
        run();
      } catch (...) {
        executor_threads.restore();
        throw;
      }
      executor_threads.restore();
    };

    std::string line;
    while (control->next(line)) {
      std::istringstream words(line);
      std::string command;
      words >> command;
      if (command == "peer") {
        std::string hex, address;
        words >> hex;
        if (!from_hex(hex, address)) throw std::runtime_error("malformed peer address");
        raw.set_peer(address);
        control->say("ok");
      } else if (command == "echo") {
        uint64_t count = 0;
        size_t bytes = 0, window = 0;
        if (!(words >> count >> bytes >> window) || window == 0) throw std::runtime_error("malformed echo command");
        raw.prepare_echo(count, bytes, window);
        raw_round([&] {
          control->say("go");
          raw.run_echo();
        });
        control->say("done");
      } else if (command == "read") {
        uint64_t count = 0;
        size_t bytes = 0;
        if (!(words >> count >> bytes)) throw std::runtime_error("malformed read command");
        raw.prepare_read(count, bytes);
        raw_round([&] {
          control->say("go");
          raw.run_read();
        });
        control->say("done");
      } else if (command == "idle") {
        // How busy the executor's threads are while nobody sends them anything and this thread
        // sleeps: a worker that sleeps when idle shows almost nothing.
        unsigned milliseconds = 0;
        if (!(words >> milliseconds) || milliseconds == 0) throw std::runtime_error("malformed idle command");
        const uint64_t before = ExecutorThreads::cpu_ns();
        const auto start = Clock::now();
        std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
        const double wall = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
        control->say(fmt::format("busy {:.6f}", static_cast<double>(ExecutorThreads::cpu_ns() - before) / wall));
      } else if (command == "quit") {
        break;
      } else {
        throw std::runtime_error("unknown control command '" + command + "'");
      }
    }
    executor.stop();
    control->say("bye");
    return 0;
  } catch (const std::exception& e) {
    std::string message = e.what();
    for (char& c : message) {
      if (c == '\n') c = ' ';
    }
    control->say("error " + message);
    return 1;
  }
}

}  // namespace sidecore::bench
