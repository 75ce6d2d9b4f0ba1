// Faults cost only their own worker. Each case runs an executor with two workers (two processes,
// CPUs 0 and 1) and a client connected through the card reference, as tasks are under Slurm and
// sidecore-run:
// - a function that segfaults, aborts or calls exit() loses only the tasks on its own worker
//   (EXECUTOR_LOST); the other worker's tasks complete; the worker serves again within 2 s, and
//   the same Client and Function objects use it;
// - a function that never returns costs its task a TIMEOUT, and the worker is replaced, so two long
//   tasks run side by side again;
// - a crash while a large input and output move by RMA leaves the caller's buffers alone;
// - crashes past the restart limit stop the executor with a clear message, and callers see
//   EXECUTOR_LOST at once, never a hang.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "card.hpp"
#include "card_reference.hpp"
#include "executor_process.hpp"

namespace sidecore_test {
namespace {

using sidecore::ErrorKind;

struct Outcome {
  ErrorKind error = ErrorKind::none;
  std::string where;  // "host:pid" of the worker process that ran it, when it ran
};

// The executor of a case: two workers, reached through a card reference.
struct TwoWorkers {
  explicit TwoWorkers(std::vector<std::string> extra = {}, sidecore::ClientOptions options = {})
      : token(fresh_token()),
        executor(ExecutorOptions{.token = token, .cores = "0-1", .extra_args = std::move(extra)}),
        client(sidecore::Client::connect(
            sidecore::format_card_reference(executor.card_path().string(), executor.pid(), scaled(10000ms)), token,
            options)) {}
  std::string token;
  ExecutorProcess executor;
  sidecore::Client client;
};

// Runs `where` (sleeping `us` first) and returns what it said.
struct WhereTask {
  uint32_t us = 0;
  char out[300] = {};
  sidecore::TaskId id = sidecore::kNoTask;
};

Outcome finish(sidecore::Client& client, WhereTask& task) {
  const auto done = wait_for(client, task.id, scaled(10000ms));
  if (!done) return {ErrorKind::bad_arg, "never completed"};
  return {done->error, std::string(task.out, done->out_bytes)};
}

// Waits until two `where` tasks of `us` microseconds, submitted together, run at the same time on
// two different worker processes (none of them `gone`): the pool's full capacity. Returns how long
// that took from `since`, or nullopt after `timeout`.
std::optional<std::chrono::milliseconds> full_capacity(sidecore::Client& client, const sidecore::Function& where,
                                                        const std::string& gone, Clock::time_point since,
                                                        std::chrono::milliseconds timeout) {
  while (Clock::now() - since < timeout) {
    WhereTask a{.us = 100'000}, b{.us = 100'000};
    a.id = client.submit(where, &a.us, sizeof a.us, a.out, sizeof a.out);
    b.id = client.submit(where, &b.us, sizeof b.us, b.out, sizeof b.out);
    const Outcome first = finish(client, a), second = finish(client, b);
    if (first.error == ErrorKind::none && second.error == ErrorKind::none && first.where != second.where &&
        first.where != gone && second.where != gone) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since);
    }
    std::this_thread::sleep_for(20ms);
  }
  return std::nullopt;
}

class CrashIsolation : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashIsolation, OnlyTheCrashedWorkersTasksAreLostAndItServesAgainWithinTwoSeconds) {
  TwoWorkers setup;
  auto& client = setup.client;
  const auto crash = client.lookup(functions_library(), GetParam());
  const auto where = client.lookup(functions_library(), "where");
  // The crash goes to the idle worker 0; then the least loaded worker takes each task in turn:
  // 1, 0, 1, 0. Worker 0 dies with the crash and the two queued behind it.
  const auto crashing = client.submit(crash, nullptr, 0, nullptr, 0);
  std::vector<WhereTask> others(4);
  for (auto& task : others) {
    task.us = 300'000;
    task.id = client.submit(where, &task.us, sizeof task.us, task.out, sizeof task.out);
  }
  const auto crashed = wait_for(client, crashing, scaled(10000ms));
  ASSERT_TRUE(crashed) << "the crashing task never completed";
  EXPECT_EQ(crashed->error, ErrorKind::executor_lost) << to_string(crashed->error);
  const auto crashed_at = Clock::now();
  int lost = 0;
  std::set<std::string> survivors;
  for (auto& task : others) {
    const Outcome outcome = finish(client, task);
    if (outcome.error == ErrorKind::executor_lost) {
      ++lost;
    } else {
      EXPECT_EQ(outcome.error, ErrorKind::none) << to_string(outcome.error);
      survivors.insert(outcome.where);
    }
  }
  EXPECT_EQ(lost, 2) << "tasks queued behind the crash on its worker, and only those, are lost";
  ASSERT_EQ(survivors.size(), 1u) << "the other worker's two tasks completed, in one process";
  const auto back = full_capacity(client, where, "", crashed_at, scaled(10000ms));
  ASSERT_TRUE(back) << "the pool never ran two tasks at once again; stderr:\n" << setup.executor.stderr_text();
  EXPECT_LT(*back, scaled(2000ms)) << "the worker took too long to serve again";
  EXPECT_FALSE(client.executor_lost());
  EXPECT_TRUE(mentions(setup.executor.stderr_text(), "starting a new one")) << setup.executor.stderr_text();
  const auto card = sidecore::parse_card(read_file(setup.executor.card_path()));
  EXPECT_EQ(card.worker_pids.size(), 2u) << "the card names both worker processes";
  EXPECT_EQ(setup.executor.stop(), 0) << setup.executor.stderr_text();
}

