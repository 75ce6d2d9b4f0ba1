// Crash isolation: a function that segfaults, aborts or calls exit() takes down only its
// executor's server process. The caller's tasks on it complete with EXECUTOR_LOST within 2 s, the
// supervisor starts a new server within seconds, and a caller that connects through the card file
// is served again. A function that never returns costs its task a TIMEOUT, not a hang.
#include <gtest/gtest.h>

#include <fstream>

#include "card.hpp"
#include "card_reference.hpp"
#include "executor_process.hpp"

namespace sidecore_test {
namespace {

using sidecore::ErrorKind;

// The card in `path` once it names another executor than `old_card` (the restarted server).
std::string wait_for_new_card(const std::filesystem::path& path, const std::string& old_card,
                              std::chrono::milliseconds timeout) {
  const auto old_id = sidecore::parse_card(old_card).executor_id;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::string card;
    if (std::ifstream in(path); in) std::getline(in, card);
    if (!card.empty() && card.rfind("error:", 0) != 0 && sidecore::parse_card(card).executor_id != old_id) return card;
    std::this_thread::sleep_for(10ms);
  }
  return "";
}

class CrashIsolation : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashIsolation, TheCallerGetsExecutorLostAndANewServerServesWithinSeconds) {
  const std::string token = fresh_token();
  ExecutorProcess executor(ExecutorOptions{.token = token});
  const std::string first_card = executor.card();
  {
    auto client = sidecore::Client::connect(first_card, token);
    const auto crash = client.lookup(functions_library(), GetParam());
    const auto sleep = client.lookup(functions_library(), "sleep_us");
    const uint32_t us = 100'000;
    std::vector<sidecore::TaskId> others;
    const auto crashing = client.submit(crash, nullptr, 0, nullptr, 0);
    for (int i = 0; i < 5; ++i) others.push_back(client.submit(sleep, &us, sizeof us, nullptr, 0));
    const auto started = Clock::now();
    const auto done = wait_for(client, crashing, scaled(10000ms));
    ASSERT_TRUE(done) << "the crashing task never completed";
    EXPECT_EQ(done->error, ErrorKind::executor_lost) << to_string(done->error);
    for (const auto id : others) {  // queued behind it on the same worker: lost with it
      const auto other = wait_for(client, id, scaled(10000ms));
      ASSERT_TRUE(other);
      EXPECT_EQ(other->error, ErrorKind::executor_lost) << to_string(other->error);
    }
    EXPECT_LT(Clock::now() - started, scaled(2000ms));
  }
  const std::string second_card = wait_for_new_card(executor.card_path(), first_card, scaled(10000ms));
  ASSERT_FALSE(second_card.empty()) << "no new server within 10 s; stderr:\n" << executor.stderr_text();
  EXPECT_TRUE(mentions(executor.stderr_text(), "starting a new one")) << executor.stderr_text();
  auto client = sidecore::Client::connect(second_card, token);
  const auto echo = client.lookup(functions_library(), "echo");
  const uint64_t in = 0x5eed, out_init = 0;
  uint64_t out = out_init;
  const auto id = client.submit(echo, &in, sizeof in, &out, sizeof out);
  const auto done = wait_for(client, id, scaled(10000ms));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->error, ErrorKind::none) << to_string(done->error);
  EXPECT_EQ(out, in);
  EXPECT_EQ(executor.stop(), 0) << executor.stderr_text();
}

INSTANTIATE_TEST_SUITE_P(Functions, CrashIsolation, ::testing::Values("crash_segv", "crash_abort", "crash_exit"));

// A client connected through a card reference (as tasks under Slurm are) follows the executor to
// its new server by itself: the same Client and Function objects work again within seconds.
TEST(CrashIsolation, AClientOnACardReferenceReconnectsToTheNewServer) {
  const std::string token = fresh_token();
  ExecutorProcess executor(ExecutorOptions{.token = token});
  const std::string reference = sidecore::format_card_reference(executor.card_path().string(), executor.pid(), 10000ms);
  auto client = sidecore::Client::connect(reference, token);
  const auto crash = client.lookup(functions_library(), "crash_abort");
  const auto echo = client.lookup(functions_library(), "echo");
  const auto lost = wait_for(client, client.submit(crash, nullptr, 0, nullptr, 0), scaled(10000ms));
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->error, ErrorKind::executor_lost) << to_string(lost->error);
  const auto started = Clock::now();
  std::optional<sidecore::Completion> done;
  uint64_t out = 0;
  const uint64_t in = 0xfeedface;
  while (Clock::now() - started < scaled(10000ms)) {
    done = wait_for(client, client.submit(echo, &in, sizeof in, &out, sizeof out), scaled(10000ms));
    ASSERT_TRUE(done);
    if (done->error != ErrorKind::executor_lost) break;  // lost at once until the new server is up
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(done);
  EXPECT_EQ(done->error, ErrorKind::none) << to_string(done->error) << "; stderr:\n" << executor.stderr_text();
  EXPECT_EQ(out, in);
  EXPECT_FALSE(client.executor_lost());
  EXPECT_LT(Clock::now() - started, scaled(5000ms)) << "the restarted server took too long to serve";
  EXPECT_EQ(executor.stop(), 0) << executor.stderr_text();
}

