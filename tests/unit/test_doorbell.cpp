// Shared-memory doorbells: a caller's ring wakes a sleeping worker, a wait without a ring times out,
// no ring is lost between "asleep" and the futex wait, and the owner removes the segment.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>
#include <thread>

#include "../support/time_scale.h"
#include "doorbell.hpp"

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A name no other test process uses, so parallel test runs do not collide.
std::string unique_name() {
  static std::atomic<int> counter{0};
  return "/sidecore-unit-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

bool segment_exists(const std::string& name) {
  int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return false;
  close(fd);
  return true;
}

// An upper bound on a wait, stretched by SIDECORE_TEST_TIME_SCALE; lower bounds are the waits the
// tests measure and stay as they are.
std::chrono::duration<double> scaled(std::chrono::duration<double> bound) { return bound * sidecore_test_time_scale(); }

// How long `worker` sleeps in wait() with `timeout`, after prepare_sleep.
Clock::duration timed_wait(Doorbell& bell, unsigned worker, std::chrono::microseconds timeout) {
  const auto start = Clock::now();
  bell.wait(worker, timeout);
  return Clock::now() - start;
}

TEST(Doorbell, CreateAndOpen) {
  const auto name = unique_name();
  auto owner = Doorbell::create(name, 4);
  EXPECT_TRUE(owner);
  EXPECT_EQ(owner.name(), name);
  EXPECT_TRUE(segment_exists(name));
  auto caller = Doorbell::open(name, 4);
  EXPECT_TRUE(caller);
  EXPECT_EQ(caller.name(), name);
  EXPECT_FALSE(Doorbell());  // default-constructed: no segment
}

TEST(Doorbell, SegmentIsPrivateToTheUser) {
  const auto name = unique_name();
  auto owner = Doorbell::create(name, 1);
  struct stat info {};
  int fd = shm_open(name.c_str(), O_RDONLY, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fstat(fd, &info), 0);
  close(fd);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
}

TEST(Doorbell, CreateRefusesAnExistingName) {
  const auto name = unique_name();
  auto owner = Doorbell::create(name, 2);
  try {
    Doorbell::create(name, 2);
    ADD_FAILURE() << "second create of " << name << " succeeded";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), EEXIST);
  }
  // The failed create must not have removed the first owner's segment.
  EXPECT_TRUE(segment_exists(name));
}

TEST(Doorbell, OpenOfMissingSegmentThrows) {
  const auto name = unique_name();
  try {
    Doorbell::open(name, 1);
    ADD_FAILURE() << "open of missing " << name << " succeeded";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), ENOENT);
    EXPECT_NE(std::string(error.what()).find(name), std::string::npos) << error.what();
  }
}

TEST(Doorbell, OpenWithMoreWorkersThanTheSegmentHoldsThrows) {
  const auto name = unique_name();
  auto owner = Doorbell::create(name, 2);
  EXPECT_NO_THROW(Doorbell::open(name, 1));
  try {
    Doorbell::open(name, 3);
    ADD_FAILURE() << "open with 3 workers of a 2-worker doorbell succeeded";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code().value(), EINVAL);
    EXPECT_NE(std::string(error.what()).find("smaller"), std::string::npos) << error.what();
  }
}

TEST(Doorbell, SegmentIsUnlinkedWhenTheOwnerGoesAway) {
  const auto name = unique_name();
  {
    auto owner = Doorbell::create(name, 2);
    ASSERT_TRUE(segment_exists(name));
  }
  EXPECT_FALSE(segment_exists(name));
  EXPECT_THROW(Doorbell::open(name, 2), std::system_error);
  // And the name is free for the next executor.
  EXPECT_NO_THROW(Doorbell::create(name, 2));
}

TEST(Doorbell, CallerGoingAwayLeavesTheSegment) {
  const auto name = unique_name();
  auto owner = Doorbell::create(name, 2);
  { auto caller = Doorbell::open(name, 2); }
  EXPECT_TRUE(segment_exists(name));
  EXPECT_NO_THROW(Doorbell::open(name, 2));
}

