#include "soak.hpp"

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "control_channel.hpp"
#include "core_set.hpp"
#include "fabric/error.hpp"
#include "fabric/info.hpp"
#include "log.hpp"
#include "options.hpp"
#include "process/card_wait.hpp"
#include "process/child_process.hpp"
#include "protocol.hpp"
#include "server_process.hpp"
#include "setup.hpp"
#include "sidecore/sidecore.hpp"
#include "token.hpp"

namespace sidecore::bench {
namespace {

using Clock = std::chrono::steady_clock;

// --- The tasks ------------------------------------------------------------------------------------
//
// The byte streams below must match bench_functions.c's soak_mix, soak_key and soak_word: the
// function checks the inputs the callers write, the callers check the outputs it writes. A
// mismatch between the two copies fails every task, so they cannot drift apart unnoticed.

constexpr uint64_t kSoakMagic = 0x4b414f5345524f43;  // "CORESOAK"
// The input's header: magic, task id, seed, output bytes wanted. Inputs are never shorter.
constexpr size_t kHeaderBytes = 4 * sizeof(uint64_t);
// Bytes of output capacity beyond the size the task asks for. The caller fills them before the
// task and checks them after it: the client and the worker must never write past the output the
// function reported (whatever the function wrote there stays in the worker). Up to the inline
// limit the guard shrinks instead, so the capacity, which picks the output's path, stays inline.
constexpr size_t kGuardBytes = 64;
constexpr std::byte kGuardByte{0xa7};
// Streams of soak_key: 0 the input payload, 1 the output (the function's), 2 the sizes (ours).
constexpr uint64_t kInputStream = 0, kOutputStream = 1, kSizeStream = 2;

constexpr uint64_t soak_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  return z ^ (z >> 31);
}
constexpr uint64_t soak_key(uint64_t seed, uint64_t task, uint64_t stream) {
  return soak_mix(seed ^ soak_mix(task * 4 + stream));
}
constexpr uint64_t soak_word(uint64_t key, uint64_t index) { return soak_mix(key + (index + 1) * 0x9e3779b97f4a7c15); }

void fill_pattern(std::byte* data, size_t bytes, uint64_t key) {
  const size_t words = bytes / 8;
  for (size_t i = 0; i < words; ++i) {
    const uint64_t word = soak_word(key, i);
    std::memcpy(data + 8 * i, &word, sizeof word);
  }
  if (bytes % 8 != 0) {
    const uint64_t word = soak_word(key, words);
    std::memcpy(data + 8 * words, &word, bytes % 8);
  }
}

// The offset of the first byte that differs from the stream, or `bytes` when none does. The
// common case (all equal) runs as one pass that only ORs differences together.
size_t first_difference(const std::byte* data, size_t bytes, uint64_t key) {
  const size_t words = bytes / 8;
  uint64_t differ = 0;
  for (size_t i = 0; i < words; ++i) {
    uint64_t word;
    std::memcpy(&word, data + 8 * i, sizeof word);
    differ |= word ^ soak_word(key, i);
  }
  uint64_t tail = 0, expected_tail = 0;
  if (bytes % 8 != 0) {
    const uint64_t word = soak_word(key, words);
    std::memcpy(&tail, data + 8 * words, bytes % 8);
    std::memcpy(&expected_tail, &word, bytes % 8);
  }
  if (differ == 0 && tail == expected_tail) return bytes;
  std::vector<std::byte> expected(bytes);
  fill_pattern(expected.data(), bytes, key);
  return static_cast<size_t>(std::mismatch(data, data + bytes, expected.data()).first - data);
}

// Task sizes: most small, some up to --max-bytes, so a million tasks finish in minutes on two CPUs
// while every path of the data plane is taken many times: 90 % travel inside the messages (up to
// 4 KiB, the protocol's inline limit), 9 % by RMA up to 64 KiB, 1 % by RMA up to --max-bytes.
// Input and output sizes are drawn on their own, from (seed, task id) alone, so a run is
// reproducible from its seed whatever the callers' timing.
struct SizeClass {
  const char* name;
  size_t high;       // largest size of the class (the previous class's high + 1 is its lowest)
  unsigned percent;  // share of the draws
};
constexpr size_t kInlineLimit = protocol::kInlineLimit;  // larger inputs and outputs move by RMA
constexpr SizeClass kSizeClasses[] = {{"small", kInlineLimit, 90}, {"medium", 65536, 9}, {"large", SIZE_MAX, 1}};
constexpr size_t kClasses = std::size(kSizeClasses);

size_t class_low(size_t index) { return index == 0 ? 0 : kSizeClasses[index - 1].high + 1; }
size_t class_high(size_t index, size_t max_bytes) { return std::min(kSizeClasses[index].high, max_bytes); }

// The class a draw lands in: a class entirely above --max-bytes gives its share to the largest
// class that exists.
size_t effective_class(size_t index, size_t max_bytes) {
  while (index > 0 && class_low(index) > max_bytes) --index;
  return index;
}

size_t draw_size(uint64_t pick, uint64_t value, size_t max_bytes) {
  size_t index = 0;
  unsigned cumulative = 0;
  for (; index + 1 < kClasses; ++index) {
    cumulative += kSizeClasses[index].percent;
    if (pick % 100 < cumulative) break;
  }
  index = effective_class(index, max_bytes);
  const size_t low = class_low(index), high = class_high(index, max_bytes);
  return low + static_cast<size_t>(value % (high - low + 1));
}

size_t class_of(size_t bytes) {
  size_t index = 0;
  while (index + 1 < kClasses && bytes > kSizeClasses[index].high) ++index;
  return index;
}

struct TaskSizes {
  size_t in_bytes;   // header included
  size_t out_bytes;  // what the task asks the function to write
};

// The output capacity a task is submitted with: its output, then the guard.
size_t output_capacity(size_t out_bytes) {
  if (out_bytes <= kInlineLimit) return std::min(out_bytes + kGuardBytes, kInlineLimit);
  return out_bytes + kGuardBytes;
}

TaskSizes task_sizes(uint64_t seed, uint64_t task, size_t max_bytes) {
  const uint64_t key = soak_key(seed, task, kSizeStream);
  const size_t in = draw_size(soak_word(key, 0), soak_word(key, 1), max_bytes);
  const size_t out = draw_size(soak_word(key, 2), soak_word(key, 3), max_bytes);
  return {std::max(in, kHeaderBytes), out};
}

// "512 B", "4 KiB", "10.3 KiB", "1 MiB": one decimal at most.
std::string format_bytes(double bytes) {
  const char* unit = "B";
  if (bytes >= 1 << 20) {
    bytes /= 1 << 20;
    unit = "MiB";
  } else if (bytes >= 1 << 10) {
    bytes /= 1 << 10;
    unit = "KiB";
  }
  std::string number = fmt::format("{:.1f}", bytes);
  if (number.ends_with(".0")) number.resize(number.size() - 2);
  return number + " " + unit;
}

// The distribution in words, with the mean size it gives.
std::string describe_sizes(size_t max_bytes) {
  double percent[kClasses] = {};
  for (size_t i = 0; i < kClasses; ++i) percent[effective_class(i, max_bytes)] += kSizeClasses[i].percent;
  std::string text;
  double mean = 0;
  for (size_t i = 0; i < kClasses; ++i) {
    if (percent[i] == 0) continue;
    const double low = static_cast<double>(class_low(i)), high = static_cast<double>(class_high(i, max_bytes));
    mean += percent[i] / 100 * (low + high) / 2;
    // Classes after the first start one byte above the previous one's largest size.
    text += fmt::format("{}{:g} % in {}{}, {}]", text.empty() ? "" : ", ", percent[i], i == 0 ? "[" : "(",
                        format_bytes(i == 0 ? low : low - 1), format_bytes(high));
  }
  return fmt::format("{} (uniform within each; mean about {} per direction; inputs at least {} B, the header)",
                     text, format_bytes(mean), kHeaderBytes);
}

// --- What a caller counts, and how it reports it to the bench -------------------------------------

struct Tally {
  uint64_t completed = 0;          // distinct tasks that completed (well or not)
  uint64_t lost = 0;               // tasks that never completed
  uint64_t duplicated = 0;         // completions beyond the first for a task, or for no task in flight
  uint64_t corrupted_inputs = 0;   // the function found its input changed (it returned 2)
  uint64_t corrupted_outputs = 0;  // wrong output size or bytes, a guard byte written, a result for another task
  uint64_t failed = 0;             // any other error
  uint64_t bytes_verified = 0;     // input bytes the function checked plus output bytes the caller checked
  uint64_t in_bytes = 0, out_bytes = 0;
  uint64_t max_in = 0, max_out = 0;
  uint64_t in_classes[kClasses] = {}, out_classes[kClasses] = {};
  uint64_t milliseconds = 0;

