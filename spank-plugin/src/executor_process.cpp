#include "executor_process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "card_reference.hpp"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace sidecore::spank {
namespace {

using Clock = std::chrono::steady_clock;

// What the child reports to the plugin through a close-on-exec pipe: the step that failed and its
// errno. End of file without a report means exec succeeded.
struct Report {
  int stage;  // one of the Stage values
  int value;  // errno
};
enum Stage : int {
  stage_setsid = 1,
  stage_signals,
  stage_regain_root,
  stage_cgroup_mkdir,
  stage_cgroup_mems,
  stage_cgroup_cpus,
  stage_cgroup_join,
  stage_setgroups,
  stage_setgid,
  stage_setuid,
  stage_drop_check,
  stage_parent_death,
  stage_affinity,
  stage_stdio,
  stage_exec,
};

const char* stage_name(int stage) {
  switch (stage) {
    case stage_setsid: return "setsid";
    case stage_signals: return "resetting signals";
    case stage_regain_root: return "regaining root to drop privileges";
    case stage_cgroup_mkdir: return "creating its cgroup";
    case stage_cgroup_mems: return "writing cpuset.mems of its cgroup";
    case stage_cgroup_cpus: return "writing cpuset.cpus of its cgroup";
    case stage_cgroup_join: return "moving it into its cgroup";
    case stage_setgroups: return "setgroups";
    case stage_setgid: return "setresgid";
    case stage_setuid: return "setresuid";
    case stage_drop_check: return "checking the privilege drop";
    case stage_parent_death: return "asking for SIGTERM when its parent dies";
    case stage_affinity: return "sched_setaffinity";
    case stage_stdio: return "redirecting stdio";
    case stage_exec: return "execve";
  }
  return "?";
}

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_send_signal(int pidfd, int signal) { return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0)); }

void write_report(int fd, Report report) {
  // Async-signal-safe; a short write to a pipe of this size cannot happen.
  [[maybe_unused]] auto ignored = write(fd, &report, sizeof report);
}

[[noreturn]] void fail_child(int fd, int stage) {
  write_report(fd, {stage, errno});
  _exit(127);
}

// Writes `text` to the cgroup file `path` (async-signal-safe). False with errno set on failure.
// Never creates a file: a path that is not a cgroup's fails. (O_TRUNC changes nothing on a cgroup
// file system; it lets unit tests use a plain tree.)
bool write_cgroup_file(const char* path, const char* text, size_t length) {
  const int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return false;
  const bool written = write(fd, text, length) == static_cast<ssize_t>(length);
  const int error = errno;
  close(fd);
  errno = error;
  return written;
}

// Everything the child needs, built before fork so that nothing allocates afterwards.
struct Prepared {
  // The cgroup leaf's folder and files (empty folder: no cgroup to join).
  std::string cgroup_dir, cgroup_mems_file, cgroup_cpus_file, cgroup_procs_file, cgroup_mems, cgroup_cpus;
  std::vector<std::string> argv_storage;
  std::vector<char*> argv;
  std::vector<char*> envp;
  cpu_set_t* cpus = nullptr;
  size_t cpus_bytes = 0;
  explicit Prepared(const LaunchSpec& spec) {
    argv_storage.push_back(spec.executable);
    argv_storage.insert(argv_storage.end(), spec.args.begin(), spec.args.end());
    for (auto& arg : argv_storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    for (const auto& entry : spec.env) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);
    const int count = CoreSet::kMaxCpu + 1;
    cpus = CPU_ALLOC(count);
    cpus_bytes = CPU_ALLOC_SIZE(count);
    CPU_ZERO_S(cpus_bytes, cpus);
    for (int cpu : spec.cpus.cores()) CPU_SET_S(static_cast<size_t>(cpu), cpus_bytes, cpus);
    if (spec.cgroup) {
      cgroup_dir = spec.cgroup->directory;
      cgroup_mems_file = cgroup_dir + "/cpuset.mems";
      cgroup_cpus_file = cgroup_dir + "/cpuset.cpus";
      cgroup_procs_file = cgroup_dir + "/cgroup.procs";
      cgroup_mems = spec.cgroup->mems;
      cgroup_cpus = spec.cgroup->cpus;
    }
  }
  ~Prepared() { CPU_FREE(cpus); }
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;
};

