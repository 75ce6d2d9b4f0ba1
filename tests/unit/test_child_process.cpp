// The one child-process type: spawn, exit status, stop with a grace period, nothing left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "process/child_process.hpp"

namespace sidecore {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

ChildProcess shell(const std::string& script, SpawnOptions options = {}) {
  options.argv = {"/bin/sh", "-c", script};
  return ChildProcess::spawn(options);
}

std::string read_all(int fd) {
  std::string text;
  char chunk[256];
  for (ssize_t n; (n = read(fd, chunk, sizeof chunk)) > 0;) text.append(chunk, static_cast<size_t>(n));
  return text;
}

TEST(ChildProcess, ReportsTheExitStatusAndIsReaped) {
  auto child = shell("exit 3");
  const ExitStatus status = child.wait();
  EXPECT_EQ(status.kind, ExitStatus::Kind::exited);
  EXPECT_EQ(status.shell_code(), 3);
  EXPECT_EQ(status.describe(), "exited with status 3");
  EXPECT_FALSE(child.running());
  EXPECT_EQ(waitpid(child.pid(), nullptr, WNOHANG), -1) << "no zombie is left";
  EXPECT_EQ(errno, ECHILD);
  EXPECT_EQ(child.wait().shell_code(), 3) << "a second wait gives the same answer";
}

TEST(ChildProcess, PassesTheEnvironmentAndCapturesStdout) {
  SpawnOptions options;
  options.env = std::vector<std::string>{"GREETING=hello"};
  options.out = Stdio::pipe();
  auto child = shell("printf '%s' \"$GREETING\"", options);
  EXPECT_EQ(read_all(child.stdout_fd()), "hello");
  EXPECT_TRUE(child.wait().success());
}

TEST(ChildProcess, InheritedDescriptorsCloseUnlessKept) {
  const int fd = dup(STDERR_FILENO);  // not close-on-exec
  ASSERT_GE(fd, 3);
  const std::string check = "test -e /proc/self/fd/" + std::to_string(fd);
  EXPECT_EQ(shell(check).wait().shell_code(), 1) << "a descriptor of the parent leaked into the child";
  SpawnOptions keep;
  keep.keep_descriptors = true;
  EXPECT_EQ(shell(check, keep).wait().shell_code(), 0) << "a descriptor asked for was not inherited";
  close(fd);
}

TEST(ChildProcess, FindsAProgramInPathAndNamesOneThatIsNot) {
  SpawnOptions options;
  options.argv = {"true"};
  EXPECT_TRUE(ChildProcess::spawn(options).wait().success());
  options.argv = {"/nonexistent/program"};
  try {
    ChildProcess::spawn(options);
    FAIL() << "spawned a program that does not exist";
  } catch (const SpawnError& e) {
    EXPECT_EQ(e.error_number(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("cannot execute /nonexistent/program"), std::string::npos) << e.what();
  }
}

TEST(ChildProcess, ASetupStepThatFailsIsNamed) {
  SpawnOptions options;
  options.argv = {"/bin/true"};
  options.setup = [] {
    errno = EPERM;
    return kFirstSetupStep + 1;
  };
  options.describe_setup_step = [](int step) { return "step " + std::to_string(step); };
  try {
    ChildProcess::spawn(options);
    FAIL() << "the setup's failure was not reported";
  } catch (const SpawnError& e) {
    EXPECT_EQ(std::string(e.what()), "step 101 failed: " + std::string(std::strerror(EPERM)));
  }
}

TEST(ChildProcess, StopEndsAChildThatHonoursSigterm) {
  auto child = shell("exec sleep 30");
  EXPECT_TRUE(child.running());
  const ExitStatus status = child.stop(5s);
  EXPECT_FALSE(child.needed_kill());
  EXPECT_EQ(status.kind, ExitStatus::Kind::signaled);
  EXPECT_EQ(status.value, SIGTERM);
  EXPECT_EQ(waitpid(child.pid(), nullptr, WNOHANG), -1) << "no zombie is left";
}

TEST(ChildProcess, AChildIgnoringSigtermIsKilledAfterTheGrace) {
  SpawnOptions options;
  options.out = Stdio::pipe();
  // It says when its trap is set, so that SIGTERM cannot come before it.
  auto child = shell("trap '' TERM; echo ready; while :; do sleep 0.05; done", options);
  char byte = 0;
  ASSERT_EQ(read(child.stdout_fd(), &byte, 1), 1);
  const auto started = Clock::now();
  const ExitStatus status = child.stop(300ms);
  const auto took = Clock::now() - started;
  EXPECT_TRUE(child.needed_kill());
  EXPECT_EQ(status.describe(), "was killed by signal 9 (Killed)");
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(waitpid(child.pid(), nullptr, WNOHANG), -1) << "no zombie is left";
}

TEST(ChildProcess, OwnGroupStopKillsWhatTheChildStarted) {
  SpawnOptions options;
  options.group = SpawnOptions::Group::own_group;
  options.out = Stdio::pipe();
  // The grandchild ignores SIGTERM as well: only the SIGKILL to the group ends it.
  auto child = shell("trap '' TERM; sleep 30 & echo $!; wait", options);
  const std::string text = [&] {
    std::string line;
    char c = 0;
    while (read(child.stdout_fd(), &c, 1) == 1 && c != '\n') line.push_back(c);
    return line;
  }();
  const pid_t grandchild = static_cast<pid_t>(std::stol(text));
  EXPECT_EQ(getpgid(grandchild), child.pid());
  child.stop(200ms);
  const auto deadline = Clock::now() + 5s;
  while (kill(grandchild, 0) == 0 && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_NE(kill(grandchild, 0), 0) << "the grandchild outlived the stop";
}

TEST(ChildProcess, TheDestructorNeitherSignalsNorWaits) {
  pid_t pid = -1;
  {
    auto child = shell("exec sleep 30");
    pid = child.pid();
  }
  EXPECT_EQ(kill(pid, 0), 0) << "the child was stopped by the destructor";
  kill(pid, SIGKILL);
  EXPECT_EQ(waitpid(pid, nullptr, 0), pid);
}

TEST(FindProgram, LooksInEachFolderOfThePath) {
  EXPECT_EQ(find_program("sh", "/nonexistent:/bin"), "/bin/sh");
  EXPECT_EQ(find_program("./relative", ""), "./relative");
  EXPECT_FALSE(find_program("no-such-program-anywhere", "/bin:/usr/bin"));
}

}  // namespace
}  // namespace sidecore