  bool clean() const {
    return lost == 0 && duplicated == 0 && corrupted_inputs == 0 && corrupted_outputs == 0 && failed == 0;
  }

  // Every field by name, for the result line.
  template <typename F>
  void each(F&& f) {
    f("completed", completed);
    f("lost", lost);
    f("duplicated", duplicated);
    f("corrupted_inputs", corrupted_inputs);
    f("corrupted_outputs", corrupted_outputs);
    f("failed", failed);
    f("bytes_verified", bytes_verified);
    f("in_bytes", in_bytes);
    f("out_bytes", out_bytes);
    f("max_in", max_in);
    f("max_out", max_out);
    for (size_t i = 0; i < kClasses; ++i) {
      f(fmt::format("in_{}", kSizeClasses[i].name), in_classes[i]);
      f(fmt::format("out_{}", kSizeClasses[i].name), out_classes[i]);
    }
    f("milliseconds", milliseconds);
  }

  std::string to_line() {
    std::string line;
    each([&](const std::string& name, uint64_t& value) {
      line += fmt::format("{}{}={}", line.empty() ? "" : " ", name, value);
    });
    return line;
  }

  static Tally from_line(const std::string& line) {
    std::map<std::string, uint64_t> values;
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
      const auto equals = word.find('=');
      if (equals == std::string::npos) throw std::runtime_error("malformed result '" + line + "'");
      values[word.substr(0, equals)] = std::stoull(word.substr(equals + 1));
    }
    Tally tally;
    tally.each([&](const std::string& name, uint64_t& value) {
      const auto found = values.find(name);
      if (found == values.end()) throw std::runtime_error("result without " + name + ": '" + line + "'");
      value = found->second;
    });
    return tally;
  }

