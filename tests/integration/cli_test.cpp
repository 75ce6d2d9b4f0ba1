// The command lines, used the way a person or a script uses them: sidecore-executor's help and
// its answers to bad input, and sidecore-run's environment, exit status and cleanup.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>

#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "executor_process.hpp"

namespace sidecore_test {
namespace {


std::string describe(const CommandResult& result) {
  return "exit " + std::to_string(result.exit_code) + (result.timed_out ? " (timed out)" : "") + "\nstdout:\n" +
         result.out + "\nstderr:\n" + result.err;
}

// --- sidecore-executor -------------------------------------------------------------------------

TEST(ExecutorCli, HelpListsTheOptionsWithDefaults) {
  auto result = run_command({executor_binary(), "--help"}, {}, 10s);
  ASSERT_FALSE(result.timed_out);
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  const std::string& help = result.out;
  for (const char* option : {"--cores", "--provider", "--poll", "--card-file"}) {
    EXPECT_TRUE(mentions(help, option)) << option << " missing from --help:\n" << help;
  }
  // Defaults a user relies on without reading the code.
  EXPECT_TRUE(mentions(help, "shm")) << "--help does not show the default provider:\n" << help;
  EXPECT_TRUE(mentions(help, "adaptive")) << "--help does not show the default poll mode:\n" << help;
  EXPECT_TRUE(mentions(help, "hot") && mentions(help, "warm")) << "--help does not list the poll modes:\n" << help;
}

struct BadInvocation {
  std::vector<std::string> args;
  std::string named;  // what the one-line error must mention
};

TEST(ExecutorCli, BadInputGivesAOneLineErrorAndNonZeroExit) {
  const BadInvocation cases[] = {
      {{"--cores", "1", "--provider", "no_such_provider"}, "no_such_provider"},
      {{"--cores", "9999"}, "9999"},
      {{"--cores", "abc"}, "abc"},
      {{"--cores", "1", "--poll", "bogus"}, "bogus"},
      {{"--cores", "1", "--preload", "/nonexistent.so"}, "/nonexistent.so"},
  };
  for (const auto& bad : cases) {
    std::string shown;
    for (const auto& arg : bad.args) shown += " " + arg;
    SCOPED_TRACE("sidecore-executor" + shown);
    TempDir dir;
    std::vector<std::string> argv{executor_binary()};
    argv.insert(argv.end(), bad.args.begin(), bad.args.end());
    argv.insert(argv.end(), {"--card-file", (dir.path() / "card").string()});
    auto result = run_command(argv, {"SIDECORE_TOKEN=cli-test-token"}, 10s);
    ASSERT_FALSE(result.timed_out) << "it hung; " << describe(result);
    EXPECT_NE(result.exit_code, 0) << describe(result);
    EXPECT_LT(result.exit_code, 128) << "it died of a signal instead of exiting; " << describe(result);
    const auto lines = nonempty_lines(result.err);
    ASSERT_EQ(lines.size(), 1u) << "expected one line of error; " << describe(result);
    EXPECT_TRUE(mentions(lines[0], "error")) << lines[0];
    EXPECT_TRUE(mentions(lines[0], bad.named)) << "the error does not name '" << bad.named << "': " << lines[0];
    EXPECT_FALSE(mentions(result.out, "SIDECORE_EXECUTOR")) << "it printed a card although it failed";
    // The card file holds the reason instead of a card, for a task that waits on it (start=async).
    const std::string card_file = read_file(dir.path() / "card");
    EXPECT_EQ(card_file.rfind("error: ", 0), 0u) << "it wrote a card although it failed: " << card_file;
    EXPECT_TRUE(mentions(card_file, bad.named)) << card_file;
  }
}

TEST(ExecutorCli, StopsCleanlyOnSigtermAndRemovesItsCard) {
  const std::string token = fresh_token();
  ExecutorProcess executor(ExecutorOptions{.token = token});
  EXPECT_TRUE(mentions(executor.stdout_text(), "SIDECORE_EXECUTOR='" + executor.card() + "'"))
      << "stdout:\n"
      << executor.stdout_text();
  EXPECT_FALSE(mentions(executor.stdout_text(), token)) << "it printed the token it was given";
  EXPECT_EQ(executor.stop(), 0) << executor.stderr_text();
  EXPECT_FALSE(executor.needed_sigkill());
  EXPECT_FALSE(std::filesystem::exists(executor.card_path()));
}

// Under Slurm its stderr is the step's, a pipe that slurmstepd reads; killed, slurmstepd sends it
// SIGTERM (the parent-death signal) and reads no more. Writing its --stats summary there must not
// kill it before it removes its card, its card folder and its shared memory.
TEST(ExecutorCli, StopsCleanlyWhenItsStderrPipeHasNoReaderAnyMore) {
  TempDir dir;
  const auto folder = dir.path() / "cards";
  std::filesystem::create_directory(folder);
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  // spawn() opens its output paths: this one is the pipe's write end.
  auto executor = spawn({executor_binary(), "--cores", "1", "--provider", "shm", "--card-file", (folder / "card").string(),
                           "--remove-card-folder", "--stats", "--log-level", "warn"},
                          {"SIDECORE_TOKEN=" + fresh_token()}, dir.path() / "stdout",
                          "/proc/self/fd/" + std::to_string(pipe_fds[1]));
  close(pipe_fds[1]);
  std::string card;
  for (const auto deadline = Clock::now() + scaled(15s); card.empty() && Clock::now() < deadline;) {
    card = read_file(folder / "card");
    if (card.empty()) std::this_thread::sleep_for(10ms);
  }
  if (card.empty()) {
    executor.stop(0ms);
    FAIL() << "no card within 15 s";
  }
  const auto parsed = sidecore::parse_card(card.substr(0, card.find('\n')));
  close(pipe_fds[0]);  // the reader is gone
  executor.signal(SIGTERM);
  auto status = wait_until(executor, Clock::now() + scaled(10s));
  if (!status) {
    executor.stop(0ms);
    FAIL() << "it did not stop within 10 s of SIGTERM";
  }
  EXPECT_EQ(*status, 0) << "128 + 13 is SIGPIPE";
  EXPECT_FALSE(std::filesystem::exists(folder)) << "the card folder is left";
  EXPECT_FALSE(std::filesystem::exists("/dev/shm" + parsed.doorbell)) << "the doorbell is left in /dev/shm";
}

// Whatever SIDECORE_TOKEN the executor accepts at start, a client must be able to present;
// otherwise the executor has to refuse it at start with a one-line error.
TEST(ExecutorCli, ATokenItAcceptsCanBePresentedByAClient) {
  const std::string token(200, 'k');
  std::unique_ptr<ExecutorProcess> executor;
  try {
    executor = std::make_unique<ExecutorProcess>(ExecutorOptions{.token = token});
  } catch (const std::exception& e) {
    const std::string why = e.what();
    EXPECT_TRUE(mentions(why, "token")) << "refused at start, but without naming the token: " << why;
    return;
  }
  try {
    auto client =
        sidecore::Client::connect(executor->card(), token, sidecore::ClientOptions{.connect_timeout = 3000ms});
  } catch (const sidecore::Error& e) {
    ADD_FAILURE() << "the executor started with a " << token.size() << "-byte SIDECORE_TOKEN, but a client presenting "
                  << "that token cannot connect: " << to_string(e.kind()) << ": " << e.what();
  }
}

// --- sidecore-run --------------------------------------------------------------------------------

// The pids of processes whose parent is this process.
std::set<pid_t> my_children() {
  std::set<pid_t> children;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return children;
  while (dirent* entry = readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    std::getline(stat, text);
    const auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(text.substr(close + 2));
    char state = 0;
    pid_t parent = 0;
    fields >> state >> parent;
    if (parent == getpid()) children.insert(pid);
  }
  closedir(proc);
  return children;
}

std::string command_of(pid_t pid) {
  std::string text = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  for (char& c : text) {
    if (c == '\0') c = ' ';
  }
  return text;
}

// Runs sidecore-run as a child subreaper: anything it leaves running is re-parented to this
// process, where the test finds it (and then kills it).
class SidecoreRun : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    before_ = my_children();
  }
  void TearDown() override {
    std::string leftovers;
    for (pid_t pid : my_children()) {
      if (before_.count(pid)) continue;
      std::string command = command_of(pid);
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) continue;  // a zombie that had already exited
      leftovers += "\n  pid " + std::to_string(pid) + ": " + command;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    EXPECT_TRUE(leftovers.empty()) << "sidecore-run left processes running:" << leftovers;
  }

