// LeaseWatch: how a rank reads a lease job's cards. The comment's format and SIDECORE_LEASE_JOB
// are pure logic; the watch itself runs `squeue`, here a script first in PATH that plays back
// answers a test wrote (or hangs, like a squeue whose slurmctld does not answer). The real squeue
// against a real lease is the multinode tier's (multinode.lease).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../support/scoped_environment.hpp"
#include "sidecore/sidecore.hpp"

namespace sidecore {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string card(const std::string& id, const std::string& host) {
  return "sidecore/1 id=" + id + " host=" + host + " provider=tcp;ofi_rxm workers=1 doorbell=/sidecore-" + id +
         " addrs=0a000001";
}

TEST(LeaseComment, GivesTheCardsAndTheNumberOfTasks) {
  size_t tasks = 0;
  const auto cards = LeaseWatch::parse_comment(
      "sidecore-lease/1 tasks=3|" + card("00000000000000a1", "node2") + "|" + card("00000000000000a2", "node3") + "\n",
      &tasks);
  EXPECT_EQ(tasks, 3u);
  ASSERT_EQ(cards.size(), 2u);
  EXPECT_EQ(cards[0], card("00000000000000a1", "node2"));
  EXPECT_EQ(cards[1], card("00000000000000a2", "node3"));
}

TEST(LeaseComment, BeforeAnyExecutorHasStartedHasNoCards) {
  size_t tasks = 0;
  EXPECT_TRUE(LeaseWatch::parse_comment("sidecore-lease/1 tasks=2", &tasks).empty());
  EXPECT_EQ(tasks, 2u);
}

TEST(LeaseComment, ThatIsNotALeasesGivesNothing) {
  size_t tasks = 7;
  EXPECT_TRUE(LeaseWatch::parse_comment("my own comment|" + card("00000000000000a1", "node2"), &tasks).empty());
  EXPECT_EQ(tasks, 0u);
  EXPECT_TRUE(LeaseWatch::parse_comment("", &tasks).empty());
}

class Environment : public ::testing::Test {
 protected:
  sidecore_test::ScopedEnvironment job_{"SIDECORE_LEASE_JOB", std::nullopt};  // put back at the end
};

TEST_F(Environment, NamesTheLeaseJobByItsNumber) {
  setenv("SIDECORE_LEASE_JOB", "4242", 1);
  EXPECT_EQ(LeaseWatch::job_from_environment(), "4242");
  for (const char* bad : {"", "42a", "-1", "42 43"}) {
    setenv("SIDECORE_LEASE_JOB", bad, 1);
    EXPECT_FALSE(LeaseWatch::job_from_environment()) << "'" << bad << "'";
  }
  unsetenv("SIDECORE_LEASE_JOB");
  EXPECT_FALSE(LeaseWatch::job_from_environment());
}

// A folder first in PATH whose `squeue` prints answer.1, answer.2, ... on successive calls (the
// last one again once they run out), records its arguments in calls, and with `hang` present
// writes its pid to started and sleeps instead.
class FakeSqueue : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/sidecore-lease-watch-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    const fs::path script = dir_ / "squeue";
    std::ofstream(script) << "#!/bin/sh\n"
                             "dir=$(dirname \"$0\")\n"
                             "echo \"$*\" >>\"$dir/calls\"\n"
                             "if [ -e \"$dir/hang\" ]; then echo $$ >\"$dir/started\"; exec sleep 60; fi\n"
                             "n=$(($(wc -l <\"$dir/calls\")))\n"
                             "while [ \"$n\" -gt 1 ] && [ ! -e \"$dir/answer.$n\" ]; do n=$((n - 1)); done\n"
                             "cat \"$dir/answer.$n\"\n";
    fs::permissions(script, fs::perms::owner_all);
    const char* path = std::getenv("PATH");
    path_.emplace("PATH", dir_.string() + (path ? ":" + std::string(path) : ""));
  }
  void TearDown() override {
    path_.reset();
    fs::remove_all(dir_);
  }
  void answer(int call, const std::string& text) {
    std::ofstream(dir_ / ("answer." + std::to_string(call))) << text << "\n";
  }
  size_t calls() const {
    std::ifstream in(dir_ / "calls");
    size_t lines = 0;
    for (std::string line; std::getline(in, line);) ++lines;
    return lines;
  }

  fs::path dir_;
  std::optional<sidecore_test::ScopedEnvironment> path_;
};

// What a watch handed over, batch by batch.
struct Received {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::vector<std::string>> batches;

  LeaseWatch::CardsCallback callback() {
    return [this](const std::vector<std::string>& cards) {
      std::lock_guard lock(mutex);
      batches.push_back(cards);
      changed.notify_all();
    };
  }
  bool wait_for(size_t count, std::chrono::seconds timeout) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, timeout, [&] { return batches.size() >= count; });
  }
};

TEST_F(FakeSqueue, HandsOverEachExecutorOnceAndStopsOnceAllHavePublished) {
  const std::string a = card("00000000000000a1", "node2"), b = card("00000000000000a2", "node3");
  answer(1, "PENDING|");
  answer(2, "RUNNING|sidecore-lease/1 tasks=2|" + a);
  answer(3, "RUNNING|sidecore-lease/1 tasks=2|" + a + "|" + b);
  Received received;
  LeaseWatch watch("4242", received.callback());
  ASSERT_TRUE(received.wait_for(2, std::chrono::seconds(20))) << calls() << " squeue call(s)";
  {
    std::lock_guard lock(received.mutex);
    EXPECT_EQ(received.batches[0], std::vector<std::string>{a});
    EXPECT_EQ(received.batches[1], std::vector<std::string>{b});
  }
  const size_t after = calls();
  EXPECT_EQ(after, 3u) << "one squeue per answer until every card was there";
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(calls(), after) << "the watch went on asking after every executor had published";
  std::ifstream in(dir_ / "calls");
  std::string first;
  std::getline(in, first);
  EXPECT_NE(first.find("--jobs=4242"), std::string::npos) << first;
}

TEST_F(FakeSqueue, StopsWhenTheLeaseEndsBeforeItsExecutorsStart) {
  answer(1, "PENDING|");
  answer(2, "CANCELLED|sidecore-lease/1 tasks=2");
  Received received;
  LeaseWatch watch("4242", received.callback());
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (calls() < 2 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(calls(), 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(calls(), 2u) << "the watch went on asking about a lease that ended";
  std::lock_guard lock(received.mutex);
  EXPECT_TRUE(received.batches.empty());
}

// A squeue whose slurmctld does not answer must not hold up the rank: destroying the watch (in
// MPIX_Offload_pool_free) stops it at once, and kills the squeue.
TEST_F(FakeSqueue, ItsDestructorDoesNotWaitForAHungSqueue) {
  std::ofstream(dir_ / "hang").close();
  Received received;
  auto watch = std::make_unique<LeaseWatch>("4242", received.callback());
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!fs::exists(dir_ / "started") && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the pid is written
  pid_t squeue = 0;
  std::ifstream(dir_ / "started") >> squeue;
  ASSERT_GT(squeue, 0) << "the fake squeue never ran";
  const auto start = Clock::now();
  watch.reset();
  // Far below the 10 s a squeue may take before the watch gives up on it.
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  EXPECT_NE(kill(squeue, 0), 0) << "the hung squeue was left running";
}

}  // namespace
}  // namespace sidecore
