// Function loader: functions resolved by library path and symbol name get stable ids, and every
// failure says which library or symbol was at fault. Runs against the test-function library whose
// path CTest passes in SIDECORE_TEST_FUNCTIONS.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "function_loader.hpp"

namespace sidecore {
namespace {

using ::testing::HasSubstr;

class FunctionLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* path = std::getenv("SIDECORE_TEST_FUNCTIONS");
    ASSERT_NE(path, nullptr) << "SIDECORE_TEST_FUNCTIONS must name libsidecore_test_functions.so";
    library_ = path;
  }

  std::string library_;
  FunctionLoader loader_;
};

TEST_F(FunctionLoaderTest, LookupGivesAnIdWhoseFunctionRuns) {
  const auto echo = loader_.lookup(library_, "echo");
  ASSERT_TRUE(echo.error.empty()) << echo.error;
  ASSERT_LT(echo.id, FunctionLoader::kMaxFunctions);
  const sidecore_function_t function = loader_.get(echo.id);
  ASSERT_NE(function, nullptr);

  const char input[] = "hello, worker";
  char output[64] = {};
  size_t out_bytes = 0;
  EXPECT_EQ(function(input, sizeof input, output, sizeof output, &out_bytes), 0);
  EXPECT_EQ(out_bytes, sizeof input);
  EXPECT_STREQ(output, input);
}

TEST_F(FunctionLoaderTest, FunctionReturnValueReachesTheCaller) {
  const auto lookup = loader_.lookup(library_, "return_value");
  ASSERT_TRUE(lookup.error.empty()) << lookup.error;
  const int32_t value = -42;
  size_t out_bytes = 0;
  EXPECT_EQ(loader_.get(lookup.id)(&value, sizeof value, nullptr, 0, &out_bytes), -42);
}

TEST_F(FunctionLoaderTest, SamePairGivesSameIdAndOtherSymbolsOthers) {
  const auto first = loader_.lookup(library_, "echo");
  const auto noop = loader_.lookup(library_, "noop");
  const auto again = loader_.lookup(library_, "echo");
  ASSERT_TRUE(first.error.empty()) << first.error;
  ASSERT_TRUE(noop.error.empty()) << noop.error;
  ASSERT_TRUE(again.error.empty()) << again.error;
  EXPECT_EQ(again.id, first.id);
  EXPECT_NE(noop.id, first.id);
  EXPECT_EQ(loader_.size(), 2u);
  EXPECT_NE(loader_.get(first.id), loader_.get(noop.id));
  EXPECT_EQ(loader_.get(first.id), loader_.get(again.id));
}

TEST_F(FunctionLoaderTest, IdsStayStableAsMoreFunctionsLoad) {
  const auto echo = loader_.lookup(library_, "echo");
  const auto echo_function = loader_.get(echo.id);
  for (const char* symbol : {"noop", "return_value", "overflow", "fill_pattern", "checksum", "sleep_us", "where"}) {
    const auto lookup = loader_.lookup(library_, symbol);
    ASSERT_TRUE(lookup.error.empty()) << symbol << ": " << lookup.error;
  }
  EXPECT_EQ(loader_.size(), 8u);
  EXPECT_EQ(loader_.lookup(library_, "echo").id, echo.id);
  EXPECT_EQ(loader_.get(echo.id), echo_function);
}

TEST_F(FunctionLoaderTest, MissingLibraryErrorNamesThePath) {
  const std::string missing = "/nonexistent/sidecore/libmissing.so";
  const auto lookup = loader_.lookup(missing, "echo");
  EXPECT_FALSE(lookup.error.empty());
  EXPECT_THAT(lookup.error, HasSubstr(missing));
  EXPECT_EQ(loader_.size(), 0u);
  EXPECT_EQ(loader_.get(0), nullptr);
}

TEST_F(FunctionLoaderTest, MissingSymbolErrorNamesTheSymbol) {
  const auto lookup = loader_.lookup(library_, "no_such_function");
  EXPECT_FALSE(lookup.error.empty());
  EXPECT_THAT(lookup.error, HasSubstr("no_such_function"));
  EXPECT_THAT(lookup.error, HasSubstr(library_));
  EXPECT_EQ(loader_.size(), 0u);
  // The library itself loaded fine: its other symbols still resolve.
  const auto echo = loader_.lookup(library_, "echo");
  EXPECT_TRUE(echo.error.empty()) << echo.error;
}

TEST_F(FunctionLoaderTest, FailedLookupIsNotCached) {
  EXPECT_FALSE(loader_.lookup(library_, "no_such_function").error.empty());
  EXPECT_FALSE(loader_.lookup(library_, "no_such_function").error.empty());
  EXPECT_EQ(loader_.size(), 0u);
}

TEST_F(FunctionLoaderTest, SymbolNamesAreNotPrefixes) {
  // "echo" exists; "ech" and "echo2" do not.
  EXPECT_FALSE(loader_.lookup(library_, "ech").error.empty());
  EXPECT_FALSE(loader_.lookup(library_, "echo2").error.empty());
  EXPECT_FALSE(loader_.lookup(library_, "").error.empty());
}

TEST_F(FunctionLoaderTest, GetOfUnknownIdIsNull) {
  EXPECT_EQ(loader_.get(0), nullptr);
  const auto echo = loader_.lookup(library_, "echo");
  ASSERT_TRUE(echo.error.empty()) << echo.error;
  EXPECT_NE(loader_.get(echo.id), nullptr);
  EXPECT_EQ(loader_.get(echo.id + 1), nullptr);
  EXPECT_EQ(loader_.get(FunctionLoader::kMaxFunctions - 1), nullptr);
  EXPECT_EQ(loader_.get(FunctionLoader::kMaxFunctions), nullptr);
  EXPECT_EQ(loader_.get(UINT32_MAX), nullptr);
}

TEST_F(FunctionLoaderTest, Preload) {
  EXPECT_EQ(loader_.preload(library_), "");
  const std::string missing = "/nonexistent/sidecore/libmissing.so";
  EXPECT_THAT(loader_.preload(missing), HasSubstr(missing));
  EXPECT_EQ(loader_.size(), 0u);  // preloading loads no functions
  const auto echo = loader_.lookup(library_, "echo");
  EXPECT_TRUE(echo.error.empty()) << echo.error;
}

}  // namespace
}  // namespace sidecore