  CommandResult run(std::vector<std::string> command, std::vector<std::string> options = {"--cores", "1"}) {
    std::vector<std::string> argv{run_binary()};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back("--");
    argv.insert(argv.end(), command.begin(), command.end());
    // No executor from the surroundings may leak into the command.
    return run_command(argv, {"SIDECORE_EXECUTOR", "SIDECORE_TOKEN", "SIDECORE_CORES"}, 30s);
  }

  std::set<pid_t> before_;
};

// SIDECORE_EXECUTOR is a reference to the card (card_reference.hpp), not the card itself: callers
// re-read the file when the executor restarts a server and rewrites it (TheCommandCanUseTheExecutor
// connects through it). The card file lives in a private folder under TMPDIR, gone after the run.
TEST_F(SidecoreRun, ExportsAReferenceToTheExecutorsCardTheTokenAndTheCores) {
  TempDir tmp;
  // The card file is the reference's path: "@PATH pid=N timeout_ms=N".
  std::vector<std::string> argv{run_binary(), "--cores", "1", "--", "/bin/sh", "-c",
                                "printf 'cores=%s\\n' \"$SIDECORE_CORES\"; printf 'reference=%s\\n' \"$SIDECORE_EXECUTOR\"; "
                                "path=${SIDECORE_EXECUTOR#@}; printf 'card=%s\\n' \"$(cat \"${path% pid=*}\")\"; "
                                "printf 'token_length=%s\\n' \"${#SIDECORE_TOKEN}\""};
  auto result = run_command(argv, {"SIDECORE_EXECUTOR", "SIDECORE_TOKEN", "SIDECORE_CORES", "TMPDIR=" + tmp.path().string()}, 30s);
  ASSERT_FALSE(result.timed_out) << describe(result);
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  const auto lines = nonempty_lines(result.out);
  ASSERT_EQ(lines.size(), 4u) << "stdout holds more than the command's output; " << describe(result);
  EXPECT_EQ(lines[0], "cores=1") << describe(result);
  const std::regex reference("reference=@" + tmp.path().string() + "/sidecore-run\\.[A-Za-z0-9]{6}/card pid=[0-9]+ timeout_ms=10000");
  EXPECT_TRUE(std::regex_match(lines[1], reference)) << describe(result);
  EXPECT_EQ(lines[2].rfind("card=sidecore/1 ", 0), 0u) << describe(result);
  EXPECT_TRUE(mentions(lines[2], "provider=shm")) << describe(result);
  EXPECT_NE(lines[3], "token_length=0") << "SIDECORE_TOKEN is empty; " << describe(result);
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path())) << "sidecore-run left its card folder behind";
}

