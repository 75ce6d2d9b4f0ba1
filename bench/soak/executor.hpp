// The bench side of sidecore-bench soak: the executor under test, and its memory.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "process/child_process.hpp"
#include "soak/soak.hpp"

namespace sidecore::bench::soak {

// The executor under test: sidecore-executor as users run it, started with a card file, stopped
// with SIGTERM. The token reaches it through the environment (SIDECORE_TOKEN), as from sidecore-run.
class ExecutorChild {
 public:
  ExecutorChild(const std::string& program, const SoakOptions& options, const std::string& library);
  ~ExecutorChild();
  ExecutorChild(const ExecutorChild&) = delete;
  ExecutorChild& operator=(const ExecutorChild&) = delete;

  pid_t pid() const { return child_.pid(); }
  const std::string& card() const { return card_; }

  // SIGTERM, then SIGKILL if it has not exited within 10 s. True when it exited with status 0.
  bool stop();

 private:
  void remove_directory();

  std::string directory_;
  std::string card_;
  ChildProcess child_;
};

// The executor's memory from /proc/PID/status, in KiB; -1 for fields that could not be read.
// sidecore-executor may serve in a child process of its own (a supervisor that restarts it
// after a crash stays behind as the process the bench started), so the figures are the sums over
// the started process and all its descendants.
struct Memory {
  long rss = -1;    // VmRSS: resident, the figure reported
  long hwm = -1;    // VmHWM: the kernel's own peak of VmRSS since each process started
  long anon = -1;   // RssAnon: heap and anonymous mappings
  long file = -1;   // RssFile: mapped files (libraries)
  long shmem = -1;  // RssShmem: shared memory (the shm provider's segments, the doorbell)
  unsigned processes = 0;
};

Memory read_memory(pid_t root);
std::string describe(const Memory& memory);

// Samples the executor's VmRSS every 100 ms on a thread of its own while the callers run, and
// keeps the peak. With -v it also prints the figure every 10 s.
class RssSampler {
 public:
  RssSampler(pid_t pid, long start_kib, bool verbose);
  ~RssSampler() { stop(); }
  RssSampler(const RssSampler&) = delete;
  RssSampler& operator=(const RssSampler&) = delete;

  void stop();
  long peak() const { return peak_.load(); }
  uint64_t samples() const { return samples_.load(); }

 private:
  void sample();

  pid_t pid_;
  std::atomic<long> peak_;
  std::atomic<uint64_t> samples_{0};
  bool verbose_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace sidecore::bench::soak