// Creates the executor's cgroup leaf, gives it its CPUs (and, on v1, the job's memory nodes: a new
// v1 cpuset has none and refuses processes) and moves this process into it.
void join_cgroup(const Prepared& prepared, int report_fd) {
  if (prepared.cgroup_dir.empty()) return;
  if (mkdir(prepared.cgroup_dir.c_str(), 0755) != 0) {
    if (errno != EEXIST) fail_child(report_fd, stage_cgroup_mkdir);
    // A leaf of the same step (a requeued job whose epilog did not run) is reused only when empty:
    // never join an older executor.
    const int fd = open(prepared.cgroup_procs_file.c_str(), O_RDONLY | O_CLOEXEC);
    char byte = 0;
    const ssize_t got = fd >= 0 ? read(fd, &byte, 1) : -1;
    if (fd >= 0) close(fd);
    if (got != 0) {
      errno = EEXIST;
      fail_child(report_fd, stage_cgroup_mkdir);
    }
  }
  if (!prepared.cgroup_mems.empty() &&
      !write_cgroup_file(prepared.cgroup_mems_file.c_str(), prepared.cgroup_mems.data(), prepared.cgroup_mems.size())) {
    fail_child(report_fd, stage_cgroup_mems);
  }
  if (!write_cgroup_file(prepared.cgroup_cpus_file.c_str(), prepared.cgroup_cpus.data(), prepared.cgroup_cpus.size())) {
    fail_child(report_fd, stage_cgroup_cpus);
  }
  // Our pid in decimal, without the allocating formatters.
  char digits[16];
  size_t length = 0;
  for (pid_t pid = getpid(); pid > 0 && length < sizeof digits; pid /= 10) digits[length++] = static_cast<char>('0' + pid % 10);
  char text[16];
  for (size_t i = 0; i < length; ++i) text[i] = digits[length - 1 - i];
  if (!write_cgroup_file(prepared.cgroup_procs_file.c_str(), text, length)) fail_child(report_fd, stage_cgroup_join);
}

