// The one way Sidecore starts, follows and stops a child process: sidecore-run, the Slurm plugin
// (inside slurmstepd), the bench and the tests all use it.
//
// Everything the child needs (argv, envp, descriptors) is built before fork(); between fork and
// exec the child makes only async-signal-safe calls, so spawning is safe from a multi-threaded
// parent. spawn() returns once exec has succeeded, or throws SpawnError naming the step that failed
// in the child. The parent follows the child through a pidfd: it tells when the child exits and
// signals it without racing a reused pid, even where someone else (slurmstepd) may reap it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sidecore {

// Why spawn() failed: the step (as worded by spawn, or by the caller for its own child setup) and
// the errno it failed with (0 when there is none).
class SpawnError : public std::runtime_error {
 public:
  SpawnError(const std::string& what, int error_number) : std::runtime_error(what), error_number_(error_number) {}
  int error_number() const noexcept { return error_number_; }

 private:
  int error_number_;
};

// What became of one of the child's standard streams.
struct Stdio {
  enum class Kind { inherit, null, fd, pipe };
  Kind kind = Kind::inherit;
  int fd = -1;  // for Kind::fd: dup'ed onto the stream in the child; the caller keeps it

  static Stdio inherit() { return {}; }
  static Stdio null() { return {Kind::null, -1}; }
  static Stdio to_fd(int fd) { return {Kind::fd, fd}; }
  // A pipe to or from the parent, whose end ChildProcess owns (stdin_fd(), stdout_fd(), stderr_fd()).
  static Stdio pipe() { return {Kind::pipe, -1}; }
};

struct SpawnOptions {
  // argv[0] is the program: a path, or a name looked up in PATH (the parent's) before fork.
  std::vector<std::string> argv;
  // The whole environment, "KEY=VALUE"; nullopt: the parent's.
  std::optional<std::vector<std::string>> env;
  Stdio in, out, err;
  enum class Group { inherit, own_group, own_session };
  // own_group: a terminal's Ctrl-C does not reach the child, and kill(-pid) reaches what it starts.
  Group group = Group::inherit;
  // Signal the child gets when the *thread* that spawned it exits (0: none). Set after `setup`, since
  // the kernel clears it on a change of credentials.
  int parent_death_signal = 0;
  // Every signal at its default action and none blocked (a parent may have blocked or ignored some:
  // both survive exec).
  bool reset_signals = true;
  std::string workdir;  // empty: the parent's; unreachable: "/"
  // Whether the child inherits the parent's descriptors above 2 that are not close-on-exec (a
  // user's command may expect them: `3>log`, a make jobserver). Otherwise they close at exec.
  bool keep_descriptors = false;
  // Runs in the child after the group and signals, before the parent-death signal, stdio and exec:
  // async-signal-safe calls only. Returns 0, or a step number of the caller's (>= kFirstSetupStep)
  // with errno set; spawn() then throws with describe_setup_step(step) and that errno.
  std::function<int()> setup;
  std::function<std::string(int step)> describe_setup_step;
  // How long spawn() waits for the exec (or the setup's failure) before it kills the child.
  std::chrono::milliseconds exec_timeout{10'000};
};

inline constexpr int kFirstSetupStep = 100;

// How a child ended.
struct ExitStatus {
  enum class Kind { exited, signaled, unknown };  // unknown: someone else reaped it
  Kind kind = Kind::unknown;
  int value = 0;  // the exit code, or the signal

  bool success() const noexcept { return kind == Kind::exited && value == 0; }
  // The shell's convention: the exit code, or 128 + the signal (1 when unknown).
  int shell_code() const noexcept;
  // "exited with status 3", "was killed by signal 9 (Killed)", "exited".
  std::string describe() const;
};

// Owns a spawned child: its pidfd and the parent's ends of its pipes. Move-only. The destructor
// signals nothing and does not wait: stop() is explicit, so that a copy of the owner in a forked
// process (a task forked by slurmstepd) never touches the child.
class ChildProcess {
 public:
  // Throws SpawnError.
  static ChildProcess spawn(const SpawnOptions& options);

  ChildProcess() = default;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const noexcept { return pid_; }
  // Whether it still runs (false once it has exited, reaped or not).
  bool running() const noexcept;
  // Waits up to `timeout` for it to exit and reaps it; nullopt while it still runs.
  std::optional<ExitStatus> wait_for(std::chrono::milliseconds timeout) noexcept;
  ExitStatus wait() noexcept;
  // SIGTERM, up to `grace` for it to exit, then SIGKILL (to its process group too when it has its
  // own); reaps it. Its status: Kind::unknown when someone else reaped it.
  ExitStatus stop(std::chrono::milliseconds grace) noexcept;
  // True when the last stop() had to use SIGKILL.
  bool needed_kill() const noexcept { return needed_kill_; }
  // Sends `signal` through the pidfd. False once it has exited.
  bool signal(int signal) const noexcept;

  // The parent's ends of pipes asked for with Stdio::pipe() (-1 otherwise); still owned here.
  int stdin_fd() const noexcept { return stdin_; }
  int stdout_fd() const noexcept { return stdout_; }
  int stderr_fd() const noexcept { return stderr_; }
  // Closes the child's stdin pipe (its end of input).
  void close_stdin() noexcept;

 private:
  void release() noexcept;

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int stdin_ = -1, stdout_ = -1, stderr_ = -1;
  bool own_group_ = false;
  bool needed_kill_ = false;
  std::optional<ExitStatus> status_;  // once reaped
};

// Where `program` runs from: itself when it holds a '/', else the first executable match in `path`
// (a PATH-style list). nullopt when there is none.
std::optional<std::string> find_program(const std::string& program, const std::string& path);

}  // namespace sidecore
