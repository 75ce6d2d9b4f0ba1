#include "service_stats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>

namespace sidecore {

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
