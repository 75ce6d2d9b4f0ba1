// Failure injection: a point fires once, on the call it was armed for, with the failure it was
// armed with, and SIDECORE_FAULT specs parse or are refused whole.
#include <gtest/gtest.h>

#include <new>
#include <stdexcept>

#include "fault_injection.hpp"

namespace sidecore::fault {
namespace {

class FaultInjection : public ::testing::Test {
 protected:
  void TearDown() override { disarm_all(); }
};

TEST_F(FaultInjection, UnarmedPointsNeverFire) {
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(fire(Point::submit));
  EXPECT_NO_THROW(inject(Point::progress_thread));
}

TEST_F(FaultInjection, FiresOnceOnTheArmedCall) {
  arm(Point::submit, 2);
  EXPECT_FALSE(fire(Point::pool_size));  // other points are not counted
  EXPECT_FALSE(fire(Point::submit));
  EXPECT_FALSE(fire(Point::submit));
  EXPECT_TRUE(fire(Point::submit));
  EXPECT_FALSE(fire(Point::submit));
}

TEST_F(FaultInjection, InjectThrowsTheArmedFailure) {
  arm(Point::grequest_query);
  EXPECT_THROW(inject(Point::grequest_query), std::bad_alloc);
  arm(Point::client_repost, 0, Failure::fabric);
  EXPECT_THROW(inject(Point::client_repost), std::runtime_error);
  EXPECT_NO_THROW(inject(Point::client_repost));
}

TEST_F(FaultInjection, DisarmAll) {
  arm(Point::pool_create);
  arm(Point::progress_hook, 5);
  disarm_all();
  EXPECT_FALSE(fire(Point::pool_create));
  EXPECT_FALSE(fire(Point::progress_hook));
}

TEST_F(FaultInjection, PointNamesRoundTrip) {
  for (int i = 0; i < static_cast<int>(Point::count_); ++i) {
    const auto point = static_cast<Point>(i);
    EXPECT_EQ(parse_point(name(point)), point) << name(point);
  }
  EXPECT_FALSE(parse_point("no_such_point"));
}

TEST_F(FaultInjection, Spec) {
  ASSERT_TRUE(arm_from_spec("function_free:1,error_kind:0:fabric,pool_free"));
  EXPECT_TRUE(fire(Point::pool_free));
  EXPECT_FALSE(fire(Point::function_free));
  EXPECT_TRUE(fire(Point::function_free));
  EXPECT_THROW(inject(Point::error_kind), std::runtime_error);
}

TEST_F(FaultInjection, BadSpecsArmNothing) {
  for (const char* spec : {"", "submit:", "submit:x", "submit:-1", "submit:1:disk", "submit,nope", "submit:1x"}) {
    EXPECT_FALSE(arm_from_spec(spec)) << spec;
    EXPECT_FALSE(fire(Point::submit)) << spec;
  }
}

}  // namespace
}  // namespace sidecore::fault