// Runs in the child: becomes the executor or reports why not. `parent` is the process that forked it.
[[noreturn]] void become_executor(const LaunchSpec& spec, const Prepared& prepared, pid_t parent, int report_fd,
                                  int devnull_fd) {
  if (setsid() < 0) fail_child(report_fd, stage_setsid);

  // slurmstepd blocks TERM, HUP, INT, USR1/2 and more, and ignored signals stay ignored across exec.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  for (int signal = 1; signal < NSIG; ++signal) {
    if (signal == SIGKILL || signal == SIGSTOP) continue;
    sigaction(signal, &default_action, nullptr);  // fails harmlessly for the few it cannot change
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail_child(report_fd, stage_signals);

  // In user_init only the effective uid is the user's; the saved uid is still root. Take root back,
  // then drop real, effective and saved ids together, groups first.
  uid_t real = 0, effective = 0, saved = 0;
  getresuid(&real, &effective, &saved);
  const bool privileged = real == 0 || effective == 0 || saved == 0;
  if (privileged) {
    if (effective != 0 && setresuid(static_cast<uid_t>(-1), 0, static_cast<uid_t>(-1)) != 0) {
      fail_child(report_fd, stage_regain_root);
    }
    join_cgroup(prepared, report_fd);
    if (setgroups(spec.groups.size(), spec.groups.data()) != 0) fail_child(report_fd, stage_setgroups);
    if (setresgid(spec.gid, spec.gid, spec.gid) != 0) fail_child(report_fd, stage_setgid);
    if (setresuid(spec.uid, spec.uid, spec.uid) != 0) fail_child(report_fd, stage_setuid);
    if (spec.uid != 0 && (setresuid(static_cast<uid_t>(-1), 0, static_cast<uid_t>(-1)) == 0 || geteuid() == 0)) {
      errno = EPERM;
      fail_child(report_fd, stage_drop_check);
    }
  } else if (real != spec.uid || getgid() != spec.gid) {
    // Without privileges (unit tests as a normal user) the only possible target is ourselves.
    errno = EPERM;
    fail_child(report_fd, stage_setuid);
  } else {
    join_cgroup(prepared, report_fd);
  }

  // A slurmstepd that is killed outright (SIGKILL, OOM) never runs the plugin's stop: the executor
  // would live on, orphaned in its own session, holding its card folder and shared memory. It gets
  // SIGTERM instead, and stops as it does at a normal step end (removing its card, its folder and
  // its shm). The signal fires when the *thread* that forked us exits: user_init runs in
  // slurmstepd's main thread, which lives until the step is over. The kernel clears the setting on
  // any change of credentials, so it comes after the drop; a parent that died before it was set has
  // already handed us to another process, which getppid() shows. (It survives execve: the executor
  // is not set-id.)
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) fail_child(report_fd, stage_parent_death);
  if (getppid() != parent) {
    errno = ESRCH;
    fail_child(report_fd, stage_parent_death);
  }

  if (sched_setaffinity(0, prepared.cpus_bytes, prepared.cpus) != 0) fail_child(report_fd, stage_affinity);

  const int error_fd = spec.stderr_fd >= 0 ? spec.stderr_fd : devnull_fd;
  if (dup2(devnull_fd, STDIN_FILENO) < 0 || dup2(devnull_fd, STDOUT_FILENO) < 0 ||
      dup2(error_fd, STDERR_FILENO) < 0) {
    fail_child(report_fd, stage_stdio);
  }
  if (spec.workdir.empty() || chdir(spec.workdir.c_str()) != 0) {
    if (chdir("/") != 0) fail_child(report_fd, stage_stdio);
  }
  // Nothing of slurmstepd's (sockets, credentials, log files) may leak into the executor.
  syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  execve(prepared.argv[0], prepared.argv.data(), prepared.envp.data());
  fail_child(report_fd, stage_exec);
}

// Reads one report, waiting until `deadline`. False on end of file or timeout (`timed_out` says).
bool read_report(int fd, Report& report, Clock::time_point deadline, bool& timed_out) {
  timed_out = false;
  size_t have = 0;
  auto* bytes = reinterpret_cast<char*>(&report);
  while (have < sizeof report) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      return false;
    }
    pollfd entry{fd, POLLIN, 0};
    int ready = poll(&entry, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    ssize_t got = read(fd, bytes + have, sizeof report - have);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    have += static_cast<size_t>(got);
  }
  return true;
}

std::string describe_failure(const Report& report, const LaunchSpec& spec) {
  std::string stage = stage_name(report.stage);
  if (report.stage >= stage_cgroup_mkdir && report.stage <= stage_cgroup_join && spec.cgroup) {
    stage += " " + spec.cgroup->directory;
  }
  return stage + " failed: " + std::strerror(report.value);
}

}  // namespace

ExecutorProcess::ExecutorProcess(ExecutorProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), pidfd_(std::exchange(other.pidfd_, -1)) {}

ExecutorProcess& ExecutorProcess::operator=(ExecutorProcess&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) close(pidfd_);
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::exchange(other.pidfd_, -1);
  }
  return *this;
}

ExecutorProcess::~ExecutorProcess() {
  if (pidfd_ >= 0) close(pidfd_);
}

bool ExecutorProcess::running() const noexcept {
  if (pidfd_ < 0) return false;
  pollfd entry{pidfd_, POLLIN, 0};
  return poll(&entry, 1, 0) == 0;  // a pidfd turns readable when its process exits
}

