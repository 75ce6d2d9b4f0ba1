// Helpers for the integration tier: real sidecore-executor processes, child commands with a
// deadline, and bounded waits on the client.
//
// Nothing a test starts may outlive it. Every child (a sidecore::ChildProcess) gets
// PR_SET_PDEATHSIG=SIGKILL (so a crashed or timed-out test binary takes its executors with it) and
// its own process group (so a command that overruns its deadline is killed together with whatever
// it started).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../support/time_scale.h"
#include "card.hpp"
#include "executor_leftovers.hpp"
#include "process/card_wait.hpp"
#include "process/child_process.hpp"
#include "sidecore/sidecore.hpp"

extern char** environ;

namespace sidecore_test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A path the CMake file passes in the environment ($<TARGET_FILE:...>).
inline std::string required_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw std::runtime_error(std::string(name) + " is not set: run this test through ctest");
  }
  return value;
}
inline std::string executor_binary() { return required_env("SIDECORE_TEST_EXECUTOR"); }
inline std::string run_binary() { return required_env("SIDECORE_TEST_RUN"); }
inline std::string functions_library() { return required_env("SIDECORE_TEST_FUNCTIONS"); }
inline std::string env_client_binary() { return required_env("SIDECORE_TEST_ENV_CLIENT"); }

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sidecore-itest.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// Starts argv[0] (a path) with stdin from /dev/null and stdout/stderr into the given files.
// `env` entries "KEY=VALUE" override the inherited environment; a bare "KEY" removes KEY.
inline sidecore::ChildProcess spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                    const std::filesystem::path& stdout_path, const std::filesystem::path& stderr_path) {
  std::vector<std::string> environment;
  auto key_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text(*entry);
    bool overridden = false;
    for (const auto& change : env) overridden = overridden || key_of(change) == key_of(text);
    if (!overridden) environment.push_back(text);
  }
  for (const auto& change : env) {
    if (change.find('=') != std::string::npos) environment.push_back(change);
  }
  const int out_fd = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  auto close_files = [&] {
    for (int fd : {out_fd, err_fd}) {
      if (fd >= 0) close(fd);
    }
  };
  if (out_fd < 0 || err_fd < 0) {
    close_files();
    throw std::runtime_error("spawn: cannot open the output files");
  }
  sidecore::SpawnOptions options;
  options.argv = argv;
  options.env = std::move(environment);
  options.in = sidecore::Stdio::null();
  options.out = sidecore::Stdio::to_fd(out_fd);
  options.err = sidecore::Stdio::to_fd(err_fd);
  // Its own group, so that stopping it after a deadline also kills whatever it started; SIGKILL
  // should the test binary crash or time out.
  options.group = sidecore::SpawnOptions::Group::own_group;
  options.parent_death_signal = SIGKILL;
  try {
    auto child = sidecore::ChildProcess::spawn(options);
    close_files();
    return child;
  } catch (...) {
    close_files();
    throw;
  }
}

// Waits for `child` until the deadline: its exit code (128 + the signal when killed), or nullopt
// while it still runs.
inline std::optional<int> wait_until(sidecore::ChildProcess& child, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  const auto status = child.wait_for(std::max(left, std::chrono::milliseconds(0)));
  if (!status) return std::nullopt;
  return status->shell_code();
}

// Bounds on how long a failure takes to surface, stretched by SIDECORE_TEST_TIME_SCALE (time_scale.h).
inline std::chrono::milliseconds scaled(std::chrono::milliseconds bound) {
  return std::chrono::milliseconds(static_cast<long>(static_cast<double>(bound.count()) * sidecore_test_time_scale()));
}

inline bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

struct CommandResult {
  int exit_code = -1;      // the command's exit code (128 + the signal); 128 + 9 after a timeout kill
  bool timed_out = false;  // it overran its deadline and was killed (with its process group)
  std::string out, err;
  std::chrono::milliseconds elapsed{0};
};

// Runs a command to completion, but never longer than `timeout`.
inline CommandResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                                 std::chrono::milliseconds timeout = 20s) {
  TempDir dir;
  const auto started = Clock::now();
  auto child = spawn(argv, env, dir.path() / "stdout", dir.path() / "stderr");
  CommandResult result;
  auto code = wait_until(child, started + timeout);
  if (!code) {
    result.timed_out = true;
    code = child.stop(0ms).shell_code();
  }
  result.exit_code = *code;
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  result.out = read_file(dir.path() / "stdout");
  result.err = read_file(dir.path() / "stderr");
  return result;
}

