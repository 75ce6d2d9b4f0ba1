// The caller process of sidecore-bench soak (the hidden `soak-caller` subcommand): one
// sidecore::Client, a window of checked tasks in flight, a tally reported on the control pipe.
#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "control_channel.hpp"
#include "core_set.hpp"
#include "sidecore/sidecore.hpp"
#include "soak/soak.hpp"
#include "soak/tasks.hpp"

namespace sidecore::bench {
namespace {

using namespace soak;
using Clock = std::chrono::steady_clock;

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
        std::fprintf(stderr,
                     "sidecore-bench soak caller %u: %s: no task completed for %lld s with %llu in flight; "
                     "giving up on them\n",
                     options_.index, what, static_cast<long long>(kStallTimeout.count()),
                     static_cast<unsigned long long>(in_flight));
        break;
      }
      if (options_.verbose && now > next_report) {
        std::fprintf(stderr, "sidecore-bench soak caller %u: %s: %llu of %llu tasks\n", options_.index, what,
                     static_cast<unsigned long long>(tally_.completed), static_cast<unsigned long long>(count));
        next_report = now + std::chrono::seconds(10);
      }
    }
    tally_.lost = count - tally_.completed;
    tally_.milliseconds =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
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
    uint64_t task = 0;  // global task id in flight here
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
    } else if (const size_t bad =
                   first_difference(slot.out.get(), sizes.out_bytes, soak_key(options_.seed, slot.task, kOutputStream));
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

}  // namespace sidecore::bench
