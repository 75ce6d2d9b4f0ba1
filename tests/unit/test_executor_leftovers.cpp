// Leftovers in /dev/shm: what a dead process with this process's pid left there is removed before
// the executor opens its shm endpoints; nothing else is touched.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "executor_leftovers.hpp"

namespace sidecore {
namespace {

bool exists(const std::string& name) { return std::filesystem::exists("/dev/shm/" + name); }

void create(const std::string& name) {
  const int fd = shm_open(("/" + name).c_str(), O_CREAT | O_RDWR, 0600);
  ASSERT_GE(fd, 0) << name;
  close(fd);
}

TEST(StaleShmRegions, ThoseNamedAfterThisPidAreRemovedAndNoOthers) {
  const std::string pid = std::to_string(getpid());
  const std::string stale[] = {pid + ":0:0", pid + ":3:0"};
  // Another pid that starts with this one's digits, and a name that only contains it.
  const std::string kept[] = {pid + "7:0:0", "sidecore-test-" + pid + ":0:0"};
  for (const auto& name : stale) create(name);
  for (const auto& name : kept) create(name);

  EXPECT_EQ(remove_stale_shm_regions_of_this_process(), 2);
  for (const auto& name : stale) EXPECT_FALSE(exists(name)) << name;
  for (const auto& name : kept) {
    EXPECT_TRUE(exists(name)) << name;
    shm_unlink(("/" + name).c_str());
  }
  EXPECT_EQ(remove_stale_shm_regions_of_this_process(), 0);
}

}  // namespace
}  // namespace sidecore
