#include <gtest/gtest.h>
#include <pwd.h>
#include <sched.h>
#include <sys/stat.h>

#include <filesystem>

#include "executor_process.hpp"
#include "test_helpers.hpp"

namespace sidecore::spank {
namespace {

using namespace testing;

LaunchSpec spec_for(const TempDir& dir, const std::string& mode) {
  LaunchSpec spec;
  spec.executable = fake_executor();
  spec.card_file = dir.file("card");
  spec.args = {"--cores", "0", "--card-file", spec.card_file};
  spec.env = {"PATH=/usr/bin:/bin", "FAKE_EXECUTOR_MODE=" + mode, "FAKE_EXECUTOR_LOG=" + dir.file("log"),
              "SIDECORE_TOKEN=feedface"};
  spec.uid = getuid();
  spec.gid = getgid();
  spec.cpus = CoreSet::parse("0");
  spec.workdir = dir.path();
  spec.ready_timeout = std::chrono::milliseconds(5000);
  return spec;
}

TEST(LaunchExecutor, StartsPinnedUnblockedInItsOwnSessionAndStopsGracefully) {
  ASSERT_FALSE(fake_executor().empty()) << "SIDECORE_FAKE_EXECUTOR is not set";
  TempDir dir;
  // Block a signal here, as slurmstepd does: the executor must not inherit the mask.
  sigset_t blocked, previous;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &blocked, &previous);
  auto result = launch_executor(spec_for(dir, "ok"));
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  ASSERT_TRUE(result.process) << result.error;
  const pid_t pid = result.process->pid();
  EXPECT_NE(result.card.find("fake cores=0 token=feedface"), std::string::npos) << result.card;
  EXPECT_TRUE(result.process->running());
  EXPECT_EQ(getsid(pid), pid);
  // The fake is a shell, which blocks signals for a moment around each fork; a mask inherited from
  // us would stay (SIGTERM and SIGUSR1 blocked) for good.
  bool unblocked = false;
  for (int attempt = 0; attempt < 200 && !unblocked; ++attempt) {
    unblocked = proc_status(pid, "SigBlk") == "0000000000000000";
    if (!unblocked) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(unblocked) << proc_status(pid, "SigBlk");
  EXPECT_EQ(proc_status(pid, "Cpus_allowed_list"), "0");

  EXPECT_TRUE(result.process->stop(std::chrono::milliseconds(3000)).success());
  EXPECT_FALSE(result.process->needed_kill());
  EXPECT_TRUE(wait_gone(pid));
  EXPECT_NE(read_file(dir.file("log")).find("stopped"), std::string::npos);
}

TEST(LaunchExecutor, DropsToTheJobsUserFromAnEffectiveUidLikeUserInit) {
  TempDir dir;
  if (geteuid() != 0) {
    // Unprivileged, the only user it can become is this one: another is refused, with the step named.
    auto spec = spec_for(dir, "ok");
    spec.uid = getuid() + 1;
    auto result = launch_executor(spec);
    EXPECT_FALSE(result.process);
    EXPECT_NE(result.error.find("setresuid failed"), std::string::npos) << result.error;
    return;
  }
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  auto spec = spec_for(dir, "ok");
  // The job's user must be able to reach the executable: the checkout may sit under a private
  // folder such as /root, so run a copy from the (world-readable) test folder.
  const std::string copy = dir.file("fake_executor.sh");
  std::filesystem::copy_file(spec.executable, copy);
  ASSERT_EQ(chmod(copy.c_str(), 0755), 0);
  spec.executable = copy;
  spec.uid = nobody->pw_uid;
  spec.gid = nobody->pw_gid;
  spec.groups = {nobody->pw_gid};
  // slurmstepd runs user_init with only the effective uid switched to the user.
  ASSERT_EQ(setegid(nobody->pw_gid), 0);
  ASSERT_EQ(seteuid(nobody->pw_uid), 0);
  auto result = launch_executor(spec);
  ASSERT_EQ(seteuid(0), 0);
  ASSERT_EQ(setegid(0), 0);
  ASSERT_TRUE(result.process) << result.error;
  const pid_t pid = result.process->pid();
  const std::string uid = std::to_string(nobody->pw_uid), gid = std::to_string(nobody->pw_gid);
  EXPECT_EQ(proc_status(pid, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(proc_status(pid, "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid);
  EXPECT_EQ(proc_status(pid, "Groups"), gid + " ");  // the kernel ends the list with a space
  EXPECT_NE(result.card.find("uid=" + uid), std::string::npos);
  result.process->stop(std::chrono::milliseconds(3000));
  EXPECT_TRUE(wait_gone(pid));
}

TEST(LaunchExecutor, GetsSigtermWhenTheThreadThatLaunchedItEnds) {
  // slurmstepd killed outright runs no plugin callback: the executor must stop by itself. Launched
  // as another user where possible, since the kernel clears the parent-death signal when the
  // credentials change: it has to be set after the drop.
  TempDir dir;
  auto spec = spec_for(dir, "ok");
  const passwd* nobody = geteuid() == 0 ? getpwnam("nobody") : nullptr;
  if (nobody != nullptr) {
    const std::string copy = dir.file("fake_executor.sh");
    std::filesystem::copy_file(spec.executable, copy);
    ASSERT_EQ(chmod(copy.c_str(), 0755), 0);
    spec.executable = copy;
    spec.uid = nobody->pw_uid;
    spec.gid = nobody->pw_gid;
    spec.groups = {nobody->pw_gid};
    ASSERT_EQ(chmod(dir.path().c_str(), 0777), 0);  // its log and card
  }
  LaunchResult result;
  std::thread launcher([&] { result = launch_executor(spec); });
  launcher.join();
  ASSERT_TRUE(result.process) << result.error;
  const pid_t pid = result.process->pid();
  EXPECT_TRUE(wait_gone(pid)) << "the executor outlived the thread that launched it";
  EXPECT_NE(read_file(dir.file("log")).find("stopped"), std::string::npos) << "it was not stopped by SIGTERM";
  result.process->stop(std::chrono::milliseconds(0));
}

TEST(LaunchExecutor, AnExecutorThatDiesBeforeItsCardIsReported) {
  TempDir dir;
  auto result = launch_executor(spec_for(dir, "exit"));
  EXPECT_FALSE(result.process);
  EXPECT_NE(result.error.find("exited with status 3 before it was ready"), std::string::npos) << result.error;
}

TEST(LaunchExecutor, AnErrorLineIsNotACard) {
  TempDir dir;
  auto result = launch_executor(spec_for(dir, "error"));
  EXPECT_FALSE(result.process);
  EXPECT_NE(result.error.find("the executor could not start: fake executor: no provider on purpose"), std::string::npos)
      << result.error;
}

TEST(LaunchExecutor, AnExecutorNeverReadyIsKilledAfterTheTimeout) {
  TempDir dir;
  auto spec = spec_for(dir, "hang");
  spec.ready_timeout = std::chrono::milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  auto result = launch_executor(spec);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_FALSE(result.process);
  EXPECT_NE(result.error.find("not ready within 300 ms"), std::string::npos) << result.error;
}

TEST(LaunchExecutor, AMissingExecutableIsReported) {
  TempDir dir;
  auto spec = spec_for(dir, "ok");
  spec.executable = dir.file("no-such-executor");
  auto result = launch_executor(spec);
  EXPECT_FALSE(result.process);
  EXPECT_NE(result.error.find("no-such-executor"), std::string::npos) << result.error;
}

TEST(LaunchExecutor, AStubbornExecutorIsKilledAfterTheGrace) {
  TempDir dir;
  auto result = launch_executor(spec_for(dir, "stubborn"));
  ASSERT_TRUE(result.process) << result.error;
  const pid_t pid = result.process->pid();
  EXPECT_EQ(result.process->stop(std::chrono::milliseconds(200)).describe(), "was killed by signal 9 (Killed)");
  EXPECT_TRUE(result.process->needed_kill());
  EXPECT_TRUE(wait_gone(pid));
}

}  // namespace
}  // namespace sidecore::spank
