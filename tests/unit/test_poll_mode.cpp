// Poll modes: the names users write in --offload-poll and poll= map to modes and back.
#include <gtest/gtest.h>

#include "poll_mode.hpp"

namespace sidecore {
namespace {

TEST(PollMode, ParsesEachName) {
  EXPECT_EQ(parse_poll_mode("hot"), PollMode::hot);
  EXPECT_EQ(parse_poll_mode("warm"), PollMode::warm);
  EXPECT_EQ(parse_poll_mode("adaptive"), PollMode::adaptive);
}

TEST(PollMode, NamesRoundTrip) {
  for (auto mode : {PollMode::hot, PollMode::warm, PollMode::adaptive}) {
    EXPECT_EQ(parse_poll_mode(to_string(mode)), mode) << to_string(mode);
  }
  EXPECT_EQ(to_string(PollMode::hot), "hot");
  EXPECT_EQ(to_string(PollMode::warm), "warm");
  EXPECT_EQ(to_string(PollMode::adaptive), "adaptive");
}

TEST(PollMode, RejectsUnknownNames) {
  for (const char* text : {"", "HOT", "Warm", "adapt", "hot ", " hot", "cold", "busy"}) {
    EXPECT_FALSE(parse_poll_mode(text)) << "'" << text << "'";
  }
}

TEST(PollMode, UsableAtCompileTime) {
  static_assert(parse_poll_mode("warm") == PollMode::warm);
  static_assert(to_string(PollMode::adaptive) == "adaptive");
  SUCCEED();
}

}  // namespace
}  // namespace sidecore