INSTANTIATE_TEST_SUITE_P(Functions, CrashIsolation, ::testing::Values("crash_segv", "crash_abort", "crash_exit"));

TEST(CrashIsolation, AHungFunctionTimesOutAndItsWorkerIsReplaced) {
  TwoWorkers setup({}, sidecore::ClientOptions{.task_timeout = 500ms});
  auto& client = setup.client;
  const auto stuck = client.lookup(functions_library(), "never_return");
  const auto where = client.lookup(functions_library(), "where");
  const auto started = Clock::now();
  const auto hung = client.submit(stuck, nullptr, 0, nullptr, 0);
  WhereTask other{.us = 100'000};
  other.id = client.submit(where, &other.us, sizeof other.us, other.out, sizeof other.out);
  const auto done = wait_for(client, hung, scaled(10000ms));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->error, ErrorKind::timeout) << to_string(done->error);
  EXPECT_LT(Clock::now() - started, scaled(2000ms));
  EXPECT_EQ(finish(client, other).error, ErrorKind::none) << "the other worker's task";
  const auto back = full_capacity(client, where, "", Clock::now(), scaled(10000ms));
  ASSERT_TRUE(back) << "the stuck worker was never replaced; stderr:\n" << setup.executor.stderr_text();
  EXPECT_LT(*back, scaled(2000ms));
  EXPECT_TRUE(mentions(setup.executor.stderr_text(), "past its deadline; replacing it")) << setup.executor.stderr_text();
  // Nothing is stuck any more: the executor stops cleanly.
  EXPECT_EQ(setup.executor.stop(), 0) << setup.executor.stderr_text();
}

TEST(CrashIsolation, TheSiteBoundTimesOutATaskWithoutACallerTimeout) {
  TwoWorkers setup({"--max-task-s", "1"});
  auto& client = setup.client;
  EXPECT_EQ(sidecore::parse_card(read_file(setup.executor.card_path())).max_task_s, 1u);
  const auto stuck = client.lookup(functions_library(), "never_return");
  const auto where = client.lookup(functions_library(), "where");
  const auto started = Clock::now();
  const auto done = wait_for(client, client.submit(stuck, nullptr, 0, nullptr, 0), scaled(10000ms));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->error, ErrorKind::timeout) << to_string(done->error);
  EXPECT_GE(Clock::now() - started, 900ms) << "the bound is 1 s";
  EXPECT_LT(Clock::now() - started, scaled(3000ms));
  const auto back = full_capacity(client, where, "", Clock::now(), scaled(10000ms));
  ASSERT_TRUE(back) << setup.executor.stderr_text();
  EXPECT_LT(*back, scaled(2000ms));
  EXPECT_EQ(setup.executor.stop(), 0) << setup.executor.stderr_text();
}

TEST(CrashIsolation, ACrashDuringALargeTransferLeavesTheCallersBuffersAlone) {
  TwoWorkers setup;
  auto& client = setup.client;
  const auto crash = client.lookup(functions_library(), "crash_segv");
  const auto checksum = client.lookup(functions_library(), "checksum");
  constexpr size_t kBytes = 8 << 20;  // far above the inline limit: read and written by RMA
  std::vector<unsigned char> in(kBytes), crash_out(kBytes, 0x11);
  for (size_t i = 0; i < kBytes; ++i) in[i] = static_cast<unsigned char>(i * 7);
  uint64_t sum[2] = {0, 0};  // FNV-1a of the input, its length
  const auto crashing = client.submit(crash, in.data(), kBytes, crash_out.data(), kBytes);
  const auto summing = client.submit(checksum, in.data(), kBytes, sum, sizeof sum);
  const auto crashed = wait_for(client, crashing, scaled(10000ms));
  const auto summed = wait_for(client, summing, scaled(10000ms));
  ASSERT_TRUE(crashed && summed);
  EXPECT_EQ(crashed->error, ErrorKind::executor_lost) << to_string(crashed->error);
  EXPECT_EQ(summed->error, ErrorKind::none) << to_string(summed->error);
  uint64_t expected = 1469598103934665603ull;
  for (unsigned char byte : in) expected = (expected ^ byte) * 1099511628211ull;
  EXPECT_EQ(sum[0], expected);
  EXPECT_EQ(sum[1], kBytes);
  EXPECT_TRUE(std::all_of(crash_out.begin(), crash_out.end(), [](unsigned char b) { return b == 0x11; }))
      << "the lost task's output buffer was written";
  EXPECT_EQ(setup.executor.stop(), 0) << setup.executor.stderr_text();
}

