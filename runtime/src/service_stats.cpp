#include "service_stats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#ifdef SIDECORE_TASK_CLOCK_TSC
#include <cpuid.h>
#endif

namespace sidecore {

void TaskClock::calibrate() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
#ifdef SIDECORE_TASK_CLOCK_TSC
    unsigned a = 0, b = 0, c = 0, d = 0;
    // CPUID 0x80000007, EDX bit 8: the TSC runs at a constant rate in every power state.
    if (__get_cpuid(0x80000007, &a, &b, &c, &d) == 0 || (d & (1u << 8)) == 0) return;
    // And Linux trusts it (synchronized across CPUs, stable under this hypervisor) where it says so.
    if (std::FILE* file = std::fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r")) {
      char name[32] = {};
      const bool read = std::fgets(name, sizeof name, file) != nullptr;
      std::fclose(file);
      if (read && std::strncmp(name, "tsc", 3) != 0) return;
    }
    using Steady = std::chrono::steady_clock;
    // Each end pairs a TSC read with the steady_clock read it brackets, so a preemption between
    // the two reads shows up as a wide bracket and that sample is taken again.
    auto sample = [](Steady::time_point& at, uint64_t& tsc) {
      for (int attempt = 0; attempt < 100; ++attempt) {
        const uint64_t before = __builtin_ia32_rdtsc();
        at = Steady::now();
        const uint64_t after = __builtin_ia32_rdtsc();
        tsc = before + (after - before) / 2;
        if (after - before < 1000) return;  // about 0.4 us at 2.3 GHz
      }
    };
    Steady::time_point t0, t1;
    uint64_t c0 = 0, c1 = 0;
    sample(t0, c0);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    sample(t1, c1);
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
    if (c1 <= c0 || ns <= 0) return;
    ns_per_tick_.store(ns / static_cast<double>(c1 - c0), std::memory_order_relaxed);
    tsc_.store(true, std::memory_order_relaxed);
#endif
  });
}

size_t ServiceStats::bucket_of(uint64_t ns) noexcept {
  if (ns < 4) return static_cast<size_t>(ns);
  const unsigned octave = 63 - std::countl_zero(ns);  // ns in [2^octave, 2^(octave+1))
  const unsigned quarter = static_cast<unsigned>((ns >> (octave - 2)) & 3);
  const size_t bucket = octave * 4 + quarter;
  return bucket < kServiceBuckets ? bucket : kServiceBuckets - 1;
}

uint64_t ServiceStats::bucket_upper(size_t bucket) noexcept {
  if (bucket < 8) return bucket < 4 ? bucket + 1 : 4;  // buckets 4..7 are never used (see bucket_of)
  if (bucket >= kServiceBuckets) bucket = kServiceBuckets - 1;
  const unsigned octave = static_cast<unsigned>(bucket / 4), quarter = static_cast<unsigned>(bucket % 4);
  return (uint64_t{1} << octave) + (uint64_t{quarter + 1} << (octave - 2));
}

void ServiceStats::record_task(uint64_t service_ns, uint64_t bytes_in, uint64_t bytes_out) noexcept {
  bump(tasks_, 1);
  bump(bytes_in_, bytes_in);
  bump(bytes_out_, bytes_out);
  bump(service_ns_, service_ns);
  bump(histogram_[bucket_of(service_ns)], 1);
}

StatsSnapshot ServiceStats::snapshot() const noexcept {
  StatsSnapshot s;
  s.tasks = tasks_.load(std::memory_order_relaxed);
  s.bytes_in = bytes_in_.load(std::memory_order_relaxed);
  s.bytes_out = bytes_out_.load(std::memory_order_relaxed);
  s.busy_ns = busy_ns_.load(std::memory_order_relaxed);
  s.service_ns = service_ns_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kServiceBuckets; ++i) s.histogram[i] = histogram_[i].load(std::memory_order_relaxed);
  return s;
}

StatsSnapshot& StatsSnapshot::operator+=(const StatsSnapshot& other) noexcept {
  tasks += other.tasks;
  bytes_in += other.bytes_in;
  bytes_out += other.bytes_out;
  busy_ns += other.busy_ns;
  service_ns += other.service_ns;
  for (size_t i = 0; i < kServiceBuckets; ++i) histogram[i] += other.histogram[i];
  return *this;
}

uint64_t StatsSnapshot::quantile_ns(double q) const noexcept {
  if (tasks == 0) return 0;
  q = std::isnan(q) ? 0.0 : std::clamp(q, 0.0, 1.0);
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(tasks))));
  uint64_t seen = 0;
  for (size_t i = 0; i < kServiceBuckets; ++i) {
    seen += histogram[i];
    if (seen >= rank) return ServiceStats::bucket_upper(i);
  }
  return ServiceStats::bucket_upper(kServiceBuckets - 1);
}

std::string format_summary(const StatsSnapshot& stats, double wall_seconds, size_t workers) {
  const double capacity_ns = wall_seconds * 1e9 * static_cast<double>(workers);
  const double busy = capacity_ns > 0 ? 100.0 * static_cast<double>(stats.busy_ns) / capacity_ns : 0.0;
  const double mean_us = stats.tasks ? static_cast<double>(stats.service_ns) / static_cast<double>(stats.tasks) / 1e3 : 0.0;
  return fmt::format("tasks={} bytes_in={} bytes_out={} busy={:.1f}% mean_us={:.2f} p99_us={:.2f}", stats.tasks,
                     stats.bytes_in, stats.bytes_out, busy, mean_us, static_cast<double>(stats.quantile_ns(0.99)) / 1e3);
}

}  // namespace sidecore