bool ExecutorProcess::stop(std::chrono::milliseconds grace) noexcept {
  if (pidfd_ < 0) return true;
  auto wait_exit = [this](std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd entry{pidfd_, POLLIN, 0};
      int ready = poll(&entry, 1, static_cast<int>(std::max<long long>(left, 0)));
      if (ready > 0) return true;
      if (ready < 0 && errno == EINTR) continue;
      return false;
    }
  };
  bool graceful = true;
  if (running()) {
    pidfd_send_signal(pidfd_, SIGTERM);
    if (!wait_exit(grace)) {
      graceful = false;
      pidfd_send_signal(pidfd_, SIGKILL);
      wait_exit(std::chrono::milliseconds(2000));
    }
  }
  close(pidfd_);
  pidfd_ = -1;
  // Reap it if slurmstepd has not; ECHILD (already reaped, or not our child) is fine.
  waitpid(pid_, nullptr, WNOHANG);
  return graceful;
}

std::string ExecutorProcess::exit_description() {
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return "exited";
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "exited";
}

LaunchResult launch_executor(const LaunchSpec& spec) {
  LaunchResult result;
  if (spec.cpus.empty()) {
    result.error = "no CPUs to run on";
    return result;
  }
  if (access(spec.executable.c_str(), X_OK) != 0) {
    result.error = "cannot execute " + spec.executable + ": " + std::strerror(errno);
    return result;
  }
  Prepared prepared(spec);
  int report_pipe[2];
  if (pipe2(report_pipe, O_CLOEXEC) != 0) {
    result.error = std::string("pipe2: ") + std::strerror(errno);
    return result;
  }
  const int devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child == 0) {
    close(report_pipe[0]);
    become_executor(spec, prepared, parent, report_pipe[1], devnull_fd);
  }
  close(report_pipe[1]);
  if (devnull_fd >= 0) close(devnull_fd);
  if (child < 0) {
    close(report_pipe[0]);
    result.error = std::string("fork: ") + std::strerror(errno);
    return result;
  }
  // Nobody reaps the child before user_init returns (slurmstepd's task loop has not started), so
  // the pid is still ours here, exited or not.
  const int pidfd = pidfd_open(child);
  if (pidfd < 0) {
    result.error = std::string("pidfd_open: ") + std::strerror(errno);
    close(report_pipe[0]);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return result;
  }
  ExecutorProcess process(child, pidfd);

  const auto deadline = Clock::now() + spec.ready_timeout;
  Report report{};
  bool timed_out = false;
  const bool failed_before_exec = read_report(report_pipe[0], report, deadline, timed_out);
  close(report_pipe[0]);
  if (failed_before_exec || timed_out) {
    process.stop(std::chrono::milliseconds(0));
    result.error = failed_before_exec ? describe_failure(report, spec) : "the executor did not start in time";
    return result;
  }

  // Exec succeeded. The card comes once libfabric is loaded (about 0.3 s on Debian 12): the tasks
  // may wait for it themselves, in parallel with their own start-up.
  if (!spec.wait_for_card) {
    result.card = format_card_reference(spec.card_file, process.pid(), spec.ready_timeout);
    result.process = std::move(process);
    return result;
  }
  // Otherwise wait for the card, which the executor writes atomically once it serves.
  while (true) {
    std::ifstream card(spec.card_file);
    if (card) {
      std::stringstream text;
      text << card.rdbuf();
      std::string line = text.str();
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      if (!line.empty()) {
        result.card = std::move(line);
        result.process = std::move(process);
        return result;
      }
    }
    if (!process.running()) {
      result.error = "the executor " + process.exit_description() + " before it was ready";
      process.stop(std::chrono::milliseconds(0));
      return result;
    }
    if (Clock::now() >= deadline) {
      process.stop(std::chrono::milliseconds(0));
      result.error = "the executor was not ready within " + std::to_string(spec.ready_timeout.count()) + " ms";
      return result;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace sidecore::spank
