#include "executor_process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "card.hpp"
#include "card_reference.hpp"
#include "process/card_wait.hpp"

namespace sidecore::spank {
namespace {

// The steps of the child's setup that can fail, numbered after ChildProcess's own.
enum Stage : int {
  stage_regain_root = kFirstSetupStep,
  stage_cgroup_mkdir,
  stage_cgroup_mems,
  stage_cgroup_cpus,
  stage_cgroup_join,
  stage_setgroups,
  stage_setgid,
  stage_setuid,
  stage_drop_check,
  stage_affinity,
};

const char* stage_name(int stage) {
  switch (stage) {
    case stage_regain_root: return "regaining root to drop privileges";
    case stage_cgroup_mkdir: return "creating its cgroup";
    case stage_cgroup_mems: return "writing cpuset.mems of its cgroup";
    case stage_cgroup_cpus: return "writing cpuset.cpus of its cgroup";
    case stage_cgroup_join: return "moving it into its cgroup";
    case stage_setgroups: return "setgroups";
    case stage_setgid: return "setresgid";
    case stage_setuid: return "setresuid";
    case stage_drop_check: return "checking the privilege drop";
    case stage_affinity: return "sched_setaffinity";
  }
  return "?";
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

// What the child's setup needs, built before fork so that nothing allocates afterwards.
struct Prepared {
  // The cgroup leaf's folder and files (empty folder: no cgroup to join).
  std::string cgroup_dir, cgroup_mems_file, cgroup_cpus_file, cgroup_procs_file, cgroup_mems, cgroup_cpus;
  cpu_set_t* cpus = nullptr;
  size_t cpus_bytes = 0;
  explicit Prepared(const LaunchSpec& spec) {
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
// v1 cpuset has none and refuses processes) and moves this process into it. 0, or the failed stage.
int join_cgroup(const Prepared& prepared) {
  if (prepared.cgroup_dir.empty()) return 0;
  if (mkdir(prepared.cgroup_dir.c_str(), 0755) != 0) {
    if (errno != EEXIST) return stage_cgroup_mkdir;
    // A leaf of the same step (a requeued job whose epilog did not run) is reused only when empty:
    // never join an older executor.
    const int fd = open(prepared.cgroup_procs_file.c_str(), O_RDONLY | O_CLOEXEC);
    char byte = 0;
    const ssize_t got = fd >= 0 ? read(fd, &byte, 1) : -1;
    if (fd >= 0) close(fd);
    if (got != 0) {
      errno = EEXIST;
      return stage_cgroup_mkdir;
    }
  }
  if (!prepared.cgroup_mems.empty() &&
      !write_cgroup_file(prepared.cgroup_mems_file.c_str(), prepared.cgroup_mems.data(), prepared.cgroup_mems.size())) {
    return stage_cgroup_mems;
  }
  if (!write_cgroup_file(prepared.cgroup_cpus_file.c_str(), prepared.cgroup_cpus.data(), prepared.cgroup_cpus.size())) {
    return stage_cgroup_cpus;
  }
  // Our pid in decimal, without the allocating formatters.
  char digits[16];
  size_t length = 0;
  for (pid_t pid = getpid(); pid > 0 && length < sizeof digits; pid /= 10) digits[length++] = static_cast<char>('0' + pid % 10);
  char text[16];
  for (size_t i = 0; i < length; ++i) text[i] = digits[length - 1 - i];
  return write_cgroup_file(prepared.cgroup_procs_file.c_str(), text, length) ? 0 : stage_cgroup_join;
}


// Runs in the child, after setsid and the signal reset: joins the cgroup and drops to the job's user,
// pinned to its CPUs. 0, or the stage that failed (errno set).
int become_job_user(const LaunchSpec& spec, const Prepared& prepared) {
  // In user_init only the effective uid is the user's; the saved uid is still root. Take root back,
  // then drop real, effective and saved ids together, groups first.
  uid_t real = 0, effective = 0, saved = 0;
  getresuid(&real, &effective, &saved);
  const bool privileged = real == 0 || effective == 0 || saved == 0;
  if (privileged) {
    if (effective != 0 && setresuid(static_cast<uid_t>(-1), 0, static_cast<uid_t>(-1)) != 0) return stage_regain_root;
    if (const int failed = join_cgroup(prepared); failed != 0) return failed;
    if (setgroups(spec.groups.size(), spec.groups.data()) != 0) return stage_setgroups;
    if (setresgid(spec.gid, spec.gid, spec.gid) != 0) return stage_setgid;
    if (setresuid(spec.uid, spec.uid, spec.uid) != 0) return stage_setuid;
    if (spec.uid != 0 && (setresuid(static_cast<uid_t>(-1), 0, static_cast<uid_t>(-1)) == 0 || geteuid() == 0)) {
      errno = EPERM;
      return stage_drop_check;
    }
  } else if (real != spec.uid || getgid() != spec.gid) {
    // Without privileges (unit tests as a normal user) the only possible target is ourselves.
    errno = EPERM;
    return stage_setuid;
  } else if (const int failed = join_cgroup(prepared); failed != 0) {
    return failed;
  }
  return sched_setaffinity(0, prepared.cpus_bytes, prepared.cpus) == 0 ? 0 : stage_affinity;
}

}  // namespace

LaunchResult launch_executor(const LaunchSpec& spec) {
  LaunchResult result;
  if (spec.cpus.empty()) {
    result.error = "the executor did not start: no CPUs to run on";
    return result;
  }
  if (access(spec.executable.c_str(), X_OK) != 0) {
    result.error = "the executor did not start: cannot execute " + spec.executable + ": " + std::strerror(errno);
    return result;
  }
  const Prepared prepared(spec);
  SpawnOptions options;
  options.argv = {spec.executable};
  options.argv.insert(options.argv.end(), spec.args.begin(), spec.args.end());
  options.env = spec.env;
  options.in = Stdio::null();
  options.out = Stdio::null();
  options.err = spec.stderr_fd >= 0 ? Stdio::to_fd(spec.stderr_fd) : Stdio::null();
  options.group = SpawnOptions::Group::own_session;
  // A slurmstepd that is killed outright (SIGKILL, OOM) never runs the plugin's stop: the executor
  // would live on, orphaned in its own session, holding its card folder and shared memory. It gets
  // SIGTERM instead, and stops as it does at a normal step end (removing its card, its folder and
  // its shm). The signal fires when the *thread* that forked it exits: user_init runs in
  // slurmstepd's main thread, which lives until the step is over. (It survives execve: the
  // executor is not set-id.)
  options.parent_death_signal = SIGTERM;
  options.workdir = spec.workdir.empty() ? "/" : spec.workdir;
  options.setup = [&spec, &prepared] { return become_job_user(spec, prepared); };
  options.describe_setup_step = [&spec](int stage) {
    std::string name = stage_name(stage);
    if (stage >= stage_cgroup_mkdir && stage <= stage_cgroup_join && spec.cgroup) name += " " + spec.cgroup->directory;
    return name;
  };
  options.exec_timeout = spec.ready_timeout;
  ChildProcess process;
  try {
    process = ChildProcess::spawn(options);
  } catch (const SpawnError& e) {
    result.error = std::string("the executor did not start: ") + e.what();
    return result;
  }

  // Exec succeeded. The card comes once libfabric is loaded (about 0.3 s on Debian 12): the tasks
  // may wait for it themselves, in parallel with their own start-up.
  if (!spec.wait_for_card) {
    result.card = format_card_reference(spec.card_file, process.pid(), spec.ready_timeout);
    result.process = std::move(process);
    return result;
  }
  try {
    result.card = wait_for_card(spec.card_file, card_writer(process), spec.ready_timeout);
  } catch (const CardError& e) {
    // An error line or a timeout: it is not serving, and never will for this step.
    process.stop(std::chrono::milliseconds(0));
    result.error = e.what();
    return result;
  }
  result.process = std::move(process);
  return result;
}

}  // namespace sidecore::spank
