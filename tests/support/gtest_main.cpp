// main() of every GoogleTest binary of the project. Unlike GoogleTest's own, it fails when the
// filter (--gtest_filter, as a CTest entry passes it) selects no test: a renamed test or suite would
// otherwise turn its CTest entry into a pass that ran nothing.
#include <gtest/gtest.h>

#include <cstdio>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  const ::testing::UnitTest& tests = *::testing::UnitTest::GetInstance();
  if (result == 0 && tests.test_to_run_count() == 0 && !::testing::GTEST_FLAG(list_tests)) {
    std::fprintf(stderr, "error: no test matches the filter '%s': nothing was tested\n",
                 ::testing::GTEST_FLAG(filter).c_str());
    return 1;
  }
  return result;
}
