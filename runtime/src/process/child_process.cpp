#include "process/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char** environ;

namespace sidecore {
namespace {

using Clock = std::chrono::steady_clock;

// The steps spawn() itself takes in the child; a caller's setup numbers its own from kFirstSetupStep.
enum Step : int { step_group = 1, step_signals, step_parent_death, step_stdio, step_exec };

const char* step_name(int step) {
  switch (step) {
    case step_group: return "starting its own process group";
    case step_signals: return "resetting its signals";
    case step_parent_death: return "asking for a signal when its parent dies";
    case step_stdio: return "redirecting its stdio";
    default: return "?";
  }
}

// What the child reports through a close-on-exec pipe: the step that failed and its errno. End of
// file without a report means exec succeeded.
struct Report {
  int step;
  int error;
};

[[noreturn]] void fail_child(int report_fd, int step) {
  const Report report{step, errno};
  // Async-signal-safe; a pipe takes a write this small whole.
  [[maybe_unused]] auto ignored = write(report_fd, &report, sizeof report);
  _exit(127);
}

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

[[noreturn]] void throw_errno(const std::string& what) {
  const int error = errno;
  throw SpawnError(what + ": " + std::strerror(error), error);
}

// The child's and the parent's end of one standard stream.
struct StreamEnds {
  Fd child, parent;
};

StreamEnds open_stream(const Stdio& stdio, bool child_reads, int devnull) {
  StreamEnds ends;
  if (stdio.kind == Stdio::Kind::null) ends.child = Fd(fcntl(devnull, F_DUPFD_CLOEXEC, 3));
  if (stdio.kind == Stdio::Kind::fd) ends.child = Fd(fcntl(stdio.fd, F_DUPFD_CLOEXEC, 3));
  if (stdio.kind == Stdio::Kind::pipe) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
    Fd child_end(child_reads ? fds[0] : fds[1]);
    ends.parent = Fd(child_reads ? fds[1] : fds[0]);
    // Above 2, like the others: a parent without stdin could get 0 here, which the child's dup2
    // onto 0 for another stream would overwrite.
    ends.child = Fd(fcntl(child_end.get(), F_DUPFD_CLOEXEC, 3));
  }
  if (stdio.kind != Stdio::Kind::inherit && ends.child.get() < 0) throw_errno("duplicating a stdio descriptor");
  return ends;
}

// Puts `fd` on `target` for exec (dup2 clears close-on-exec; a descriptor already there keeps it).
bool place(int fd, int target) {
  if (fd < 0) return true;
  return fd == target ? fcntl(fd, F_SETFD, 0) == 0 : dup2(fd, target) == target;
}

// Everything the child touches, built before fork so that nothing allocates afterwards.
struct Prepared {
  std::vector<std::string> argv_storage, env_storage;
  std::vector<char*> argv, envp;
  explicit Prepared(const SpawnOptions& options) {
    argv_storage = options.argv;  // argv[0] as given, as execvp would pass it
    if (options.env) {
      env_storage = *options.env;
    } else {
      for (char** entry = environ; *entry != nullptr; ++entry) env_storage.emplace_back(*entry);
    }
    for (auto& arg : argv_storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    for (auto& entry : env_storage) envp.push_back(entry.data());
    envp.push_back(nullptr);
  }
};

struct ChildFds {
  int report, in, out, err;
};

[[noreturn]] void become_child(const SpawnOptions& options, const char* path, const Prepared& prepared, pid_t parent,
                               ChildFds fds) {
  if (options.group == SpawnOptions::Group::own_session && setsid() < 0) fail_child(fds.report, step_group);
  if (options.group == SpawnOptions::Group::own_group && setpgid(0, 0) != 0) fail_child(fds.report, step_group);
  if (options.reset_signals) {
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    for (int signal = 1; signal < NSIG; ++signal) {
      if (signal != SIGKILL && signal != SIGSTOP) sigaction(signal, &default_action, nullptr);  // a few refuse: fine
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail_child(fds.report, step_signals);
  }
  if (options.setup) {
    if (const int step = options.setup(); step != 0) fail_child(fds.report, step);
  }
  if (options.parent_death_signal != 0) {
    if (prctl(PR_SET_PDEATHSIG, options.parent_death_signal) != 0) fail_child(fds.report, step_parent_death);
    // A parent that died before the request has handed us to another process already.
    if (getppid() != parent) {
      errno = ESRCH;
      fail_child(fds.report, step_parent_death);
    }
  }
  if (!place(fds.in, STDIN_FILENO) || !place(fds.out, STDOUT_FILENO) || !place(fds.err, STDERR_FILENO)) {
    fail_child(fds.report, step_stdio);
  }
  if (!options.workdir.empty() && chdir(options.workdir.c_str()) != 0 && chdir("/") != 0) {
    fail_child(fds.report, step_stdio);
  }
  // Nothing of the parent's (sockets, log files, slurmstepd's credentials) leaks into the child.
  if (!options.keep_descriptors) syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  execve(path, prepared.argv.data(), prepared.envp.data());
  fail_child(fds.report, step_exec);
}

// Reads the child's report until exec closes the pipe. nullopt: exec succeeded.
std::optional<Report> read_report(int fd, Clock::time_point deadline, bool& timed_out) {
  Report report{};
  size_t have = 0;
  auto* bytes = reinterpret_cast<char*>(&report);
  timed_out = false;
  while (have < sizeof report) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      return std::nullopt;
    }
    pollfd entry{fd, POLLIN, 0};
    if (poll(&entry, 1, static_cast<int>(left)) <= 0) continue;
    const ssize_t got = read(fd, bytes + have, sizeof report - have);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return std::nullopt;
    have += static_cast<size_t>(got);
  }
  return report;
}

std::optional<ExitStatus> to_status(const siginfo_t& info) {
  if (info.si_pid == 0) return std::nullopt;
  if (info.si_code == CLD_EXITED) return ExitStatus{ExitStatus::Kind::exited, info.si_status};
  return ExitStatus{ExitStatus::Kind::signaled, info.si_status};
}

}  // namespace