  void add(const Tally& other) {
    completed += other.completed;
    lost += other.lost;
    duplicated += other.duplicated;
    corrupted_inputs += other.corrupted_inputs;
    corrupted_outputs += other.corrupted_outputs;
    failed += other.failed;
    bytes_verified += other.bytes_verified;
    in_bytes += other.in_bytes;
    out_bytes += other.out_bytes;
    max_in = std::max(max_in, other.max_in);
    max_out = std::max(max_out, other.max_out);
    for (size_t i = 0; i < kClasses; ++i) {
      in_classes[i] += other.in_classes[i];
      out_classes[i] += other.out_classes[i];
    }
    milliseconds = std::max(milliseconds, other.milliseconds);
  }
};

// --- The caller process ---------------------------------------------------------------------------

// A caller that sees no completion for this long while tasks are in flight gives up on them and
// reports them lost, instead of hanging the bench.
constexpr auto kStallTimeout = std::chrono::seconds(60);
// How long a caller with nothing to do sleeps at most before it looks at the clock again.
constexpr auto kSleep = std::chrono::milliseconds(10);
// Failures described on stderr, per caller; the rest are only counted.
constexpr uint64_t kFailuresShown = 5;

// Keeps a window of tasks in flight through one client and checks every completion.
class Caller {
 public:
  Caller(const SoakCallerOptions& options, Client& client, Function function)
      : options_(options), client_(client), function_(std::move(function)), slots_(options.window) {
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      // Uninitialized: pages are touched as tasks need them, so small runs stay small.
      slots_[i].in.reset(new std::byte[std::max(options.max_bytes, kHeaderBytes)]);
      slots_[i].out.reset(new std::byte[options.max_bytes + kGuardBytes]);
      slots_[i].ref = {this, i};
    }
  }

  // Runs tasks [first, first + count) and counts what happened to each. With `largest_first` the
  // first window of tasks takes the largest input and output there are (the warm-up uses it, so
  // the executor's buffers have their full size before memory is measured).
  Tally run(uint64_t first, uint64_t count, bool largest_first, const char* what) {
    tally_ = Tally{};
    first_ = first;
    largest_first_ = largest_first;
    seen_.assign((count + 63) / 64, 0);
    free_.clear();
    finished_.clear();
    for (uint32_t i = static_cast<uint32_t>(slots_.size()); i-- > 0;) free_.push_back(i);
    const auto start = Clock::now();
    auto last_completion = start;
    auto next_report = start + std::chrono::seconds(10);
    uint64_t next = 0, in_flight = 0;
    // Until every task was submitted and nothing is in flight: a task whose completion never comes
    // keeps the loop going until the stall timeout.
    while (next < count || in_flight > 0) {
      while (!free_.empty() && next < count) {
        const uint32_t index = free_.back();
        free_.pop_back();
        ++in_flight;
        submit(index, next++);
      }
      client_.progress();
      if (finished_.empty() && client_.prepare_sleep()) client_.sleep(kSleep);
      const auto now = Clock::now();
      if (!finished_.empty()) {
        last_completion = now;
        while (!finished_.empty()) {
          const uint32_t index = finished_.back();
          finished_.pop_back();
          --in_flight;
          check(index);
        }
      } else if (in_flight > 0 && now - last_completion > kStallTimeout) {
        std::fprintf(stderr, "sidecore-bench soak caller %u: %s: no task completed for %lld s with %llu in flight; "
                     "giving up on them\n", options_.index, what,
                     static_cast<long long>(kStallTimeout.count()), static_cast<unsigned long long>(in_flight));
        break;
      }
      if (options_.verbose && now > next_report) {
        std::fprintf(stderr, "sidecore-bench soak caller %u: %s: %llu of %llu tasks\n", options_.index, what,
                     static_cast<unsigned long long>(tally_.completed), static_cast<unsigned long long>(count));
        next_report = now + std::chrono::seconds(10);
      }
    }
    tally_.lost = count - tally_.completed;
    tally_.milliseconds = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
    return tally_;
  }

 private:
  struct SlotRef {
    Caller* caller;
    uint32_t index;
  };
  struct Slot {
    std::unique_ptr<std::byte[]> in, out;
    SlotRef ref{};
    uint64_t task = 0;      // global task id in flight here
    TaskSizes sizes{};
    TaskId id = kNoTask;    // the client's id for it
    bool busy = false;      // a task is in flight
    bool finished = false;  // its completion came and waits to be checked
    TaskId completed_id = kNoTask;
    Completion completion;
  };

  static void on_done(void* user, TaskId id, const Completion& completion) {
    const auto* ref = static_cast<const SlotRef*>(user);
    ref->caller->completed(ref->index, id, completion);
  }

  // Only records: the checks run in the main loop, outside the client's progress call.
  void completed(uint32_t index, TaskId id, const Completion& completion) {
    Slot& slot = slots_[index];
    if (!slot.busy || slot.finished) {
      ++tally_.duplicated;  // a second completion, or one for a slot with nothing in flight
      if (tally_.duplicated <= kFailuresShown) {
        std::fprintf(stderr, "sidecore-bench soak caller %u: a completion (id %llu) for no task in flight\n",
                     options_.index, static_cast<unsigned long long>(id));
      }
      return;
    }
    slot.finished = true;
    slot.completed_id = id;
    slot.completion = completion;
    finished_.push_back(index);
  }

  void submit(uint32_t index, uint64_t offset) {
    Slot& slot = slots_[index];
    slot.task = first_ + offset;
    slot.sizes = largest_first_ && offset < slots_.size()
                     ? TaskSizes{std::max(options_.max_bytes, kHeaderBytes), options_.max_bytes}
                     : task_sizes(options_.seed, slot.task, options_.max_bytes);
    const uint64_t header[4] = {kSoakMagic, slot.task, options_.seed, slot.sizes.out_bytes};
    std::memcpy(slot.in.get(), header, sizeof header);
    fill_pattern(slot.in.get() + kHeaderBytes, slot.sizes.in_bytes - kHeaderBytes,
                 soak_key(options_.seed, slot.task, kInputStream));
    // Only the guard needs setting: stale bytes before it belong to another task id's stream,
    // which the check tells apart from this one's.
    std::memset(slot.out.get() + slot.sizes.out_bytes, static_cast<int>(kGuardByte),
                output_capacity(slot.sizes.out_bytes) - slot.sizes.out_bytes);
    slot.busy = true;
    slot.finished = false;
    slot.id = kNoTask;
    const TaskId id = client_.submit(function_, slot.in.get(), slot.sizes.in_bytes, slot.out.get(),
                                     output_capacity(slot.sizes.out_bytes), on_done, &slot.ref);
    slot.id = id;
    if (id == kNoTask && !slot.finished) {
      // The client had no room for it; it will never complete: count it and move on.
      slot.completed_id = kNoTask;
      slot.completion = Completion{ErrorKind::bad_arg, 0, 0, false};
      slot.finished = true;
      finished_.push_back(index);
    }
  }

  void check(uint32_t index) {
    Slot& slot = slots_[index];
    const uint64_t offset = slot.task - first_;
    if (seen_[offset / 64] & (uint64_t{1} << (offset % 64))) {
      ++tally_.duplicated;
    } else {
      seen_[offset / 64] |= uint64_t{1} << (offset % 64);
      ++tally_.completed;
    }
    const Completion& done = slot.completion;
    const TaskSizes sizes = slot.sizes;
    std::string problem;
    if (slot.completed_id != slot.id) {
      ++tally_.corrupted_outputs;
      problem = fmt::format("completed as id {} but submitted as {}", slot.completed_id, slot.id);
    } else if (done.error == ErrorKind::function && done.function_return == 2) {
      ++tally_.corrupted_inputs;
      problem = "the function found its input corrupted";
    } else if (done.error != ErrorKind::none) {
      ++tally_.failed;
      problem = fmt::format("failed: {} (function returned {})", to_string(done.error), done.function_return);
    } else if (done.out_bytes != sizes.out_bytes) {
      ++tally_.corrupted_outputs;
      problem = fmt::format("returned {} output bytes", done.out_bytes);
    } else if (const size_t bad = first_difference(slot.out.get(), sizes.out_bytes,
                                                   soak_key(options_.seed, slot.task, kOutputStream));
               bad != sizes.out_bytes) {
      ++tally_.corrupted_outputs;
      problem = fmt::format("output byte {} differs", bad);
    } else if (std::any_of(slot.out.get() + sizes.out_bytes, slot.out.get() + output_capacity(sizes.out_bytes),
                           [](std::byte b) { return b != kGuardByte; })) {
      ++tally_.corrupted_outputs;
      problem = "a byte after the output was written";
    } else {
      tally_.bytes_verified += sizes.in_bytes + sizes.out_bytes;
    }
    if (!problem.empty() && tally_.corrupted_inputs + tally_.corrupted_outputs + tally_.failed <= kFailuresShown) {
      std::fprintf(stderr, "sidecore-bench soak caller %u: task %llu (%zu B in, %zu B out): %s\n", options_.index,
                   static_cast<unsigned long long>(slot.task), sizes.in_bytes, sizes.out_bytes, problem.c_str());
    }
    tally_.in_bytes += sizes.in_bytes;
    tally_.out_bytes += sizes.out_bytes;
    tally_.max_in = std::max<uint64_t>(tally_.max_in, sizes.in_bytes);
    tally_.max_out = std::max<uint64_t>(tally_.max_out, sizes.out_bytes);
    ++tally_.in_classes[class_of(sizes.in_bytes)];
    ++tally_.out_classes[class_of(sizes.out_bytes)];
    slot.busy = false;
    slot.finished = false;
    free_.push_back(index);
  }

  const SoakCallerOptions& options_;
  Client& client_;
  Function function_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;      // slots with nothing in flight
  std::vector<uint32_t> finished_;  // slots whose completion waits to be checked
  std::vector<uint64_t> seen_;      // one bit per task of the run: it completed
  uint64_t first_ = 0;
  bool largest_first_ = false;
  Tally tally_;
};