TEST(CrashIsolation, CrashesPastTheRestartLimitStopTheExecutorAndSaySo) {
  TwoWorkers setup({"--restarts", "1"});
  auto& client = setup.client;
  const auto crash = client.lookup(functions_library(), "crash_segv");
  const auto where = client.lookup(functions_library(), "where");
  const auto first = wait_for(client, client.submit(crash, nullptr, 0, nullptr, 0), scaled(10000ms));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->error, ErrorKind::executor_lost);
  ASSERT_TRUE(full_capacity(client, where, "", Clock::now(), scaled(10000ms))) << setup.executor.stderr_text();
  const auto second = wait_for(client, client.submit(crash, nullptr, 0, nullptr, 0), scaled(10000ms));
  ASSERT_TRUE(second);
  EXPECT_EQ(second->error, ErrorKind::executor_lost);
  // It gives up by itself, says why, and exits non-zero; the caller fails fast from then on.
  EXPECT_EQ(setup.executor.wait_exit(scaled(5000ms)), std::optional<int>(1)) << setup.executor.stderr_text();
  EXPECT_TRUE(mentions(setup.executor.stderr_text(), "not restarting it: 1 restarts in the last 60 s"))
      << setup.executor.stderr_text();
  const auto started = Clock::now();
  WhereTask after{};
  after.id = client.submit(where, &after.us, sizeof after.us, after.out, sizeof after.out);
  EXPECT_EQ(finish(client, after).error, ErrorKind::executor_lost);
  EXPECT_LT(Clock::now() - started, scaled(2000ms));
  EXPECT_TRUE(client.executor_lost());
}

}  // namespace
}  // namespace sidecore_test

namespace sidecore_test {
namespace {

// Kills `executor` under the caller's 20 sleeping tasks (env_client --sleep-us, its output in
// `dir`): every task completes with EXECUTOR_LOST within 2 s, and the caller says why.
void expect_lost_within_two_seconds(ExecutorProcess& executor, sidecore::ChildProcess& caller, const TempDir& dir) {
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
}

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
  expect_lost_within_two_seconds(executor, caller, dir);
  executor.stop();
}

// Connections that process `pid` holds to TCP port `port` (established, over IPv4 or IPv6).
size_t connections_to_port(pid_t pid, unsigned port) {
  std::set<std::string> inodes;
  const std::filesystem::path fds = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(fds, error)) {
    const std::string target = std::filesystem::read_symlink(entry.path(), error).string();
    if (target.starts_with("socket:[")) inodes.insert(target.substr(8, target.size() - 9));
  }
  size_t found = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      const auto colon = remote.rfind(':');
      if (colon == std::string::npos || state != "01") continue;
      if (std::stoul(remote.substr(colon + 1), nullptr, 16) == port && inodes.count(inode) > 0) ++found;
    }
  }
  return found;
}

// The ranks of a pool follow other nodes' executors through their own node's executor: one
// connection for all of them, and the relay's to each executor instead of one per rank.
TEST(RemoteLiveness, ThroughTheRelayOnTheCallersHost) {
  const std::string token = fresh_token();
  ExecutorProcess remote(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  ExecutorProcess relay(ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token});
  const unsigned remote_port = sidecore::parse_card(remote.card()).watch;
  const unsigned relay_port = sidecore::parse_card(relay.card()).watch;
  ASSERT_NE(remote_port, 0u) << remote.card();
  ASSERT_NE(relay_port, 0u) << relay.card();
  TempDir dir;
  auto caller = spawn(
      {"/usr/bin/unshare", "--uts", "/bin/sh", "-c", "hostname sidecore-elsewhere && exec \"$0\" \"$@\"",
       env_client_binary(), functions_library(), "20", "--sleep-us", "5000000", "--relay", std::to_string(relay_port)},
      {"SIDECORE_EXECUTOR=" + remote.card(), "SIDECORE_TOKEN=" + token}, dir.path() / "out", dir.path() / "err");
  const auto deadline = Clock::now() + scaled(15000ms);
  while (!mentions(read_file(dir.path() / "out"), "ready") && Clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(mentions(read_file(dir.path() / "out"), "ready")) << read_file(dir.path() / "err");
  // The relay opens its connection to the remote executor's port after the caller asked.
  const auto relayed_by = Clock::now() + scaled(5000ms);
  while (connections_to_port(relay.pid(), remote_port) == 0 && Clock::now() < relayed_by) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(connections_to_port(relay.pid(), remote_port), 1u) << "the relay does not follow the remote executor";
  EXPECT_EQ(connections_to_port(caller.pid(), remote_port), 0u) << "the caller has a liveness connection of its own";
  EXPECT_EQ(connections_to_port(caller.pid(), relay_port), 1u) << "the caller is not connected to the relay";
  expect_lost_within_two_seconds(remote, caller, dir);
  // The relay let go of the executor it followed, and goes on serving.
  EXPECT_EQ(connections_to_port(relay.pid(), remote_port), 0u);
  EXPECT_EQ(kill(relay.pid(), 0), 0);
  remote.stop();
  relay.stop();
}

}  // namespace
}  // namespace sidecore_test