TEST_F(SidecoreRun, TheCommandCanUseTheExecutor) {
  auto result = run({env_client_binary(), functions_library(), "200"});
  ASSERT_FALSE(result.timed_out) << describe(result);
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(mentions(result.out, "ok 200")) << describe(result);
  // At the end, the executor's one-line summary counts the command's tasks.
  EXPECT_TRUE(mentions(result.err, "tasks=200")) << describe(result);
}

TEST_F(SidecoreRun, ExitsWithTheCommandsStatus) {
  auto three = run({"/bin/sh", "-c", "exit 3"});
  ASSERT_FALSE(three.timed_out) << describe(three);
  EXPECT_EQ(three.exit_code, 3) << describe(three);
  auto zero = run({"/bin/true"}, {"--cores", "1", "--quiet"});
  EXPECT_EQ(zero.exit_code, 0) << describe(zero);
}

TEST_F(SidecoreRun, MissingCommandIsAClearError) {
  auto result = run({"/nonexistent"});
  ASSERT_FALSE(result.timed_out) << describe(result);
  EXPECT_NE(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(mentions(result.err, "/nonexistent")) << describe(result);
  EXPECT_TRUE(mentions(result.err, "error")) << describe(result);
}

TEST_F(SidecoreRun, AnExecutorThatCannotStartIsAnErrorAndTheCommandDoesNotRun) {
  auto result = run({"/bin/sh", "-c", "echo the command ran"}, {"--cores", "1", "--provider", "no_such_provider"});
  ASSERT_FALSE(result.timed_out) << describe(result);
  EXPECT_NE(result.exit_code, 0) << describe(result);
  EXPECT_TRUE(mentions(result.err, "error")) << describe(result);
  EXPECT_TRUE(mentions(result.err, "no_such_provider")) << describe(result);
  EXPECT_FALSE(mentions(result.out, "the command ran")) << describe(result);
}

TEST_F(SidecoreRun, SigtermReachesTheCommandAndStopsTheExecutor) {
  TempDir dir;
  const auto started_file = dir.path() / "started";
  auto run = spawn(
      {run_binary(), "--cores", "1", "--", "/bin/sh", "-c", "echo $$ > '" + started_file.string() + "'; exec sleep 30"},
      {"SIDECORE_EXECUTOR", "SIDECORE_TOKEN", "SIDECORE_CORES"}, dir.path() / "stdout", dir.path() / "stderr");
  const auto deadline = Clock::now() + 15s;
  while (!std::filesystem::exists(started_file) && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  const bool started = std::filesystem::exists(started_file);
  std::this_thread::sleep_for(50ms);  // let the shell exec sleep
  run.signal(SIGTERM);
  auto status = wait_until(run, Clock::now() + 15s);
  if (!status) run.stop(0ms);
  ASSERT_TRUE(started) << "the command never started; stderr:\n" << read_file(dir.path() / "stderr");
  ASSERT_TRUE(status) << "sidecore-run did not exit after SIGTERM";
  EXPECT_EQ(*status, 128 + SIGTERM) << "stderr:\n" << read_file(dir.path() / "stderr");
}

}  // namespace
}  // namespace sidecore_test