void set_affinity(const std::string& cpus) {
  if (cpus.empty()) return;
  cpu_set_t mask;
  CPU_ZERO(&mask);
  const CoreSet set = CoreSet::parse(cpus);
  for (int cpu : set.cores()) CPU_SET(cpu, &mask);
  if (sched_setaffinity(0, sizeof mask, &mask) != 0) {
    throw std::runtime_error(fmt::format("cannot move to CPUs {}: {}", cpus, std::strerror(errno)));
  }
}

// --- The bench process: the executor, its memory, the callers -------------------------------------

// The executor under test: sidecore-executor as users run it, started with a card file, stopped
// with SIGTERM. The token reaches it through the environment (SIDECORE_TOKEN), as from sidecore-run.
class ExecutorChild {
 public:
  ExecutorChild(const std::string& program, const SoakOptions& options, const std::string& library) {
    char directory[] = "/tmp/sidecore-bench-soak.XXXXXX";
    if (mkdtemp(directory) == nullptr) {
      throw std::runtime_error(std::string("cannot create a temporary directory: ") + std::strerror(errno));
    }
    directory_ = directory;
    const std::string card_file = directory_ + "/card";
    SpawnOptions spawn;
    spawn.argv = {program, "--cores", options.executor_cores, "--provider", options.provider,
                  "--poll", "adaptive", "--preload", library, "--credits",
                  std::to_string(std::max(64u, options.window)), "--card-file", card_file};
    if (options.verbose) spawn.argv.push_back("--stats");
    spawn.out = Stdio::null();  // it prints its card there too; the bench's stdout carries only the JSON
    spawn.parent_death_signal = SIGTERM;  // should the bench be killed outright
    try {
      child_ = ChildProcess::spawn(spawn);
      card_ = wait_for_card(card_file, card_writer(child_, program), std::chrono::seconds(60));
    } catch (const std::exception& e) {
      child_.stop(std::chrono::seconds(2));
      remove_directory();
      throw std::runtime_error(std::string("the executor did not start: ") + e.what());
    }
  }

