// Core sets: Linux cpulists in, normalized sets and canonical cpulists out; bad lists are refused
// with a CoreSetError that names the bad part.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>

#include <string>
#include <vector>

#include "core_set.hpp"

namespace sidecore {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string parse_error(std::string_view text) {
  try {
    CoreSet::parse(text);
  } catch (const CoreSetError& error) {
    return error.what();
  }
  return "<no CoreSetError for '" + std::string(text) + "'>";
}

TEST(CoreSet, ParsesSingleCpu) {
  const auto set = CoreSet::parse("0");
  EXPECT_THAT(set.cores(), ElementsAre(0));
  EXPECT_EQ(set.size(), 1u);
  EXPECT_FALSE(set.empty());
  EXPECT_EQ(set.to_string(), "0");
}

TEST(CoreSet, ParsesRangesAndSingles) {
  const auto set = CoreSet::parse("0-3,6,8-9");
  EXPECT_THAT(set.cores(), ElementsAre(0, 1, 2, 3, 6, 8, 9));
  EXPECT_EQ(set.to_string(), "0-3,6,8-9");
}

TEST(CoreSet, SingleElementRange) {
  const auto set = CoreSet::parse("5-5");
  EXPECT_THAT(set.cores(), ElementsAre(5));
  EXPECT_EQ(set.to_string(), "5");
}

TEST(CoreSet, DuplicatesAndUnorderedInputNormalize) {
  const auto set = CoreSet::parse("9,3,1,2,2,1,8,0-1");
  EXPECT_THAT(set.cores(), ElementsAre(0, 1, 2, 3, 8, 9));
  EXPECT_EQ(set.to_string(), "0-3,8-9");
  EXPECT_EQ(set, CoreSet::parse("0-3,8,9"));
  EXPECT_EQ(CoreSet::parse("5,0-2,1-3").to_string(), "0-3,5");
}

TEST(CoreSet, ConstructorNormalizes) {
  const CoreSet set(std::vector<int>{7, 4, 5, 4, 6, 10});
  EXPECT_THAT(set.cores(), ElementsAre(4, 5, 6, 7, 10));
  EXPECT_EQ(set.to_string(), "4-7,10");
}

TEST(CoreSet, ToStringCollapsesRangesButKeepsPairsAsRanges) {
  EXPECT_EQ(CoreSet(std::vector<int>{0, 2, 4}).to_string(), "0,2,4");
  EXPECT_EQ(CoreSet(std::vector<int>{0, 1}).to_string(), "0-1");
  EXPECT_EQ(CoreSet(std::vector<int>{1, 2, 3, 5, 6, 7, 100}).to_string(), "1-3,5-7,100");
  EXPECT_EQ(CoreSet().to_string(), "");
}

TEST(CoreSet, ToStringParsesBackToTheSameSet) {
  const auto set = CoreSet::parse("63,0-7,16-23,31,32,40-47");
  EXPECT_EQ(CoreSet::parse(set.to_string()), set);
}

TEST(CoreSet, AcceptsHighestCpu) {
  const auto set = CoreSet::parse(std::to_string(CoreSet::kMaxCpu));
  EXPECT_THAT(set.cores(), ElementsAre(CoreSet::kMaxCpu));
}

TEST(CoreSet, Minus) {
  const auto job = CoreSet::parse("0-7");
  EXPECT_EQ(job.minus(CoreSet::parse("2-3,6")).to_string(), "0-1,4-5,7");
  EXPECT_EQ(job.minus(CoreSet::parse("8-15")), job);    // disjoint: nothing removed
  EXPECT_TRUE(job.minus(job).empty());                  // the step uses every core: nothing idle
  EXPECT_TRUE(job.minus(CoreSet::parse("0-15")).empty());
  EXPECT_EQ(job.minus(CoreSet()), job);
  EXPECT_TRUE(CoreSet().minus(job).empty());
}

TEST(CoreSet, Contains) {
  const auto set = CoreSet::parse("0-3,6,8-9");
  for (int cpu : {0, 1, 2, 3, 6, 8, 9}) EXPECT_TRUE(set.contains(cpu)) << cpu;
  for (int cpu : {-1, 4, 5, 7, 10, 65535}) EXPECT_FALSE(set.contains(cpu)) << cpu;
  EXPECT_FALSE(CoreSet().contains(0));
}

TEST(CoreSet, AllowedHoldsTheCpuThisThreadRunsOn) {
  const auto allowed = CoreSet::allowed();
  ASSERT_FALSE(allowed.empty());
  const int cpu = sched_getcpu();
  ASSERT_GE(cpu, 0);
  EXPECT_TRUE(allowed.contains(cpu)) << allowed.to_string() << " lacks " << cpu;
}

// --- errors ------------------------------------------------------------------------------------------

TEST(CoreSetErrors, Empty) { EXPECT_THAT(parse_error(""), HasSubstr("empty")); }

TEST(CoreSetErrors, EmptyElements) {
  for (std::string text : {",", "1,", ",1", "1,,2"}) {
    EXPECT_THAT(parse_error(text), HasSubstr("'" + text + "' has an empty element")) << text;
  }
}

TEST(CoreSetErrors, NotANumber) {
  EXPECT_THAT(parse_error("a"), HasSubstr("'a' is not a CPU number"));
  EXPECT_THAT(parse_error("0-3,x"), HasSubstr("'x' is not a CPU number"));
  EXPECT_THAT(parse_error("1-2-3"), HasSubstr("'2-3' is not a CPU number"));
  EXPECT_THAT(parse_error(" 1"), HasSubstr("' 1' is not a CPU number"));
  EXPECT_THAT(parse_error("1.5"), HasSubstr("'1.5' is not a CPU number"));
}

TEST(CoreSetErrors, BackwardsRange) {
  const auto error = parse_error("0,3-1");
  EXPECT_THAT(error, HasSubstr("3-1"));
  EXPECT_THAT(error, HasSubstr("backwards"));
}

TEST(CoreSetErrors, RangeMissingAnEnd) {
  // "-1" is a range with no start, not CPU minus one; "1-" a range with no end.
  for (std::string text : {"-1", "1-", "-"}) {
    const auto error = parse_error(text);
    EXPECT_THAT(error, HasSubstr("core list '" + text + "'")) << text;
    EXPECT_THAT(error, HasSubstr("'' is not a CPU number")) << text;
  }
}

TEST(CoreSetErrors, NegativeRangeEnd) {
  EXPECT_THAT(parse_error("0--1"), HasSubstr("'-1' is not a CPU number"));
}

TEST(CoreSetErrors, OutOfRange) {
  EXPECT_THAT(parse_error("99999999"), HasSubstr("CPU 99999999 is out of range"));
  EXPECT_THAT(parse_error("0-65536"), HasSubstr("CPU 65536 is out of range"));
  // Too large even for an int: still named.
  EXPECT_THAT(parse_error("99999999999999999999"), HasSubstr("'99999999999999999999'"));
}

TEST(CoreSetErrors, ErrorIsAnInvalidArgument) {
  EXPECT_THROW(CoreSet::parse("3-1"), CoreSetError);
  EXPECT_THROW(CoreSet::parse("x"), std::invalid_argument);
}

}  // namespace
}  // namespace sidecore
