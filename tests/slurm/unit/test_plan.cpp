#include <gtest/gtest.h>

#include "cpu_map.hpp"
#include "plan.hpp"

namespace sidecore::spank {
namespace {

CoreSet cores(const char* list) { return CoreSet::parse(list); }

TEST(PlanCores, IdleCoresAreTheJobsMinusTheSteps) {
  auto plan = plan_cores(cores("0-1"), cores("0"), OffloadRequest::idle(), std::nullopt);
  EXPECT_EQ(plan.cores, cores("1"));
  EXPECT_TRUE(plan.reason.empty());
  EXPECT_TRUE(plan.warnings.empty());
  EXPECT_EQ(plan_cores(cores("0-7"), cores("0,2,4"), OffloadRequest::idle(), std::nullopt).cores, cores("1,3,5-7"));
}

TEST(PlanCores, NoIdleCoreSaysWhy) {
  auto plan = plan_cores(cores("0-1"), cores("0-1"), OffloadRequest::idle(), std::nullopt);
  EXPECT_TRUE(plan.cores.empty());
  EXPECT_NE(plan.reason.find("use all 2 of the job's cores"), std::string::npos) << plan.reason;
}

TEST(PlanCores, OffMeansNoExecutor) {
  auto plan = plan_cores(cores("0-3"), cores("0"), OffloadRequest::off(), std::nullopt);
  EXPECT_TRUE(plan.cores.empty());
  EXPECT_FALSE(plan.reason.empty());
}

TEST(PlanCores, ACountTakesTheHighestIdleCores) {
  auto plan = plan_cores(cores("0-7"), cores("0-1"), OffloadRequest::cores(2), std::nullopt);
  EXPECT_EQ(plan.cores, cores("6-7"));
  EXPECT_TRUE(plan.warnings.empty());
}

TEST(PlanCores, MoreThanIdleWarnsAndTakesWhatThereIs) {
  auto plan = plan_cores(cores("0-3"), cores("0-1"), OffloadRequest::cores(5), std::nullopt);
  EXPECT_EQ(plan.cores, cores("2-3"));
  ASSERT_EQ(plan.warnings.size(), 1u);
  EXPECT_NE(plan.warnings[0].find("2 idle"), std::string::npos) << plan.warnings[0];
}

TEST(PlanCores, MaxCoresCaps) {
  auto plan = plan_cores(cores("0-7"), cores("0"), OffloadRequest::idle(), 3);
  EXPECT_EQ(plan.cores, cores("5-7"));
  ASSERT_EQ(plan.warnings.size(), 1u);
  EXPECT_NE(plan.warnings[0].find("max_cores=3"), std::string::npos);
  EXPECT_EQ(plan_cores(cores("0-7"), cores("0"), OffloadRequest::cores(2), 3).warnings.size(), 0u);
}

TEST(PlanCores, MaxCoresZeroAllowsNone) {
  auto plan = plan_cores(cores("0-7"), cores("0"), OffloadRequest::idle(), 0);
  EXPECT_TRUE(plan.cores.empty());
  EXPECT_NE(plan.reason.find("max_cores=0"), std::string::npos);
}

TEST(CpuMap, MapsCoresOfThisMachineToItsCpus) {
  // Every CPU this machine has belongs to some core; mapping all cores gives back all CPUs.
  const CoreSet online = CoreSet::online();
  auto all = abstract_cores_to_cpus(cores("0"));
  EXPECT_TRUE(all.warning.empty()) << all.warning;
  ASSERT_FALSE(all.cpus.empty());
  for (int cpu : all.cpus.cores()) EXPECT_TRUE(online.contains(cpu));
  auto missing = abstract_cores_to_cpus(cores("60000"));
  EXPECT_FALSE(missing.warning.empty());
  EXPECT_EQ(missing.cpus, cores("60000"));
}

}  // namespace
}  // namespace sidecore::spank