  ~ExecutorChild() {
    stop();
    remove_directory();
  }
  ExecutorChild(const ExecutorChild&) = delete;
  ExecutorChild& operator=(const ExecutorChild&) = delete;

  pid_t pid() const { return child_.pid(); }
  const std::string& card() const { return card_; }

  // SIGTERM, then SIGKILL if it has not exited within 10 s. True when it exited with status 0.
  bool stop() {
    const ExitStatus status = child_.stop(std::chrono::seconds(10));
    if (child_.needed_kill()) {
      std::fprintf(stderr, "sidecore-bench: warning: the executor did not stop within 10 s; killed it\n");
    }
    return status.success();
  }

 private:
  void remove_directory() {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

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

// `root` and its descendants, from the parent pid in every /proc/N/stat.
std::vector<pid_t> process_tree(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> children;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string text;
    if (!std::getline(stat, text)) continue;  // gone meanwhile
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
    const auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 1));
    std::string state;
    pid_t parent = 0;
    if (rest >> state >> parent) children[parent].push_back(static_cast<pid_t>(std::stol(name)));
  }
  std::vector<pid_t> tree{root};
  for (size_t i = 0; i < tree.size(); ++i) {
    const auto found = children.find(tree[i]);
    // One push_back at a time: g++ 14 takes the range insert here for an overflow (-Wstringop-overflow).
    if (found == children.end()) continue;
    for (pid_t child : found->second) tree.push_back(child);
  }
  return tree;
}

Memory read_memory(pid_t root) {
  Memory total;
  for (pid_t pid : process_tree(root)) {
    Memory memory;
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
      long* field = nullptr;
      if (line.starts_with("VmRSS:")) field = &memory.rss;
      if (line.starts_with("VmHWM:")) field = &memory.hwm;
      if (line.starts_with("RssAnon:")) field = &memory.anon;
      if (line.starts_with("RssFile:")) field = &memory.file;
      if (line.starts_with("RssShmem:")) field = &memory.shmem;
      if (field != nullptr) *field = std::strtol(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
    if (memory.rss < 0) continue;  // exited, or a zombie
    ++total.processes;
    for (auto field : {&Memory::rss, &Memory::hwm, &Memory::anon, &Memory::file, &Memory::shmem}) {
      total.*field = std::max(total.*field, 0L) + std::max(memory.*field, 0L);
    }
  }
  return total;
}

std::string describe(const Memory& memory) {
  return fmt::format("VmRSS {} KiB (anon {}, file {}, shmem {}; VmHWM {}) in {} process{}", memory.rss, memory.anon,
                     memory.file, memory.shmem, memory.hwm, memory.processes, memory.processes == 1 ? "" : "es");
}

// Samples the executor's VmRSS every 100 ms on a thread of its own while the callers run, and
// keeps the peak. With -v it also prints the figure every 10 s.
class RssSampler {
 public:
  RssSampler(pid_t pid, long start_kib, bool verbose) : pid_(pid), peak_(start_kib), verbose_(verbose) {
    thread_ = std::thread([this] { sample(); });
  }
  ~RssSampler() { stop(); }
  RssSampler(const RssSampler&) = delete;
  RssSampler& operator=(const RssSampler&) = delete;

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  long peak() const { return peak_.load(); }
  uint64_t samples() const { return samples_.load(); }

 private:
  void sample() {
    const auto start = Clock::now();
    auto next_report = start + std::chrono::seconds(10);
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; })) {
      const long rss = read_memory(pid_).rss;
      if (rss < 0) {
        std::fprintf(stderr, "sidecore-bench: warning: cannot read the executor's memory (has it exited?)\n");
        return;
      }
      samples_.fetch_add(1);
      if (rss > peak_.load()) peak_.store(rss);
      const auto now = Clock::now();
      if (verbose_ && now > next_report) {
        std::fprintf(stderr, "sidecore-bench soak: %.0f s, executor VmRSS %ld KiB (peak %ld)\n",
                     std::chrono::duration<double>(now - start).count(), rss, peak_.load());
        next_report = now + std::chrono::seconds(10);
      }
    }
  }

  pid_t pid_;
  std::atomic<long> peak_;
  std::atomic<uint64_t> samples_{0};
  bool verbose_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// One caller process: the bench re-executed as `soak-caller`, with a control pipe (ServerProcess).
