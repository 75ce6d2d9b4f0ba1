// Per-worker counters, written by the worker thread only and read by others at any time.
// Counters may be read mid-update by another thread; each value is still one the worker wrote.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SIDECORE_TASK_CLOCK_TSC 1
#endif

namespace sidecore {

// Service-time histogram: 4 buckets per power of two of nanoseconds, up to 2^40 ns.
inline constexpr size_t kServiceBuckets = 41 * 4;

// A plain copy of the counters, which can be summed over workers.
struct StatsSnapshot {
  uint64_t tasks = 0, bytes_in = 0, bytes_out = 0, busy_ns = 0, service_ns = 0;
  std::array<uint64_t, kServiceBuckets> histogram{};

  StatsSnapshot& operator+=(const StatsSnapshot& other) noexcept;
  // Upper bound of the bucket holding quantile q (0..1) of service times, in ns; 0 without tasks.
  uint64_t quantile_ns(double q) const noexcept;
};

class ServiceStats {
 public:
  void record_task(uint64_t service_ns, uint64_t bytes_in, uint64_t bytes_out) noexcept;
  void add_busy(uint64_t ns) noexcept { bump(busy_ns_, ns); }
  StatsSnapshot snapshot() const noexcept;

  static size_t bucket_of(uint64_t ns) noexcept;
  static uint64_t bucket_upper(size_t bucket) noexcept;

 private:
  // One writer (the worker thread): a plain load and store, not a locked read-modify-write.
  static void bump(std::atomic<uint64_t>& counter, uint64_t by) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
  std::atomic<uint64_t> tasks_{0}, bytes_in_{0}, bytes_out_{0}, busy_ns_{0}, service_ns_{0};
  std::array<std::atomic<uint64_t>, kServiceBuckets> histogram_{};
};

// The clock a worker times its tasks with, read twice per task on the data path. Where the CPU has
// an invariant time-stamp counter (CPUID says so) and Linux uses it as its clocksource (so it is
// synchronized across CPUs and stable under the hypervisor), a tick is one TSC cycle: reading it
// costs under half a steady_clock read (24 against 54 cycles on the development VM, where the two
// reads of every task were the largest cost of the worker's own code: 64 B round trips on shm went
// from 1.28 to 1.22 times the raw libfabric ones). Elsewhere a tick is a steady_clock nanosecond.
// Ticks become nanoseconds with a rate measured once per process against steady_clock (a 2 ms
// sleep, in the first call of calibrate(), which the Worker constructor makes).
class TaskClock {
 public:
  static uint64_t now() noexcept {
#ifdef SIDECORE_TASK_CLOCK_TSC
    if (tsc_.load(std::memory_order_relaxed)) return __builtin_ia32_rdtsc();
#endif
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
  }
  static uint64_t to_ns(uint64_t ticks) noexcept {
    return tsc_.load(std::memory_order_relaxed)
               ? static_cast<uint64_t>(static_cast<double>(ticks) * ns_per_tick_.load(std::memory_order_relaxed))
               : ticks;
  }
  static uint64_t from_ns(uint64_t ns) noexcept {
    return tsc_.load(std::memory_order_relaxed)
               ? static_cast<uint64_t>(static_cast<double>(ns) / ns_per_tick_.load(std::memory_order_relaxed))
               : ns;
  }
  // Decides between TSC and steady_clock and measures the TSC's rate; idempotent, thread-safe.
  // Call it before taking the first tick: ticks taken before it are steady_clock nanoseconds.
  static void calibrate() noexcept;
  static bool uses_tsc() noexcept { return tsc_.load(std::memory_order_relaxed); }

 private:
  static inline std::atomic<bool> tsc_{false};
  static inline std::atomic<double> ns_per_tick_{1.0};
};

// One line: "tasks=... bytes_in=... bytes_out=... busy=...% mean_us=... p99_us=...", where busy is
// the share of the workers' wall time spent in functions.
std::string format_summary(const StatsSnapshot& stats, double wall_seconds, size_t workers);

}  // namespace sidecore
