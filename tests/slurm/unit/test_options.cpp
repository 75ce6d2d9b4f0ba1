#include <gtest/gtest.h>

#include <sstream>

#include "options.hpp"

namespace sidecore::spank {
namespace {

TEST(OffloadFlag, AcceptsIdleCountsAndNoValue) {
  JobOptions options;
  EXPECT_FALSE(parse_offload_flag(nullptr, options));
  EXPECT_EQ(options.offload, OffloadRequest::idle());
  EXPECT_FALSE(parse_offload_flag("3", options));
  EXPECT_EQ(options.offload, OffloadRequest::cores(3));
  EXPECT_FALSE(parse_offload_flag("idle", options));
  EXPECT_EQ(options.offload, OffloadRequest::idle());
  options.offload.reset();
  EXPECT_FALSE(parse_offload_flag("(null)", options));  // how #SBATCH --offload reaches srun
  EXPECT_EQ(options.offload, OffloadRequest::idle());
  EXPECT_FALSE(parse_offload_flag("0", options));
  EXPECT_EQ(options.offload, OffloadRequest::off());
}

TEST(OffloadFlag, RefusesWithAMessageNamingTheFlag) {
  for (const char* bad : {"abc", "-1", "1x", "99999999999", " 2", "Idle"}) {
    JobOptions options;
    auto error = parse_offload_flag(bad, options);
    ASSERT_TRUE(error) << bad;
    EXPECT_NE(error->find("--offload=" + std::string(bad)), std::string::npos) << *error;
    EXPECT_FALSE(options.offload);
  }
}

TEST(PollFlag, AcceptsTheThreeModesOnly) {
  JobOptions options;
  EXPECT_FALSE(parse_poll_flag("hot", options));
  EXPECT_EQ(options.poll, PollMode::hot);
  EXPECT_FALSE(parse_poll_flag("warm", options));
  EXPECT_EQ(options.poll, PollMode::warm);
  EXPECT_FALSE(parse_poll_flag("adaptive", options));
  EXPECT_EQ(options.poll, PollMode::adaptive);
  auto error = parse_poll_flag("lukewarm", options);
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("--offload-poll=lukewarm"), std::string::npos);
  EXPECT_TRUE(parse_poll_flag(nullptr, options));
}

TEST(LibFlag, SplitsPathsAndRefusesNone) {
  JobOptions options;
  EXPECT_FALSE(parse_lib_flag("/a/libx.so,liby.so", options));
  EXPECT_EQ(options.libraries, (std::vector<std::string>{"/a/libx.so", "liby.so"}));
  auto error = parse_lib_flag(",", options);
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("--offload-lib"), std::string::npos);
}

TEST(StatsFlag, SetsStats) {
  JobOptions options;
  EXPECT_FALSE(parse_stats_flag(nullptr, options));
  EXPECT_TRUE(options.stats);
}

TEST(LeaseFlag, AcceptsACountAndRefusesTheRest) {
  JobOptions options;
  EXPECT_FALSE(parse_lease_flag("2", options));
  EXPECT_EQ(options.lease, 2u);
  EXPECT_FALSE(parse_lease_flag("0", options));
  EXPECT_EQ(options.lease, 0u);
  for (const char* bad : {"idle", "-1", "2x", "", "99999999"}) {
    auto error = parse_lease_flag(bad, options);
    ASSERT_TRUE(error) << bad;
    EXPECT_EQ(*error, "--offload-lease=" + std::string(bad) + ": expected a number of cores to lease (0 for none)");
  }
  EXPECT_TRUE(parse_lease_flag(nullptr, options));
}

TEST(AdminArgs, LeaseKeys) {
  auto defaults = parse_admin_args({}, "/x").config;
  EXPECT_TRUE(defaults.lease_partition.empty());
  EXPECT_FALSE(defaults.lease_max_cores);
  EXPECT_EQ(defaults.lease_time_min, 60u);
  auto parsed = parse_admin_args({"lease_partition=spare", "lease_max_cores=8", "lease_time=30"}, "/x");
  EXPECT_TRUE(parsed.errors.empty());
  EXPECT_EQ(parsed.config.lease_partition, "spare");
  EXPECT_EQ(parsed.config.lease_max_cores, 8u);
  EXPECT_EQ(parsed.config.lease_time_min, 30u);
  auto bad = parse_admin_args({"lease_max_cores=all", "lease_time=0", "lease_time=1h"}, "/x");
  ASSERT_EQ(bad.errors.size(), 3u);
  EXPECT_NE(bad.errors[0].find("'lease_max_cores=all': expected a number of cores"), std::string::npos)
      << bad.errors[0];
  EXPECT_NE(bad.errors[1].find("'lease_time=0': expected a number of minutes from 1 to 525600"), std::string::npos);
  EXPECT_EQ(bad.config.lease_time_min, 60u);
}