struct CallerProcess {
  unsigned index;
  std::unique_ptr<ServerProcess> process;
  Tally tally;
};

std::string expect_from(CallerProcess& caller, std::string_view keyword, std::chrono::seconds timeout) {
  try {
    return caller.process->expect(keyword, timeout);
  } catch (const std::exception& e) {
    // ServerProcess names its child "the bench server"; here it is a caller.
    std::string message = e.what();
    for (size_t at; (at = message.find("bench server")) != std::string::npos;) message.replace(at, 12, "caller");
    if (message.starts_with("caller: ")) message.erase(0, 8);
    throw std::runtime_error(fmt::format("soak caller {}: {}", caller.index, message));
  }
}

void print_sizes(const Tally& total) {
  auto line = [&](const char* what, const uint64_t* classes, uint64_t bytes, uint64_t largest) {
    const uint64_t tasks = total.completed == 0 ? 1 : total.completed;
    std::string counts;
    for (size_t i = 0; i < kClasses; ++i) {
      counts += fmt::format("{}{} {} ({:.2f} %)", counts.empty() ? "" : ", ", kSizeClasses[i].name, classes[i],
                            100.0 * static_cast<double>(classes[i]) / static_cast<double>(tasks));
    }
    const std::string mean = format_bytes(std::round(static_cast<double>(bytes) / static_cast<double>(tasks)));
    std::fprintf(stderr, "sidecore-bench soak: %s sizes used: %s; mean %s, largest %s, %.2f GiB in all\n", what,
                 counts.c_str(), mean.c_str(), format_bytes(static_cast<double>(largest)).c_str(),
                 static_cast<double>(bytes) / (1 << 30));
  };
  line("input", total.in_classes, total.in_bytes, total.max_in);
  line("output", total.out_classes, total.out_bytes, total.max_out);
}

}  // namespace

int run_soak_caller(const SoakCallerOptions& options) {
  const auto control = open_child_control("sidecore-bench soak-caller");
  if (!control) return 1;
  try {
    // Before the client starts any thread, so that all of them stay off the executor's CPUs.
    set_affinity(options.cpus);
    Client client = Client::from_environment();
    Function function = client.lookup(options.library, "soak");
    Caller caller(options, client, function);

    // Warm-up: two windows of tasks, the first at the largest sizes, so the executor's buffers and
    // registrations, the providers' connections and this process's buffers are all in place
    // before the bench samples the executor's starting memory. Warm-up ids have the top bit set,
    // apart from every id of the run.
    const uint64_t warmup_first = (uint64_t{1} << 63) | (uint64_t{options.index} << 40);
    const Tally warmup = caller.run(warmup_first, 2 * uint64_t{options.window}, true, "warm-up");
    if (!warmup.clean()) throw std::runtime_error("the warm-up failed: " + Tally(warmup).to_line());
    control->say("ready");

    std::string line;
    if (!control->next(line)) return 1;  // the bench is gone
    if (line != "go") throw std::runtime_error("expected 'go', got '" + line + "'");
    Tally tally = caller.run(options.first, options.count, false, "run");
    control->say("result " + tally.to_line());

    while (control->next(line)) {
      if (line == "quit") break;
    }
    control->say("bye");
    return 0;
  } catch (const std::exception& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    control->say("error " + message);
    return 1;
  }
}