TEST(Doorbell, MovedOwnerUnlinksOnceWhenTheLastHolderGoes) {
  const auto name = unique_name();
  Doorbell kept;
  {
    auto owner = Doorbell::create(name, 1);
    kept = std::move(owner);
    EXPECT_FALSE(owner);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  }
  EXPECT_TRUE(kept);
  EXPECT_TRUE(segment_exists(name));
  Doorbell moved(std::move(kept));
  EXPECT_TRUE(segment_exists(name));
  moved = Doorbell();  // assigning over the owner releases the segment
  EXPECT_FALSE(segment_exists(name));
}

TEST(Doorbell, WaitTimesOutWithoutARing) {
  auto bell = Doorbell::create(unique_name(), 1);
  bell.prepare_sleep(0);
  const auto slept = timed_wait(bell, 0, 50ms);
  EXPECT_GE(slept, 45ms);
  EXPECT_LT(slept, scaled(5s));
}

TEST(Doorbell, RingBeforeWaitIsNotLost) {
  // The worker marked itself asleep, the caller rang before the worker reached the futex: the wait
  // must return at once instead of sleeping through the ring.
  const auto name = unique_name();
  auto worker = Doorbell::create(name, 1);
  auto caller = Doorbell::open(name, 1);
  worker.prepare_sleep(0);
  caller.ring(0);
  EXPECT_LT(timed_wait(worker, 0, 10s), scaled(2s));
}

TEST(Doorbell, RingWakesASleeperInAnotherThread) {
  const auto name = unique_name();
  auto worker_bell = Doorbell::create(name, 2);
  auto caller_bell = Doorbell::open(name, 2);
  std::atomic<bool> marked{false};
  Clock::duration slept{};
  std::thread worker([&] {
    worker_bell.prepare_sleep(1);
    marked.store(true);
    slept = timed_wait(worker_bell, 1, 10s);
  });
  while (!marked.load()) std::this_thread::yield();
  std::this_thread::sleep_for(50ms);  // let the worker reach the futex
  caller_bell.ring(1);
  worker.join();
  EXPECT_LT(slept, scaled(5s)) << "the ring did not wake the worker";
  EXPECT_GE(slept, 20ms);  // it did sleep until the ring
}

TEST(Doorbell, RingWakesASleeperInAnotherProcess) {
  const auto name = unique_name();
  auto worker_bell = Doorbell::create(name, 1);
  worker_bell.prepare_sleep(0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int status = 1;
    try {
      auto caller_bell = Doorbell::open(name, 1);
      usleep(50'000);
      caller_bell.ring(0);
      status = 0;
    } catch (...) {
    }
    _exit(status);
  }
  const auto slept = timed_wait(worker_bell, 0, 10s);
  int status = -1;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the ringing process failed";
  EXPECT_LT(slept, scaled(5s)) << "the other process's ring did not wake the worker";
}

TEST(Doorbell, RingOnlyWakesItsOwnWorker) {
  auto bell = Doorbell::create(unique_name(), 2);
  bell.prepare_sleep(0);
  bell.ring(1);  // worker 1 is awake: nothing to do, and worker 0 must sleep on
  EXPECT_GE(timed_wait(bell, 0, 50ms), 45ms);
}

TEST(Doorbell, RingOfAnAwakeWorkerLeavesNoPendingWake) {
  auto bell = Doorbell::create(unique_name(), 1);
  bell.ring(0);  // never slept
  bell.prepare_sleep(0);
  bell.cancel_sleep(0);  // found work after all
  bell.ring(0);          // awake again: the ring must not linger for the next sleep
  bell.prepare_sleep(0);
  EXPECT_GE(timed_wait(bell, 0, 50ms), 45ms);
}

TEST(Doorbell, WaitClearsTheMark) {
  // After one woken wait, a later sleep must wait for a new ring.
  auto bell = Doorbell::create(unique_name(), 1);
  bell.prepare_sleep(0);
  bell.ring(0);
  EXPECT_LT(timed_wait(bell, 0, 10s), scaled(2s));
  bell.prepare_sleep(0);
  EXPECT_GE(timed_wait(bell, 0, 50ms), 45ms);
}

TEST(Doorbell, RingOfUnknownWorkerIsIgnored) {
  auto bell = Doorbell::create(unique_name(), 2);
  bell.ring(2);
  bell.ring(1000000);
  Doorbell().ring(0);  // a caller without a doorbell
  SUCCEED();
}

}  // namespace
}  // namespace sidecore
