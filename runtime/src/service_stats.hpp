// Per-worker counters, written by the worker thread only and read by others at any time.
// Counters may be read mid-update by another thread; each value is still one the worker wrote.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

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

// One line: "tasks=... bytes_in=... bytes_out=... busy=...% mean_us=... p99_us=...", where busy is
// the share of the workers' wall time spent in functions.
std::string format_summary(const StatsSnapshot& stats, double wall_seconds, size_t workers);

}  // namespace sidecore