int run_soak(const SoakOptions& options, const char* program) {
  try {
    use_provider_on_loopback(options.provider);

    if (options.max_bytes < kHeaderBytes) {
      throw std::runtime_error(fmt::format("--max-bytes must be at least {} (the input's header)", kHeaderBytes));
    }
    const double buffers = 2.0 * options.callers * options.window * static_cast<double>(options.max_bytes);
    if (buffers > 8.0 * (1 << 30)) {
      throw std::runtime_error(fmt::format("--callers x --window x --max-bytes x 2 needs {:.1f} GiB of caller buffers "
                                           "(at most 8 GiB)", buffers / (1 << 30)));
    }
    if (options.tasks < options.callers) throw std::runtime_error("--tasks must be at least --callers");

    CoreSet executor_cores;
    try {
      executor_cores = CoreSet::parse(options.executor_cores);
    } catch (const CoreSetError& e) {
      throw std::runtime_error("--executor-cores: " + std::string(e.what()));
    }
    const CoreSet allowed = CoreSet::allowed();
    if (auto missing = executor_cores.minus(allowed); !missing.empty()) {
      throw std::runtime_error("--executor-cores " + missing.to_string() + " are not available to this process");
    }
    // The callers run on the CPUs the executor leaves idle, as ranks do next to an executor on
    // the idle cores of their job; with none left they share the executor's.
    CoreSet caller_cpus = allowed.minus(executor_cores);
    if (caller_cpus.empty()) {
      std::fprintf(stderr, "sidecore-bench: warning: the executor takes every CPU; the callers share them\n");
      caller_cpus = allowed;
    }

    const std::string library = find_library(options.library, program);
    const std::string executor_program = find_program(
        options.executor, {"sidecore-executor", "../runtime/sidecore-executor", SIDECORE_BENCH_EXECUTOR_BUILD_PATH},
        "sidecore-executor");
    const uint64_t seed = options.seed != 0 ? options.seed : (random_u64() | 1);

    if (const double others = other_runnable_threads(); others >= 0.5) {
      std::fprintf(stderr, "sidecore-bench: warning: other programs are using the CPUs (%.1f threads runnable on "
                   "average besides this one): the rate will be low and noisy\n", others);
    }
    std::fprintf(stderr, "sidecore-bench soak: %llu tasks from %u caller%s (%u in flight each, CPUs %s), executor "
                 "on CPUs %s over %s, seed %llu\n", static_cast<unsigned long long>(options.tasks), options.callers,
                 options.callers == 1 ? "" : "s", options.window, caller_cpus.to_string().c_str(),
                 executor_cores.to_string().c_str(), options.provider.c_str(), static_cast<unsigned long long>(seed));
    std::fprintf(stderr, "sidecore-bench soak: input and output sizes, each drawn on its own: %s\n",
                 describe_sizes(options.max_bytes).c_str());

    // A child that dies shows up as an error on its control pipe, not as a silent SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    // The executor and the callers take the token from the environment (argv is world-readable).
    setenv("SIDECORE_TOKEN", generate_token().c_str(), 1);
    ExecutorChild executor(executor_program, options, library);
    setenv("SIDECORE_EXECUTOR", executor.card().c_str(), 1);

    std::vector<CallerProcess> callers;
    for (unsigned i = 0; i < options.callers; ++i) {
      const uint64_t first = options.tasks * i / options.callers;
      const uint64_t end = options.tasks * (i + 1) / options.callers;
      std::vector<std::string> arguments{"soak-caller", "--index", std::to_string(i), "--first", std::to_string(first),
                                         "--count", std::to_string(end - first), "--max-bytes",
                                         std::to_string(options.max_bytes), "--seed", std::to_string(seed), "--window",
                                         std::to_string(options.window), "--library", library, "--cpus",
                                         caller_cpus.to_string()};
      if (options.verbose) arguments.push_back("-v");
      callers.push_back({i, std::make_unique<ServerProcess>(arguments), {}});
    }
    for (auto& caller : callers) expect_from(caller, "ready", std::chrono::seconds(300));

    // Memory after the warm-up, when every caller is connected and every buffer has its size.
    const Memory start_memory = read_memory(executor.pid());
    if (start_memory.rss < 0) throw std::runtime_error("cannot read the executor's VmRSS");
    RssSampler sampler(executor.pid(), start_memory.rss, options.verbose);
    const auto start = Clock::now();
    for (auto& caller : callers) caller.process->send("go");
    Tally total;
    // No time limit here: a caller whose tasks stop completing reports them lost after 60 s.
    for (auto& caller : callers) {
      caller.tally = Tally::from_line(expect_from(caller, "result", std::chrono::hours(24 * 7)));
      total.add(caller.tally);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    sampler.stop();
    const Memory end_memory = read_memory(executor.pid());
    const long peak = std::max(sampler.peak(), end_memory.rss);
    for (auto& caller : callers) {
      if (!caller.process->quit()) {
        std::fprintf(stderr, "sidecore-bench: warning: soak caller %u did not exit cleanly\n", caller.index);
      }
    }
    const Memory after_memory = read_memory(executor.pid());
    if (!executor.stop()) std::fprintf(stderr, "sidecore-bench: warning: the executor did not exit cleanly\n");

    print_sizes(total);
    if (options.verbose) {
      for (auto& caller : callers) {
        std::fprintf(stderr, "sidecore-bench soak: caller %u: %llu tasks in %.1f s\n", caller.index,
                     static_cast<unsigned long long>(caller.tally.completed), caller.tally.milliseconds / 1000.0);
      }
      std::fprintf(stderr, "sidecore-bench soak: executor memory at start: %s\n", describe(start_memory).c_str());
      std::fprintf(stderr, "sidecore-bench soak: executor memory at end:   %s\n", describe(end_memory).c_str());
      std::fprintf(stderr, "sidecore-bench soak: executor memory once the callers had left: %s\n",
                   describe(after_memory).c_str());
      std::fprintf(stderr, "sidecore-bench soak: %llu memory samples, %.2f GB/s of task data moved and checked\n",
                   static_cast<unsigned long long>(sampler.samples()),
                   static_cast<double>(total.in_bytes + total.out_bytes) / seconds / 1e9);
    }

    const uint64_t corrupted = total.corrupted_inputs + total.corrupted_outputs;
    // Tasks that completed and passed every check; in a clean run, all of them.
    const uint64_t good = total.completed - std::min(total.completed, corrupted + total.failed);
    // null where the executor could no longer be read (it died).
    const bool ended = end_memory.rss >= 0;
    const std::string end_kib = ended ? std::to_string(end_memory.rss) : "null";
    const std::string growth_kib = ended ? std::to_string(end_memory.rss - start_memory.rss) : "null";
    std::printf("%s\n",
                fmt::format("{{\"bench\":\"soak\",\"provider\":\"{}\",\"tasks\":{},\"callers\":{},\"max_bytes\":{},"
                            "\"seed\":{},\"seconds\":{:.3f},\"tasks_per_s\":{:.0f},\"bytes_verified\":{},\"lost\":{},"
                            "\"duplicated\":{},\"corrupted\":{},\"failed\":{},\"rss_start_kib\":{},\"rss_peak_kib\":{},"
                            "\"rss_end_kib\":{},\"rss_growth_kib\":{}}}",
                            options.provider, options.tasks, options.callers, options.max_bytes, seed, seconds,
                            static_cast<double>(good) / seconds, total.bytes_verified, total.lost, total.duplicated,
                            corrupted, total.failed, start_memory.rss, peak, end_kib, growth_kib)
                    .c_str());
    std::fflush(stdout);
    if (!total.clean()) {
      std::fprintf(stderr, "sidecore-bench soak: error: %llu lost, %llu duplicated, %llu corrupted (%llu inputs, %llu "
                   "outputs), %llu failed\n", static_cast<unsigned long long>(total.lost),
                   static_cast<unsigned long long>(total.duplicated), static_cast<unsigned long long>(corrupted),
                   static_cast<unsigned long long>(total.corrupted_inputs),
                   static_cast<unsigned long long>(total.corrupted_outputs),
                   static_cast<unsigned long long>(total.failed));
      return 1;
    }
    return 0;
  } catch (const fabric::FabricError& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  } catch (const Error& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sidecore-bench: error: %s\n", e.what());
  }
  return 1;
}

void SoakCommand::add_to(CLI::App& app) {
  soak_ = app.add_subcommand(
      "soak",
      "Correctness and memory over a long run: one executor (sidecore-executor, the bench function library "
      "preloaded) and --callers caller processes that share --tasks tasks of function 'soak' with random input and "
      "output sizes (most small, a few up to --max-bytes). The function checks every input byte; each caller checks "
      "every output byte and size, and that every task completed exactly once. The executor's VmRSS is sampled after "
      "a warm-up, every 100 ms and at the end. Prints one JSON object; exits non-zero if any task was lost, "
      "duplicated, corrupted or failed.");
  soak_->add_option("--tasks", options_.tasks, "tasks in all, split evenly over the callers")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40))
      ->capture_default_str();
  soak_->add_option("--callers", options_.callers, "caller processes, each with its own sidecore::Client")
      ->check(CLI::Range(1u, 64u))
      ->capture_default_str();
  soak_->add_option("--max-bytes", max_bytes_text_, "largest input and output of a task; K, M, G suffixes")
      ->capture_default_str();
  soak_->add_option("--provider", options_.provider, "libfabric provider: shm, tcp;ofi_rxm or net")
      ->capture_default_str();
  soak_->add_option("--seed", options_.seed, "seed of the sizes and byte patterns; 0: a random one (printed)")
      ->capture_default_str();
  soak_->add_option("--executor-cores", options_.executor_cores,
                    "CPUs of the executor's workers (sidecore-executor --cores); the callers run on the others")
      ->capture_default_str();
  soak_->add_option("--window", options_.window, "tasks each caller keeps in flight")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  soak_->add_option("--library", options_.library,
                    "bench function library (default: libsidecore_bench_functions.so next to the binary)");
  soak_->add_option("--executor", options_.executor,
                    "sidecore-executor to start (default: next to the binary or in the build tree, else PATH)");
  soak_->add_flag("-v,--verbose", options_.verbose,
                  "progress every 10 s, per-caller times, the executor's memory breakdown and summary on stderr");

  // A caller process: re-executed by the bench itself, hidden from --help.
  soak_caller_ = app.add_subcommand("soak-caller", "internal: a caller process of soak")->group("");
  soak_caller_->add_option("--index", caller_.index)->required();
  soak_caller_->add_option("--first", caller_.first)->required();
  soak_caller_->add_option("--count", caller_.count)->required();
  soak_caller_->add_option("--max-bytes", caller_.max_bytes)->required();
  soak_caller_->add_option("--seed", caller_.seed)->required();
  soak_caller_->add_option("--window", caller_.window)->required()->check(CLI::Range(1u, 1024u));
  soak_caller_->add_option("--library", caller_.library)->required();
  soak_caller_->add_option("--cpus", caller_.cpus);
  soak_caller_->add_flag("-v,--verbose", caller_.verbose);
}

bool SoakCommand::selected() const {
  return (soak_ != nullptr && soak_->parsed()) || (soak_caller_ != nullptr && soak_caller_->parsed());
}

int SoakCommand::run(const char* program) {
  if (soak_caller_->parsed()) {
    sidecore::set_log_level_from_env();
    return run_soak_caller(caller_);
  }
  std::string error;
  const auto max_bytes = parse_byte_count(max_bytes_text_, error);
  if (!max_bytes) {
    std::fprintf(stderr, "sidecore-bench: error: --max-bytes %s\n", error.c_str());
    return 2;
  }
  options_.max_bytes = *max_bytes;
  // Quiet libraries unless asked; the executor and the callers inherit the level.
  setenv("SIDECORE_LOG_LEVEL", options_.verbose ? "info" : "warn", 0);
  sidecore::set_log_level_from_env();
  return run_soak(options_, program);
}

}  // namespace sidecore::bench