TEST(AdminArgs, DefaultsWithoutArguments) {
  auto parsed = parse_admin_args({}, "/usr/bin/sidecore-executor");
  EXPECT_TRUE(parsed.errors.empty());
  EXPECT_FALSE(parsed.config.max_cores);
  EXPECT_EQ(parsed.config.default_request, OffloadRequest::off());
  EXPECT_EQ(parsed.config.poll, PollMode::adaptive);
  EXPECT_EQ(parsed.config.provider, "auto");
  EXPECT_EQ(parsed.config.executor, "/usr/bin/sidecore-executor");
  EXPECT_TRUE(parsed.config.allow_partitions.empty());
  EXPECT_EQ(parsed.config.log_level, LogLevel::info);
}

TEST(AdminArgs, EveryKey) {
  auto parsed = parse_admin_args({"max_cores=4", "default=idle", "poll=warm", "provider=tcp;ofi_rxm",
                                  "executor=/opt/sc/bin/sidecore-executor", "allow_partitions=a,b",
                                  "log_level=debug"},
                                 "/x");
  EXPECT_TRUE(parsed.errors.empty());
  EXPECT_EQ(parsed.config.max_cores, 4u);
  EXPECT_EQ(parse_admin_args({"max_cores=0"}, "/x").config.max_cores, 0u);
  EXPECT_EQ(parsed.config.default_request, OffloadRequest::idle());
  EXPECT_EQ(parsed.config.poll, PollMode::warm);
  EXPECT_EQ(parsed.config.provider, "tcp;ofi_rxm");
  EXPECT_EQ(parsed.config.executor, "/opt/sc/bin/sidecore-executor");
  EXPECT_EQ(parsed.config.allow_partitions, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(parsed.config.log_level, LogLevel::debug);
  EXPECT_EQ(parse_admin_args({"default=2"}, "/x").config.default_request, OffloadRequest::cores(2));
  EXPECT_EQ(parse_admin_args({"default=off"}, "/x").config.default_request, OffloadRequest::off());
}

TEST(AdminArgs, UnknownKeysAndBadValuesAreReportedAndLeaveDefaults) {
  auto parsed = parse_admin_args({"max_cores=many", "colour=blue", "novalue", "poll=lukewarm", "default=-1",
                                  "executor=relative/path", "log_level=loud", "max_cores=2"},
                                 "/x");
  ASSERT_EQ(parsed.errors.size(), 7u);
  EXPECT_NE(parsed.errors[1].find("unknown argument 'colour'"), std::string::npos);
  EXPECT_NE(parsed.errors[2].find("'novalue'"), std::string::npos);
  EXPECT_EQ(parsed.config.max_cores, 2u);
  EXPECT_EQ(parsed.config.poll, PollMode::adaptive);
  EXPECT_EQ(parsed.config.default_request, OffloadRequest::off());
  EXPECT_EQ(parsed.config.executor, "/x");
  EXPECT_EQ(parsed.config.log_level, LogLevel::info);
}

TEST(AdminArgs, DescribeRoundTrips) {
  auto config = parse_admin_args({"max_cores=3", "default=idle", "poll=hot", "allow_partitions=p", "lease_partition=s",
                                  "lease_max_cores=2", "lease_time=9"},
                                 "/e")
                    .config;
  auto again =
      parse_admin_args({"max_cores=3", "default=idle", "poll=hot", "provider=auto", "executor=/e", "allow_partitions=p",
                        "lease_partition=s", "lease_max_cores=2", "lease_time=9", "log_level=info"},
                       "/other");
  EXPECT_EQ(describe(config), describe(again.config));
}

// The logged configuration can be pasted into plugstack.conf: the defaults too (no cap, every
// partition) read back as themselves, without errors.
TEST(AdminArgs, DescribeOfTheDefaultsReadsBack) {
  const auto defaults = parse_admin_args({}, "/e").config;
  std::vector<std::string> words;
  std::istringstream line(describe(defaults));
  for (std::string word; line >> word;) words.push_back(word);
  const auto again = parse_admin_args(words, "/other");
  EXPECT_TRUE(again.errors.empty()) << describe(defaults) << ": " << (again.errors.empty() ? "" : again.errors[0]);
  EXPECT_FALSE(again.config.max_cores.has_value());
  EXPECT_TRUE(again.config.allow_partitions.empty());
  EXPECT_EQ(describe(again.config), describe(defaults));
}

}  // namespace
}  // namespace sidecore::spank
