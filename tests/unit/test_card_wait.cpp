// The one card wait: a card, an error line, the writer's exit first, or the timeout.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "card.hpp"
#include "process/card_wait.hpp"
#include "process/child_process.hpp"

namespace sidecore {
namespace {

using namespace std::chrono_literals;

class CardWait : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "sidecore-card-wait.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    card_ = (dir_ / "card").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A shell that sleeps `delay`, then writes `line` to the card file atomically, then runs `then`
  // (exec'd: nothing may outlive the test and hold ctest's output pipe).
  ChildProcess writer(const std::string& delay, const std::string& line, const std::string& then = "exec sleep 30") {
    SpawnOptions options;
    options.argv = {"/bin/sh", "-c",
                    "sleep " + delay + "; echo '" + line + "' > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; " + then, card_};
    return ChildProcess::spawn(options);
  }
  std::string message_of(const CardWriter& who, std::chrono::milliseconds timeout) {
    try {
      return "card: " + wait_for_card(card_, who, timeout);
    } catch (const CardError& e) {
      return e.what();
    }
  }

  std::filesystem::path dir_;
  std::string card_;
};

TEST_F(CardWait, ReturnsTheCardOnceItAppears) {
  auto child = writer("0.1", "sidecore/1 id=1");
  EXPECT_EQ(message_of(card_writer(child), 10s), "card: sidecore/1 id=1");
  child.stop(1s);
}

TEST_F(CardWait, AnErrorLineIsNotACard) {
  auto child = writer("0", "error: no provider here");
  EXPECT_EQ(message_of(card_writer(child), 10s), "the executor could not start: no provider here");
  child.stop(1s);
}

TEST_F(CardWait, AWriterThatExitsFirstIsNamedWithItsStatus) {
  SpawnOptions options;
  options.argv = {"/bin/sh", "-c", "exit 3"};
  auto child = ChildProcess::spawn(options);
  EXPECT_EQ(message_of(card_writer(child), 10s), "the executor exited with status 3 before it was ready");
  EXPECT_EQ(message_of(card_writer(child.pid()), 10s),
            "the executor (pid " + std::to_string(child.pid()) + ") exited before it was ready");
}

TEST_F(CardWait, ACardWrittenJustBeforeTheExitStillCounts) {
  auto child = writer("0", "sidecore/1 id=2", "exit 0");
  child.wait();
  EXPECT_EQ(message_of(card_writer(child), 10s), "card: sidecore/1 id=2");
}

TEST_F(CardWait, GivesUpAtTheTimeout) {
  SpawnOptions options;
  options.argv = {"/bin/sleep", "30"};
  auto child = ChildProcess::spawn(options);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(message_of(card_writer(child), 200ms), "the executor was not ready within 200 ms");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  child.stop(1s);
}

TEST_F(CardWait, ReadCardFileTellsTheThreeStates) {
  EXPECT_EQ(read_card_file(card_).state, CardFile::State::none);
  std::ofstream(card_) << "error: broken\n";
  EXPECT_EQ(read_card_file(card_).state, CardFile::State::error);
  EXPECT_EQ(read_card_file(card_).text, "broken");
  std::ofstream(card_) << "sidecore/1 id=3\n";
  EXPECT_EQ(read_card_file(card_).state, CardFile::State::card);
  EXPECT_EQ(read_card_file(card_).text, "sidecore/1 id=3");
}

TEST(ProcessRunning, AZombieIsNotRunning) {
  EXPECT_TRUE(process_running(getpid()));
  SpawnOptions options;
  options.argv = {"/bin/true"};
  auto child = ChildProcess::spawn(options);
  while (child.running()) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(process_running(child.pid())) << "an unreaped child counts as gone";
  child.wait();
}

}  // namespace
}  // namespace sidecore