int ExitStatus::shell_code() const noexcept {
  if (kind == Kind::exited) return value;
  if (kind == Kind::signaled) return 128 + value;
  return 1;
}

std::string ExitStatus::describe() const {
  if (kind == Kind::exited) return "exited with status " + std::to_string(value);
  if (kind == Kind::signaled) {
    return "was killed by signal " + std::to_string(value) + " (" + strsignal(value) + ")";
  }
  return "exited";
}

std::optional<std::string> find_program(const std::string& program, const std::string& path) {
  auto runnable = [](const std::string& file) {
    struct stat info {};
    return stat(file.c_str(), &info) == 0 && S_ISREG(info.st_mode) && access(file.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string::npos) return program;
  if (program.empty()) return std::nullopt;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find(':', start), path.size());
    const std::string folder = end == start ? "." : path.substr(start, end - start);
    if (const std::string candidate = folder + "/" + program; runnable(candidate)) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

ChildProcess ChildProcess::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) throw SpawnError("spawn: no program given", EINVAL);
  const char* path_env = std::getenv("PATH");
  const auto program = find_program(options.argv.front(), path_env != nullptr ? path_env : "/usr/bin:/bin");
  if (!program) throw SpawnError("cannot execute " + options.argv.front() + ": not found in PATH", ENOENT);
  Prepared prepared(options);

  Fd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (devnull.get() < 0) throw_errno("/dev/null");
  StreamEnds in = open_stream(options.in, true, devnull.get());
  StreamEnds out = open_stream(options.out, false, devnull.get());
  StreamEnds err = open_stream(options.err, false, devnull.get());
  int report_pipe[2];
  if (pipe2(report_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd report_read(report_pipe[0]), report_write(report_pipe[1]);

  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    become_child(options, program->c_str(), prepared, parent,
                 {report_write.get(), in.child.get(), out.child.get(), err.child.get()});
  }
  if (pid < 0) throw_errno("fork");
  report_write.reset();
  in.child.reset();
  out.child.reset();
  err.child.reset();

  ChildProcess child;
  child.pid_ = pid;
  child.own_group_ = options.group != SpawnOptions::Group::inherit;
  // The child is ours and unreaped until we wait for it, so its pid cannot have been reused.
  child.pidfd_ = pidfd_open(pid);
  if (child.pidfd_ < 0) {
    const int error = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    child.pid_ = -1;
    throw SpawnError(std::string("pidfd_open: ") + std::strerror(error), error);
  }
  bool timed_out = false;
  const auto report = read_report(report_read.get(), Clock::now() + options.exec_timeout, timed_out);
  if (report || timed_out) {
    child.stop(std::chrono::milliseconds(0));
    if (timed_out) throw SpawnError(options.argv.front() + " did not reach exec in time", ETIMEDOUT);
    std::string step = step_name(report->step);
    if (report->step == step_exec) {
      throw SpawnError("cannot execute " + *program + ": " + std::strerror(report->error), report->error);
    }
    if (report->step >= kFirstSetupStep && options.describe_setup_step) step = options.describe_setup_step(report->step);
    throw SpawnError(step + " failed: " + std::strerror(report->error), report->error);
  }
  child.stdin_ = in.parent.release();
  child.stdout_ = out.parent.release();
  child.stderr_ = err.parent.release();
  return child;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    release();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
    stdin_ = std::exchange(other.stdin_, -1);
    stdout_ = std::exchange(other.stdout_, -1);
    stderr_ = std::exchange(other.stderr_, -1);
    own_group_ = other.own_group_;
    needed_kill_ = other.needed_kill_;
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() { release(); }

void ChildProcess::release() noexcept {
  for (int* fd : {&pidfd_, &stdin_, &stdout_, &stderr_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void ChildProcess::close_stdin() noexcept {
  if (stdin_ >= 0) close(stdin_);
  stdin_ = -1;
}

bool ChildProcess::running() const noexcept {
  if (pidfd_ < 0 || status_) return false;
  pollfd entry{pidfd_, POLLIN, 0};
  return poll(&entry, 1, 0) == 0;  // a pidfd turns readable when its process exits
}

bool ChildProcess::signal(int signal) const noexcept {
  if (pidfd_ < 0 || status_) return false;
  return syscall(SYS_pidfd_send_signal, pidfd_, signal, nullptr, 0) == 0;
}

std::optional<ExitStatus> ChildProcess::wait_for(std::chrono::milliseconds timeout) noexcept {
  if (status_ || pidfd_ < 0) return status_.value_or(ExitStatus{});
  const auto deadline = Clock::now() + timeout;
  while (true) {
    // Rounded up: poll() never waits less than asked, and the grace is a lower bound.
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd entry{pidfd_, POLLIN, 0};
    const int ready = poll(&entry, 1, static_cast<int>(std::clamp<long long>(left, 0, 1'000'000)));
    if (ready > 0) break;
    if ((ready < 0 && errno == EINTR) || (ready == 0 && Clock::now() < deadline)) continue;
    return std::nullopt;
  }
  // Reap through the pidfd: a pid that someone else reaped (slurmstepd reaps any child) may belong
  // to another process by now. ECHILD: reaped already, or not our child.
  siginfo_t info{};
  int reaped = static_cast<int>(syscall(SYS_waitid, P_PIDFD, pidfd_, &info, WEXITED | WNOHANG, nullptr));
  if (reaped != 0 && errno == EINVAL) {  // a kernel before 5.4: the pid is ours until reaped
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      info.si_pid = pid_;
      info.si_code = WIFEXITED(status) ? CLD_EXITED : CLD_KILLED;
      info.si_status = WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status);
      reaped = 0;
    }
  }
  status_ = reaped == 0 ? to_status(info).value_or(ExitStatus{}) : ExitStatus{};
  return status_;
}

ExitStatus ChildProcess::wait() noexcept {
  while (true) {
    if (auto status = wait_for(std::chrono::hours(1))) return *status;
  }
}

ExitStatus ChildProcess::stop(std::chrono::milliseconds grace) noexcept {
  if (status_ || pidfd_ < 0) return status_.value_or(ExitStatus{});
  needed_kill_ = false;
  if (running()) {
    signal(SIGTERM);
    if (auto status = wait_for(grace)) return *status;
    needed_kill_ = true;
    // Unreaped, it still holds its pid and process group: neither can have been reused.
    if (own_group_) kill(-pid_, SIGKILL);
    signal(SIGKILL);
  }
  // A process stuck in the kernel may take a while even to die; never wait on it for ever.
  return wait_for(std::chrono::seconds(5)).value_or(ExitStatus{});
}

}  // namespace sidecore
