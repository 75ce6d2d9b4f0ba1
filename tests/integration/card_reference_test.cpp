// SIDECORE_EXECUTOR as the Slurm plugin hands it to tasks by default (start=async): a reference to
// the card of an executor that may still be starting. A task resolves it when it connects.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "card_reference.hpp"
#include "executor_process.hpp"

namespace sidecore_test {
namespace {

using sidecore::ErrorKind;

// Runs env_client (from_environment, 50 echo tasks) with this SIDECORE_EXECUTOR.
CommandResult run_env_client(const std::string& executor, const std::string& token) {
  return run_command({env_client_binary(), functions_library(), "50"},
                     {"SIDECORE_EXECUTOR=" + executor, "SIDECORE_TOKEN=" + token}, scaled(20000ms));
}

// Starts sidecore-executor writing its card to dir/card, without waiting for it.
sidecore::ChildProcess start_executor(const TempDir& dir, const std::string& token, const std::string& provider = "shm") {
  return spawn({executor_binary(), "--cores", "1", "--provider", provider, "--card-file", (dir.path() / "card").string()},
               {"SIDECORE_TOKEN=" + token}, dir.path() / "stdout", dir.path() / "stderr");
}

void stop(sidecore::ChildProcess& child) { child.stop(5s); }

TEST(CardReference, ATaskStartedBeforeTheExecutorIsReadyWaitsAndConnects) {
  TempDir dir;
  const std::string token = fresh_token();
  auto executor = start_executor(dir, token);
  // At once, as the plugin does: the executor is still loading libfabric.
  const auto result =
      run_env_client(sidecore::format_card_reference((dir.path() / "card").string(), executor.pid(), 15000ms), token);
  stop(executor);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "ok 50\n") << result.err;
}

TEST(CardReference, AnExecutorThatCannotStartTellsTheTaskWhy) {
  TempDir dir;
  const std::string token = fresh_token();
  auto executor = start_executor(dir, token, "no-such-provider");
  const auto result =
      run_env_client(sidecore::format_card_reference((dir.path() / "card").string(), executor.pid(), 15000ms), token);
  stop(executor);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(mentions(result.err, "could not start")) << result.err;
  EXPECT_TRUE(mentions(result.err, "no-such-provider")) << result.err;
  EXPECT_LT(result.elapsed, scaled(10000ms)) << "it waited out the timeout instead of reading the error";
}

TEST(CardReference, AnExecutorThatDiesBeforeItsCardIsNotWaitedFor) {
  TempDir dir;
  const std::string token = fresh_token();
  auto executor = start_executor(dir, token);
  executor.signal(SIGKILL);
  executor.wait();
  const auto result =
      run_env_client(sidecore::format_card_reference((dir.path() / "card").string(), executor.pid(), 15000ms), token);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(mentions(result.err, "exited before it was ready")) << result.err;
  EXPECT_LT(result.elapsed, scaled(10000ms));
}

TEST(CardReference, AnExecutorThatNeverGetsReadyTimesOut) {
  TempDir dir;
  // A live process that never writes a card: the wait ends at the reference's timeout.
  auto sleeper = spawn({"/bin/sleep", "30"}, {}, dir.path() / "stdout", dir.path() / "stderr");
  const auto result =
      run_env_client(sidecore::format_card_reference((dir.path() / "card").string(), sleeper.pid(), 300ms), fresh_token());
  stop(sleeper);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(mentions(result.err, "was not ready within 300 ms")) << result.err;
}

TEST(CardReference, AMalformedReferenceIsNamed) {
  const auto result = run_env_client("@/tmp/card pid=abc timeout_ms=10", fresh_token());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_TRUE(mentions(result.err, "not a card reference")) << result.err;
}

}  // namespace
}  // namespace sidecore_test
