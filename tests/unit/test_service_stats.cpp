// Service statistics: the histogram's quantiles and the one-line summary --offload-stats prints.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "service_stats.hpp"

namespace sidecore {
namespace {

using ::testing::MatchesRegex;

// The histogram resolves a quarter of a power of two: a reported quantile is at or above the true
// value and less than 25% (plus one nanosecond at the bottom) above it.
void expect_resolves(uint64_t reported, uint64_t actual) {
  EXPECT_GT(reported, actual);
  EXPECT_LE(reported, actual + actual / 4 + 1) << "reported " << reported << " for " << actual;
}

TEST(ServiceStats, BucketsCoverTheirValues) {
  for (uint64_t ns : {uint64_t{0}, uint64_t{1}, uint64_t{3}, uint64_t{4}, uint64_t{5}, uint64_t{7}, uint64_t{8},
                      uint64_t{1000}, uint64_t{1023}, uint64_t{1024}, uint64_t{123456789},
                      (uint64_t{1} << 40) - 1}) {
    const size_t bucket = ServiceStats::bucket_of(ns);
    ASSERT_LT(bucket, kServiceBuckets) << ns;
    expect_resolves(ServiceStats::bucket_upper(bucket), ns);
  }
}

TEST(ServiceStats, BucketsAreMonotonic) {
  size_t previous = 0;
  for (uint64_t ns = 0; ns < (uint64_t{1} << 41); ns = ns * 9 / 8 + 1) {
    const size_t bucket = ServiceStats::bucket_of(ns);
    EXPECT_GE(bucket, previous) << ns;
    previous = bucket;
  }
}

TEST(ServiceStats, HugeTimesLandInTheLastBucket) {
  EXPECT_EQ(ServiceStats::bucket_of(UINT64_MAX), kServiceBuckets - 1);
  EXPECT_EQ(ServiceStats::bucket_of(uint64_t{1} << 50), kServiceBuckets - 1);
}

TEST(ServiceStats, QuantilesOfKnownServiceTimes) {
  ServiceStats stats;
  for (int i = 0; i < 98; ++i) stats.record_task(1000, 10, 20);
  stats.record_task(1'000'000, 10, 20);
  stats.record_task(1'000'000, 10, 20);
  const auto snapshot = stats.snapshot();
  EXPECT_EQ(snapshot.tasks, 100u);
  EXPECT_EQ(snapshot.bytes_in, 1000u);
  EXPECT_EQ(snapshot.bytes_out, 2000u);
  EXPECT_EQ(snapshot.service_ns, 98u * 1000 + 2'000'000);
  expect_resolves(snapshot.quantile_ns(0.0), 1000);
  expect_resolves(snapshot.quantile_ns(0.5), 1000);
  expect_resolves(snapshot.quantile_ns(0.98), 1000);
  expect_resolves(snapshot.quantile_ns(0.99), 1'000'000);
  expect_resolves(snapshot.quantile_ns(1.0), 1'000'000);
  EXPECT_EQ(snapshot.quantile_ns(0.5), 1024u);        // 1000 ns sits in [896, 1024)
  EXPECT_EQ(snapshot.quantile_ns(1.0), 1u << 20);     // 1e6 ns sits in [917504, 1048576)
}

TEST(ServiceStats, QuantileWithoutTasksIsZero) {
  ServiceStats stats;
  EXPECT_EQ(stats.snapshot().quantile_ns(0.5), 0u);
  EXPECT_EQ(stats.snapshot().quantile_ns(0.99), 0u);
  EXPECT_EQ(StatsSnapshot{}.quantile_ns(1.0), 0u);
}

TEST(ServiceStats, SingleTask) {
  ServiceStats stats;
  stats.record_task(5000, 1, 2);
  const auto snapshot = stats.snapshot();
  expect_resolves(snapshot.quantile_ns(0.01), 5000);
  expect_resolves(snapshot.quantile_ns(0.99), 5000);
}

TEST(ServiceStats, SnapshotCountsBusyTime) {
  ServiceStats stats;
  stats.add_busy(300);
  stats.add_busy(700);
  EXPECT_EQ(stats.snapshot().busy_ns, 1000u);
  EXPECT_EQ(stats.snapshot().tasks, 0u);
}

TEST(ServiceStats, SnapshotsAddUp) {
  ServiceStats a, b;
  for (int i = 0; i < 50; ++i) a.record_task(1000, 1, 2);
  for (int i = 0; i < 50; ++i) b.record_task(1'000'000, 3, 4);
  a.add_busy(10);
  b.add_busy(20);
  StatsSnapshot total;
  total += a.snapshot();
  total += b.snapshot();
  EXPECT_EQ(total.tasks, 100u);
  EXPECT_EQ(total.bytes_in, 50u * 1 + 50u * 3);
  EXPECT_EQ(total.bytes_out, 50u * 2 + 50u * 4);
  EXPECT_EQ(total.busy_ns, 30u);
  EXPECT_EQ(total.service_ns, 50u * 1000 + 50u * 1'000'000);
  EXPECT_EQ(total.histogram[ServiceStats::bucket_of(1000)], 50u);
  EXPECT_EQ(total.histogram[ServiceStats::bucket_of(1'000'000)], 50u);
  expect_resolves(total.quantile_ns(0.5), 1000);
  expect_resolves(total.quantile_ns(0.51), 1'000'000);
  // += returns the left side, so sums chain.
  StatsSnapshot twice;
  (twice += a.snapshot()) += a.snapshot();
  EXPECT_EQ(twice.tasks, 100u);
}

TEST(ServiceStats, SummaryLine) {
  ServiceStats stats;
  for (int i = 0; i < 4; ++i) stats.record_task(2000, 100, 10);
  stats.add_busy(500'000'000);
  // 0.5 s busy over 1 s on 2 workers is 25%; 2000 ns sits in [1792, 2048).
  EXPECT_EQ(format_summary(stats.snapshot(), 1.0, 2),
            "tasks=4 bytes_in=400 bytes_out=40 busy=25.0% mean_us=2.00 p99_us=2.05");
}

TEST(ServiceStats, SummaryLineWithoutTasksOrTime) {
  EXPECT_EQ(format_summary(StatsSnapshot{}, 0.0, 0),
            "tasks=0 bytes_in=0 bytes_out=0 busy=0.0% mean_us=0.00 p99_us=0.00");
}

TEST(ServiceStats, SummaryLineFieldsInOrder) {
  ServiceStats stats;
  stats.record_task(123456, 7, 8);
  stats.add_busy(1000);
  EXPECT_THAT(format_summary(stats.snapshot(), 0.5, 16),
              MatchesRegex("tasks=1 bytes_in=7 bytes_out=8 busy=[0-9]+\\.[0-9]% mean_us=123\\.46 "
                           "p99_us=[0-9]+\\.[0-9][0-9]"));
}

}  // namespace
}  // namespace sidecore