TEST(CrashIsolation, RepeatedCrashesStopTheRestartsAndSaySo) {
  const std::string token = fresh_token();
  ExecutorProcess executor(ExecutorOptions{.token = token, .extra_args = {"--restarts", "1"}});
  std::string card = executor.card();
  for (int round = 0; round < 2; ++round) {
    auto client = sidecore::Client::connect(card, token);
    const auto crash = client.lookup(functions_library(), "crash_segv");
    const auto done = wait_for(client, client.submit(crash, nullptr, 0, nullptr, 0), scaled(10000ms));
    ASSERT_TRUE(done);
    EXPECT_EQ(done->error, ErrorKind::executor_lost);
    if (round == 0) {
      card = wait_for_new_card(executor.card_path(), card, scaled(10000ms));
      ASSERT_FALSE(card.empty()) << executor.stderr_text();
    }
  }
  // It gives up by itself, says why, and exits non-zero.
  EXPECT_EQ(executor.wait_exit(scaled(5000ms)), std::optional<int>(1)) << executor.stderr_text();
  EXPECT_TRUE(mentions(executor.stderr_text(), "not restarting it: 1 restarts in the last 60 s")) << executor.stderr_text();
}

TEST(CrashIsolation, AFunctionThatNeverReturnsTimesOutItsTask) {
  const std::string token = fresh_token();
  ExecutorProcess executor(ExecutorOptions{.token = token});
  auto client = sidecore::Client::connect(executor.card(), token, sidecore::ClientOptions{.task_timeout = 300ms});
  const auto stuck = client.lookup(functions_library(), "never_return");
  const auto started = Clock::now();
  const auto done = wait_for(client, client.submit(stuck, nullptr, 0, nullptr, 0), scaled(10000ms));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->error, ErrorKind::timeout) << to_string(done->error);
  EXPECT_LT(Clock::now() - started, scaled(2000ms));
  // Its worker is still inside the function: stopping has to kill the server after the grace time.
  EXPECT_EQ(executor.stop(1000ms), 128 + SIGKILL);
}

}  // namespace
}  // namespace sidecore_test

namespace sidecore_test {
namespace {

// A caller on another host cannot watch the executor's pid: it keeps a connection to the
// executor's liveness port instead, which the kernel closes when the executor dies. The caller
// here runs in a UTS namespace of its own (another host name, so it takes the executor for a
// remote one) and is served over tcp;ofi_rxm.
TEST(RemoteLiveness, ACallerOnAnotherHostGetsExecutorLostWithinTwoSeconds) {
  const std::string token = fresh_token();
  ExecutorProcess executor(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  ASSERT_NE(sidecore::parse_card(executor.card()).watch, 0u) << "no liveness port in the card: " << executor.card();
  TempDir dir;
  auto caller = spawn({"/usr/bin/unshare", "--uts", "/bin/sh", "-c", "hostname sidecore-elsewhere && exec \"$0\" \"$@\"",
                              env_client_binary(), functions_library(), "20", "--sleep-us", "5000000"},
                             {"SIDECORE_EXECUTOR=" + executor.card(), "SIDECORE_TOKEN=" + token}, dir.path() / "out",
                             dir.path() / "err");
  const auto deadline = Clock::now() + scaled(15000ms);
  while (!mentions(read_file(dir.path() / "out"), "ready") && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(mentions(read_file(dir.path() / "out"), "ready")) << read_file(dir.path() / "err");
  ASSERT_EQ(kill(executor.pid(), SIGKILL), 0);
  const auto status = wait_until(caller, Clock::now() + scaled(10000ms));
  if (!status) caller.stop(0ms);
  ASSERT_TRUE(status) << "the remote caller still waits for its tasks; stderr:\n" << read_file(dir.path() / "err");
  const std::string out = read_file(dir.path() / "out");
  EXPECT_EQ(*status, 0) << read_file(dir.path() / "err");
  EXPECT_TRUE(mentions(out, "EXECUTOR_LOST=20 ")) << out << read_file(dir.path() / "err");
  const auto ms = std::stol(out.substr(out.find("ms=") + 3));
  EXPECT_LT(ms, scaled(2000ms).count()) << out;
  EXPECT_TRUE(mentions(read_file(dir.path() / "err"), "is gone")) << read_file(dir.path() / "err");
  executor.stop();
}

}  // namespace
}  // namespace sidecore_test