inline std::vector<std::string> nonempty_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  }
  return lines;
}

struct ExecutorOptions {
  std::string provider = "shm";
  std::string token;                    // put in SIDECORE_TOKEN; required
  std::string cores = "1";              // this machine has CPUs 0 and 1; tests run executors on 1
  std::vector<std::string> extra_args;  // e.g. {"--poll", "warm"}
  std::chrono::milliseconds ready_timeout{15000};
};

// A running `sidecore-executor --cores 1 --provider P --card-file DIR/card`, stopped on destruction:
// SIGTERM, a bounded wait, then SIGKILL. The constructor returns once the card file holds a card,
// and throws (after stopping the child) when the executor fails, exits or is not ready in time.
class ExecutorProcess {
 public:
  explicit ExecutorProcess(ExecutorOptions options) : options_(std::move(options)) {
    if (options_.token.empty()) throw std::invalid_argument("ExecutorProcess needs a token");
    std::vector<std::string> argv{executor_binary(), "--cores",     options_.cores,      "--provider",
                                  options_.provider, "--card-file", card_path().string()};
    argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
    child_ = spawn(argv, {"SIDECORE_TOKEN=" + options_.token}, dir_.path() / "stdout", dir_.path() / "stderr");
    try {
      card_ = sidecore::wait_for_card(card_path().string(),
                                      sidecore::card_writer(child_, "sidecore-executor (" + options_.provider + ")"),
                                      options_.ready_timeout);
    } catch (const sidecore::CardError& e) {
      stop();
      throw std::runtime_error(std::string(e.what()) + "; stderr:\n" + stderr_text());
    }
  }
  ~ExecutorProcess() { stop(); }
  ExecutorProcess(const ExecutorProcess&) = delete;
  ExecutorProcess& operator=(const ExecutorProcess&) = delete;

  // Stops the executor (idempotent) and returns its status: 0 for a clean exit on SIGTERM,
  // 128 + 9 when it had to be killed.
  int stop(std::chrono::milliseconds grace = 5000ms) {
    if (exit_code_) return *exit_code_;
    // Read before the stop: the last server to run may have rewritten it.
    const sidecore::CardFile last_card = sidecore::read_card_file(card_path().string());
    exit_code_ = child_.stop(grace).shell_code();
    killed_ = child_.needed_kill();
    if (killed_) {
      // A killed executor cannot remove its shared memory: do it for it, whichever server ran last.
      for (const auto& card : {card_, last_card.text}) {
        try {
          sidecore::remove_executor_leftovers(sidecore::parse_card(card));
        } catch (const sidecore::CardError&) {
        }
      }
    }
    return *exit_code_;
  }

  // Waits (without signalling it) for the executor to exit by itself; its status, or nullopt.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    if (!exit_code_) exit_code_ = wait_until(child_, Clock::now() + timeout);
    return exit_code_;
  }

  const std::string& card() const noexcept { return card_; }
  const std::string& token() const noexcept { return options_.token; }
  const std::string& provider() const noexcept { return options_.provider; }
  // Its pid while it has not been reaped; -1 after.
  pid_t pid() const noexcept { return exit_code_ ? -1 : child_.pid(); }
  bool needed_sigkill() const noexcept { return killed_; }
  std::filesystem::path card_path() const { return dir_.path() / "card"; }
  std::string stdout_text() const { return read_file(dir_.path() / "stdout"); }
  std::string stderr_text() const { return read_file(dir_.path() / "stderr"); }

 private:
  ExecutorOptions options_;
  TempDir dir_;
  sidecore::ChildProcess child_;
  std::string card_;
  std::optional<int> exit_code_;
  bool killed_ = false;
};

// A token unique to this run, so that one test's secret can be searched for in logs.
inline std::string fresh_token(const std::string& prefix = "tok") {
  static unsigned counter = 0;
  std::ostringstream text;
  text << prefix << std::hex << getpid() << 'x' << std::chrono::steady_clock::now().time_since_epoch().count() << 'x'
       << ++counter;
  return text.str();
}

// Client::wait() with a deadline, so a lost completion fails the test instead of hanging it.
inline std::optional<sidecore::Completion> wait_for(sidecore::Client& client, sidecore::TaskId id,
                                                    std::chrono::milliseconds timeout = 30s) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (auto done = client.test(id)) return done;
    if (Clock::now() > deadline) return std::nullopt;
  }
}

}  // namespace sidecore_test
