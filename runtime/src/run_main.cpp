// sidecore-run: start an executor on this machine, run a command with SIDECORE_EXECUTOR,
// SIDECORE_TOKEN and SIDECORE_CORES set, stop the executor when the command ends, and exit with
// the command's status.
#include <CLI/CLI.hpp>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "card.hpp"
#include "core_set.hpp"
#include "executor_leftovers.hpp"
#include "poll_mode.hpp"
#include "token.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

volatile sig_atomic_t forwarded_signal = 0;
pid_t command_pid = -1;

void forward_signal(int signal_number) {
  forwarded_signal = signal_number;
  if (command_pid > 0) kill(command_pid, signal_number);
}

int fail(const std::string& message) {
  std::fprintf(stderr, "sidecore-run: error: %s\n", message.c_str());
  return 125;  // like env(1) and timeout(1): the wrapper itself failed
}

std::string default_executor() {
  std::error_code error;
  auto self = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    auto sibling = self.parent_path() / "sidecore-executor";
    if (access(sibling.c_str(), X_OK) == 0) return sibling;
  }
  return "sidecore-executor";  // from PATH
}

int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// Stops the executor: SIGTERM, then SIGKILL if it has not exited within `grace`.
// Stops the executor; returns its wait status.
int stop_executor(pid_t pid, std::chrono::milliseconds grace) {
  kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "sidecore-run: executor did not stop within %lld ms; killing it\n",
                   static_cast<long long>(grace.count()));
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return status;
    }
    std::this_thread::sleep_for(5ms);
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sidecore;
  CLI::App app{"sidecore-run: run COMMAND with a Sidecore executor on this machine.\n\n"
               "Starts sidecore-executor, exports SIDECORE_EXECUTOR, SIDECORE_TOKEN and SIDECORE_CORES to\n"
               "COMMAND, stops the executor (printing its summary) when COMMAND ends, and exits with\n"
               "COMMAND's status (125 when sidecore-run itself fails).",
               "sidecore-run"};
  app.set_version_flag("--version", std::string("sidecore-run ") + SIDECORE_VERSION);
  std::string cores_text;
  std::string provider = "shm";
  std::string poll_text = "adaptive";
  std::string executor_path = default_executor();
  double ready_timeout = 10.0;
  bool quiet = false;
  std::vector<std::string> command;
  app.add_option("--cores", cores_text, "CPU list for the executor's workers (default: every CPU this process may use)");
  app.add_option("--provider", provider, "libfabric provider for the executor")->capture_default_str();
  app.add_option("--poll", poll_text, "executor poll mode: hot, warm or adaptive")->capture_default_str();
  app.add_option("--executor", executor_path, "sidecore-executor binary to start")->capture_default_str();
  app.add_option("--ready-timeout", ready_timeout, "seconds to wait for the executor to come up")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_flag("--quiet", quiet, "do not print the executor's summary at the end");
  app.add_option("command", command, "the command to run, after --")->required();
  app.positionals_at_end();
  CLI11_PARSE(app, argc, argv);

  CoreSet cores;
  try {
    cores = cores_text.empty() ? CoreSet::allowed() : CoreSet::parse(cores_text);
  } catch (const CoreSetError& e) {
    return fail(e.what());
  }
  if (auto missing = cores.minus(CoreSet::online()); !missing.empty()) {
    return fail("cores " + missing.to_string() + " do not exist on this machine (it has " +
                CoreSet::online().to_string() + ")");
  }
  if (!parse_poll_mode(poll_text)) return fail("unknown poll mode '" + poll_text + "' (use hot, warm or adaptive)");

  char directory_template[] = "/tmp/sidecore-run.XXXXXX";
  if (mkdtemp(directory_template) == nullptr) return fail(std::string("cannot create a temporary directory: ") + std::strerror(errno));
  const fs::path directory(directory_template);
  const fs::path card_file = directory / "card";
  const std::string token = generate_token();
  const std::string cores_list = cores.to_string();

  std::vector<std::string> executor_args{executor_path, "--cores", cores_list, "--provider", provider, "--poll",
                                         poll_text, "--card-file", card_file.string()};
  if (!quiet) executor_args.push_back("--stats");
  const pid_t executor = fork();
  if (executor < 0) return fail(std::string("fork: ") + std::strerror(errno));
  if (executor == 0) {
    setenv("SIDECORE_TOKEN", token.c_str(), 1);  // the environment, not argv: argv is world-readable
    setenv("SIDECORE_LOG_LEVEL", "warn", 0);      // keep the command's terminal quiet unless asked
    // The executor speaks on stdout only to print its card; keep the command's stdout clean.
    if (FILE* null = std::fopen("/dev/null", "w")) dup2(fileno(null), STDOUT_FILENO);
    std::vector<char*> args;
    for (auto& arg : executor_args) args.push_back(arg.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "sidecore-run: error: cannot start %s: %s\n", args[0], std::strerror(errno));
    _exit(125);
  }

  // Wait for the card file (written atomically once every worker is up) or for the executor to die.
  std::string card;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(ready_timeout);
  while (true) {
    int status = 0;
    if (waitpid(executor, &status, WNOHANG) == executor) {
      fs::remove_all(directory);
      return fail("the executor exited before it was ready (status " + std::to_string(exit_status(status)) + ")");
    }
    if (std::ifstream in(card_file); in) {
      std::getline(in, card);
      if (!card.empty()) break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop_executor(executor, 2000ms);
      fs::remove_all(directory);
      return fail("the executor was not ready within " + std::to_string(ready_timeout) + " s");
    }
    std::this_thread::sleep_for(1ms);
  }
  try {
    parse_card(card);
  } catch (const CardError& e) {
    stop_executor(executor, 2000ms);
    fs::remove_all(directory);
    return fail(std::string("the executor wrote a bad card: ") + e.what());
  }

  struct sigaction forward {};
  forward.sa_handler = forward_signal;
  sigemptyset(&forward.sa_mask);
  sigaction(SIGTERM, &forward, nullptr);
  sigaction(SIGHUP, &forward, nullptr);
  // Ctrl-C reaches the whole foreground process group; let the command decide, then clean up.
  signal(SIGINT, SIG_IGN);

  command_pid = fork();
  if (command_pid < 0) {
    stop_executor(executor, 2000ms);
    fs::remove_all(directory);
    return fail(std::string("fork: ") + std::strerror(errno));
  }
  if (command_pid == 0) {
    signal(SIGINT, SIG_DFL);
    setenv("SIDECORE_EXECUTOR", card.c_str(), 1);
    setenv("SIDECORE_TOKEN", token.c_str(), 1);
    setenv("SIDECORE_CORES", cores_list.c_str(), 1);
    std::vector<char*> args;
    for (auto& arg : command) args.push_back(arg.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "sidecore-run: error: cannot run '%s': %s\n", args[0], std::strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  int status = 0;
  while (waitpid(command_pid, &status, 0) < 0 && errno == EINTR) {
  }
  const int executor_status = stop_executor(executor, 5000ms);
  if (WIFSIGNALED(executor_status) && WTERMSIG(executor_status) != SIGTERM) {
    // It died during the run (or had to be killed): it could not clean up after itself.
    std::fprintf(stderr, "sidecore-run: the executor was killed by signal %d (%s) during the run\n",
                 WTERMSIG(executor_status), strsignal(WTERMSIG(executor_status)));
    remove_executor_leftovers(parse_card(card));
  }
  fs::remove_all(directory);
  return exit_status(status);
}
