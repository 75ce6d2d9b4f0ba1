#include "plugin.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "card.hpp"
#include "executor_leftovers.hpp"
#include "lease.hpp"
#include "plan.hpp"
#include "process/card_wait.hpp"
#include "token.hpp"

namespace sidecore::spank {
namespace {

// Slurm's ids above SLURM_MAX_NORMAL_STEP_ID are the batch, extern, interactive and pending steps.
constexpr uint32_t kMaxNormalStepId = 0xfffffff0;
constexpr uint32_t kBatchStep = 0xfffffffb;
constexpr uint32_t kExternStep = 0xfffffffc;

bool is_absolute_directory(const std::string& path) {
  struct stat info {};
  return !path.empty() && path.front() == '/' && stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// `env` with every variable in `set` replaced or added.
std::vector<std::string> with_variables(std::vector<std::string> env,
                                        const std::vector<std::pair<std::string, std::string>>& set) {
  for (const auto& [name, value] : set) {
    const std::string prefix = name + "=";
    std::erase_if(env, [&](const std::string& entry) { return entry.rfind(prefix, 0) == 0; });
    env.push_back(prefix + value);
  }
  return env;
}

// The executor's providers: shm for the node's own ranks; for a step on several nodes also the
// admin's cross-node provider (auto: the executor picks, preferring an active RDMA port).
std::vector<std::string> provider_args(const AdminConfig& config, uint32_t node_count) {
  std::vector<std::string> args{"--provider", "shm"};
  if (node_count > 1) {
    args.push_back("--remote-provider");
    args.push_back(config.provider);
  }
  return args;
}

// Removes the card folder: the card and whatever an executor stopped mid-write left beside it (a
// temporary card). Files only, without following links: the folder belongs to the job's user.
void remove_card_folder(const std::string& folder) {
  if (DIR* dir = opendir(folder.c_str())) {
    while (const dirent* entry = readdir(dir)) {
      const std::string_view name = entry->d_name;
      if (name != "." && name != "..") unlinkat(dirfd(dir), entry->d_name, 0);
    }
    closedir(dir);
  }
  rmdir(folder.c_str());
}

// The step token srun put in the job's environment, when it looks like one (32 hex digits).
std::string step_token(const std::vector<std::string>& job_env) {
  const std::string prefix = std::string(kStepTokenVariable) + "=";
  for (const auto& entry : job_env) {
    if (entry.rfind(prefix, 0) != 0) continue;
    const std::string value = entry.substr(prefix.size());
    if (value.size() == 32 && value.find_first_not_of("0123456789abcdef") == std::string::npos) return value;
  }
  return "";
}

}  // namespace

Plugin::Plugin(SpankHost& host, std::string default_executor, CoreMapper map_cores, CgroupReader read_cgroups)
    : host_(host),
      default_executor_(std::move(default_executor)),
      map_cores_(std::move(map_cores)),
      read_cgroups_(std::move(read_cgroups)) {
  config_.executor = default_executor_;
}

void Plugin::log(LogLevel level, const std::string& message) {
  if (level < config_.log_level) return;
  host_.log(level, "sidecore: " + message);
}

std::optional<pid_t> Plugin::executor_pid() const {
  if (!executor_) return std::nullopt;
  return executor_->pid();
}

int Plugin::init(const std::vector<std::string>& args) try {
  AdminParse parsed = parse_admin_args(args, default_executor_);
  config_ = parsed.config;
  // Users of srun and sbatch cannot fix the admin's line: report it where the admin looks.
  const Context context = host_.context();
  if (context == Context::remote || context == Context::slurmd || context == Context::job_script) {
    for (const auto& error : parsed.errors) host_.log(LogLevel::error, "sidecore: plugstack.conf: " + error);
  }
  if (context == Context::slurmd) check_node_cgroups();
  return 0;
} catch (const std::exception& e) {
  host_.log(LogLevel::error, std::string("sidecore: init: ") + e.what());
  return 0;
}

// Once, when slurmd starts: a cgroup= the node cannot honour is the admin's to fix, and said once
// in slurmd's log rather than once per step.
void Plugin::check_node_cgroups() {
  if (config_.cgroup != CgroupMode::v1 && config_.cgroup != CgroupMode::v2) return;
  const CgroupView view = read_cgroups_("/proc/self");
  std::string missing;
  if (config_.cgroup == CgroupMode::v1) {
    const bool found = std::any_of(view.mounts.begin(), view.mounts.end(), [](const CgroupMount& mount) {
      return mount.version == 1 && std::find(mount.controllers.begin(), mount.controllers.end(), "cpuset") != mount.controllers.end();
    });
    if (!found) missing = "this node mounts no cgroup v1 cpuset hierarchy";
  } else {
    const CgroupMount* mount = cgroup2_mount(view);
    if (mount == nullptr) {
      missing = "this node mounts no cgroup v2 hierarchy";
    } else {
      std::ifstream in(mount->mount_point + "/cgroup.controllers");
      std::string controllers;
      std::getline(in, controllers);
      const std::vector<std::string> names = split(controllers, ' ');
      if (std::find(names.begin(), names.end(), "cpuset") == names.end()) {
        missing = "this node's cgroup v2 hierarchy (" + mount->mount_point + ") has no cpuset controller";
      }
    }
  }
  if (missing.empty()) return;
  host_.log(LogLevel::error, std::string("sidecore: plugstack.conf: cgroup=") + to_string(config_.cgroup) + ", but " +
                                 missing + ": steps on this node run without executors (use cgroup=auto, or give the node that hierarchy)");
}

int Plugin::option(OptionId id, const char* value, bool remote) try {
  std::optional<std::string> error;
  switch (id) {
    case OptionId::offload: error = parse_offload_flag(value, options_); break;
    case OptionId::poll: error = parse_poll_flag(value, options_); break;
    case OptionId::lib: error = parse_lib_flag(value, options_); break;
    case OptionId::stats: error = parse_stats_flag(value, options_); break;
    case OptionId::lease:
      error = parse_lease_flag(value, options_);
      break;
  }
  if (!error) return 0;
  host_.log(LogLevel::error, "sidecore: " + *error);
  // srun, sbatch and salloc refuse the job; inside slurmstepd the value was already checked by
  // the client, and refusing there would fail the step.
  return remote ? 0 : -1;
} catch (const std::exception& e) {
  host_.log(LogLevel::error, std::string("sidecore: option: ") + e.what());
  return remote ? 0 : -1;
}

int Plugin::init_post_opt() { return 0; }

int Plugin::task_post_fork() try {
  // Once, at the first task: by now the step's cgroups exist in every hierarchy Slurm uses.
  if (!executor_ || !cgroup_leaf_ || followed_step_cgroups_) return 0;
  followed_step_cgroups_ = true;
  const std::optional<pid_t> task = host_.task_pid();
  if (!task) return 0;
  // The mounts as slurmstepd sees them (the task may have a mount namespace of its own, with
  // job_container/tmpfs); the task's cgroups.
  CgroupView task_view = read_cgroups_("/proc/self");
  task_view.self_cgroup = read_cgroups_("/proc/" + std::to_string(*task)).self_cgroup;
  const std::string error = follow_step_cgroups(*cgroup_leaf_, task_view, job_id_);
  if (!error.empty()) log(LogLevel::warn, "the executor stays outside the step's cgroups: " + error);
  return 0;
} catch (const std::exception& e) {
  log(LogLevel::warn, std::string("task_post_fork: ") + e.what());
  return 0;
} catch (...) {
  return 0;
}

void Plugin::no_executor(const std::string& why) {
  // Only a step that asked for executors hears why it has none; a site default stays in the log.
  const LogLevel level = options_.offload ? LogLevel::warn : LogLevel::info;
  if (level < config_.log_level) return;
  host_.log(level, "sidecore: no executor on this node: " + why);
}

int Plugin::local_user_init() try {
  // One token for the whole step: srun draws it and passes it to every node in the step's
  // environment, so that a rank on one node can use the executors of the others. (Drawn on each
  // node instead, every executor would refuse every other node's ranks.)
  if (host_.context() != Context::local) return 0;
  const std::string token = generate_token();
  if (!host_.setenv(kStepTokenVariable, token)) {
    log(LogLevel::warn, "cannot pass the step's token to its nodes; executors serve their own node only");
    return 0;
  }
  if (options_.lease > 0) submit_lease(token);
  return 0;
} catch (const std::exception& e) {
  log(LogLevel::warn, std::string("--offload-lease: ") + e.what() + "; the step runs without a lease");
  return 0;
} catch (...) {
  return 0;
}

// srun, as the user: one sbatch into the admin's lease partition. Every refusal is one warning on
// the user's terminal, and the step runs as if no lease had been asked for.
void Plugin::submit_lease(const std::string& token) {
  const std::string flag = "--offload-lease=" + std::to_string(options_.lease);
  auto refuse = [&](const std::string& why) {
    log(LogLevel::warn, flag + ": " + why + "; the step runs without a lease");
  };
  if (config_.lease_partition.empty()) {
    refuse("this cluster has no lease partition (the admin's plugstack.conf line sets no lease_partition=)");
    return;
  }
  if (config_.lease_max_cores && options_.lease > *config_.lease_max_cores) {
    refuse("the site lends at most " + std::to_string(*config_.lease_max_cores) +
           " core(s) per step (lease_max_cores)");
    return;
  }
  const std::string job = host_.getenv("SLURM_JOB_ID").value_or("");
  const std::vector<std::string> env = host_.environment();
  constexpr std::chrono::seconds kCommandLimit{20};
  // At most the consumer's time left: a lease never outlives the job it serves.
  unsigned minutes = config_.lease_time_min;
  if (!job.empty()) {
    const CommandResult left =
        run_command({"squeue", "--noheader", "--jobs=" + job, "--format=%L"}, env, kCommandLimit);
    if (left.ran && left.exit_code == 0) {
      if (auto job_minutes = parse_time_left_minutes(left.out)) minutes = std::min(minutes, std::max(*job_minutes, 1u));
    }
  }
  LeaseRequest request;
  request.cores = options_.lease;
  request.partition = config_.lease_partition;
  request.minutes = minutes;
  request.account = host_.getenv("SLURM_JOB_ACCOUNT").value_or("");
  request.consumer_job = static_cast<uint32_t>(std::strtoul(job.c_str(), nullptr, 10));
  request.script = (std::filesystem::path(config_.executor).parent_path() / SIDECORE_LEASE_SCRIPT_FROM_BINDIR)
                       .lexically_normal()
                       .string();
  request.executor = config_.executor;
  // One provider for callers on every host, the lease's own node's included: the ranks reach all
  // of a lease's executors through one client.
  request.provider = config_.provider == "auto" ? "tcp;ofi_rxm" : config_.provider;
  const PollMode poll = options_.poll.value_or(config_.poll);
  request.executor_args = {"--poll", std::string(to_string(poll)), "--log-level", "warn"};
  if (config_.max_task_s) {
    request.executor_args.insert(request.executor_args.end(), {"--max-task-s", std::to_string(*config_.max_task_s)});
  }
  const std::string workdir = host_.getenv("PWD").value_or("");
  for (const auto& library : options_.libraries) {
    request.executor_args.push_back("--preload");
    request.executor_args.push_back(library.front() == '/' || workdir.empty() ? library : workdir + "/" + library);
  }
  const CommandResult submitted = run_command(sbatch_arguments(request), lease_environment(env, token), kCommandLimit);
  std::optional<uint32_t> lease;
  if (submitted.ran && submitted.exit_code == 0) lease = parse_sbatch_job_id(submitted.out);
  if (!lease && submitted.ran && submitted.exit_code == 0) {
    // Submitted, but its id did not come back: cancel it by its name, which is this job's own.
    run_command({"scancel", "--quiet", "--name=sidecore-lease." + std::to_string(request.consumer_job)}, env,
                kCommandLimit);
    refuse("sbatch gave no job id for the lease job (its output: '" + submitted.out + "'); it was cancelled");
    return;
  }
  if (!lease) {
    std::string why = submitted.err;
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    refuse("Slurm refused the lease job in partition " + config_.lease_partition + ": " +
           (why.empty() ? "sbatch exited with status " + std::to_string(submitted.exit_code) : why));
    return;
  }
  lease_job_ = *lease;
  if (!host_.setenv(kLeaseJobVariable, std::to_string(*lease))) {
    cancel_lease();
    refuse("cannot pass the lease job's id to the step's tasks");
    return;
  }
  // The lease's executors print their summaries nowhere the user sees: the ranks report instead.
  if (options_.stats) host_.setenv(kLeaseStatsVariable, "1");
  log(LogLevel::info, "lease job " + std::to_string(*lease) + ": " + std::to_string(request.cores) +
                          " core(s) in partition " + request.partition + " for at most " + std::to_string(minutes) +
                          " min");
}

void Plugin::cancel_lease() {
  if (lease_job_ == 0) return;
  const std::string job = std::to_string(lease_job_);
  lease_job_ = 0;
  const CommandResult cancelled =
      run_command({"scancel", "--quiet", job}, host_.environment(), std::chrono::seconds(20));
  if (!cancelled.ran || cancelled.exit_code != 0) {
    log(LogLevel::warn, "cannot cancel lease job " + job + " (it ends at its time limit): " + cancelled.err);
  } else {
    log(LogLevel::debug, "lease job " + job + " cancelled at the step's end");
  }
}

int Plugin::user_init() try {
  if (host_.context() != Context::remote) return 0;
  start_executor();
  return 0;
} catch (const std::exception& e) {
  no_executor(std::string("internal error: ") + e.what());
  return 0;
} catch (...) {
  no_executor("internal error");
  return 0;
}

void Plugin::start_executor() {
  StepItems step;
  if (auto error = host_.step_items(step)) {
    no_executor(*error);
    return;
  }
  if (step.step_id > kMaxNormalStepId) {
    log(LogLevel::debug, step.step_id == kBatchStep    ? "no executor for the batch step"
                         : step.step_id == kExternStep ? "no executor for the extern step"
                                                       : "no executor for this special step");
    return;
  }
  const OffloadRequest request = options_.offload.value_or(config_.default_request);
  if (request.kind == OffloadRequest::Kind::off) return;
  log(LogLevel::debug, "configuration: " + describe(config_));

  if (!config_.allow_partitions.empty()) {
    const std::string partition = host_.getenv("SLURM_JOB_PARTITION").value_or("");
    if (std::find(config_.allow_partitions.begin(), config_.allow_partitions.end(), partition) ==
        config_.allow_partitions.end()) {
      no_executor("partition '" + partition + "' is not among the site's allow_partitions");
      return;
    }
  }

  CoreSet job_cores, step_cores;
  try {
    job_cores = CoreSet::parse(step.job_cores);
    step_cores = CoreSet::parse(step.step_cores);
  } catch (const CoreSetError& e) {
    no_executor(std::string("cannot read the allocated cores: ") + e.what());
    return;
  }
  const CorePlan plan = plan_cores(job_cores, step_cores, request, config_.max_cores);
  for (const auto& warning : plan.warnings) log(LogLevel::warn, warning);
  if (plan.cores.empty()) {
    no_executor(plan.reason);
    return;
  }
  const CpuMapping mapping = map_cores_(plan.cores);
  if (!mapping.warning.empty()) log(LogLevel::warn, mapping.warning);

  // Under task/cgroup the step's cpuset holds only its own cores: the executor needs a leaf of the
  // job's cgroup on the idle ones.
  const CgroupPlan placement = plan_cgroup_leaf(read_cgroups_("/proc/self"), config_.cgroup, step.job_id, step.step_id, mapping.cpus);
  if (!placement.error.empty()) {
    no_executor(placement.error);
    return;
  }
  if (!placement.note.empty()) log(LogLevel::debug, placement.note);

  // A private folder owned by the job's user for the card: only the executor writes there.
  std::string base = host_.getenv("TMPDIR").value_or("/tmp");
  if (!is_absolute_directory(base)) base = "/tmp";
  std::string pattern = base + "/sidecore." + std::to_string(step.job_id) + "." + std::to_string(step.step_id) + ".XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    no_executor("cannot create a folder for the executor's card under " + base + ": " + std::strerror(errno));
    return;
  }
  card_dir_ = pattern;
  card_file_ = card_dir_ + "/card";
  struct stat info {};
  if (stat(card_dir_.c_str(), &info) == 0 && info.st_uid != step.uid && geteuid() == 0 &&
      chown(card_dir_.c_str(), step.uid, step.gid) != 0) {
    no_executor("cannot hand the card folder " + card_dir_ + " to the job's user: " + std::strerror(errno));
    remove_card_folder(card_dir_);
    card_dir_.clear();
    return;
  }

  // The token srun drew for the step (the same on every node), else one for this node alone.
  std::string token = step_token(step.job_env);
  if (token.empty()) token = generate_token();
  const std::string cpus = mapping.cpus.to_string();
  const PollMode poll = options_.poll.value_or(config_.poll);
  LaunchSpec spec;
  spec.executable = config_.executor;
  spec.args = {"--cores", cpus};
  for (auto& arg : provider_args(config_, step.node_count)) spec.args.push_back(std::move(arg));
  spec.args.insert(spec.args.end(), {"--poll", std::string(to_string(poll)), "--card-file", card_file_});
  if (config_.max_task_s) spec.args.insert(spec.args.end(), {"--max-task-s", std::to_string(*config_.max_task_s)});
  // The folder is the executor's alone: it removes it itself when it stops, also when slurmstepd
  // was killed and nobody runs stop_executor (executor_process.cpp: SIGTERM on slurmstepd's death).
  spec.args.push_back("--remove-card-folder");
  const std::string workdir = host_.getenv("PWD").value_or("");
  for (const auto& library : options_.libraries) {
    spec.args.push_back("--preload");
    spec.args.push_back(library.front() == '/' || workdir.empty() ? library : workdir + "/" + library);
  }
  // The executor writes to the step's stderr, which is the user's: only warnings and errors there,
  // unless the admin turned the plugin's log up to debug.
  spec.args.push_back("--log-level");
  spec.args.push_back(config_.log_level == LogLevel::debug ? "debug" : "warn");
  stats_ = options_.stats;
  if (stats_) spec.args.push_back("--stats");
  spec.env = with_variables(step.job_env, {{"SIDECORE_TOKEN", token}, {"SIDECORE_CORES", cpus}});
  spec.uid = step.uid;
  spec.gid = step.gid;
  spec.groups = step.groups;
  spec.cpus = mapping.cpus;
  spec.cgroup = placement.leaf;
  spec.workdir = workdir;
  spec.card_file = card_file_;
  spec.stderr_fd = host_.step_stderr_fd();
  spec.ready_timeout = config_.ready_timeout;
  spec.wait_for_card = config_.wait_ready;

  cgroup_leaf_ = placement.leaf;
  job_id_ = step.job_id;
  LaunchResult launched = launch_executor(spec);
  if (!launched.process) {
    no_executor(launched.error);
    remove_card_folder(card_dir_);
    card_dir_.clear();
    // A leaf the child made stays until exit(): user_init runs with the user's euid, and the job's
    // cgroup, the leaf's parent, is root's.
    return;
  }
  executor_ = std::move(launched.process);
  tasks_to_exit_ = step.local_task_count;
  const bool exported = host_.setenv("SIDECORE_EXECUTOR", launched.card) && host_.setenv("SIDECORE_TOKEN", token) &&
                        host_.setenv("SIDECORE_CORES", cpus);
  if (!exported) {
    stop_executor("because the tasks' environment could not be set");
    no_executor("cannot set SIDECORE_* in the tasks' environment");
    return;
  }
  log(LogLevel::info, "executor " + std::to_string(executor_->pid()) + " on CPU(s) " + cpus + " for job " +
                          std::to_string(step.job_id) + " step " + std::to_string(step.step_id));
}

void Plugin::stop_executor(const char* when) {
  if (!executor_) return;
  const pid_t pid = executor_->pid();
  // Read before the stop, which removes it. With start=async nobody has looked at it yet.
  const CardFile card = read_card_file(card_file_);
  if (!executor_->running()) {
    const ExitStatus status = executor_->wait();  // it has exited: this only reaps it, where it still can
    if (card.state == CardFile::State::error) {
      log(LogLevel::warn, "executor " + std::to_string(pid) + " could not start: " + card.text);
    } else if (card.state == CardFile::State::none) {
      log(LogLevel::warn, "executor " + std::to_string(pid) + " " + status.describe() + " before it was ready");
    } else {
      log(LogLevel::info, "executor " + std::to_string(pid) + " had already exited " + when);
    }
  } else if (executor_->stop(config_.stop_grace); executor_->needed_kill()) {
    log(LogLevel::warn, "executor " + std::to_string(pid) + " ignored SIGTERM and was killed " + when);
  } else {
    log(LogLevel::debug, "executor " + std::to_string(pid) + " stopped " + when);
  }
  // Killed or crashed, it could not remove its shared memory (doorbell, shm regions): do it here.
  // That includes an executor that was stopping when proctrack's SIGKILL for the step (scancel of
  // the step) reached it. After a clean stop the names are gone already, which is fine.
  try {
    if (card.state == CardFile::State::card) remove_executor_leftovers(parse_card(card.text));
  } catch (const CardError&) {
  }
  executor_.reset();
  if (!card_dir_.empty()) {
    remove_card_folder(card_dir_);
    card_dir_.clear();
  }
  remove_leaf(false);
}

// Removes the executor's cgroup leaf. Kept for a later try when that fails (in user_init, which
// runs with the user's euid, it always does); task_exit and exit run as root.
void Plugin::remove_leaf(bool last_try) {
  if (!cgroup_leaf_) return;
  const std::string error = remove_cgroup_leaf(*cgroup_leaf_);
  if (error.empty()) {
    cgroup_leaf_.reset();
  } else if (last_try) {
    log(LogLevel::warn, error + " (the job's epilog removes it)");
    cgroup_leaf_.reset();
  }
}

int Plugin::task_exit() try {
  if (executor_ && tasks_to_exit_ > 0 && --tasks_to_exit_ == 0) stop_executor("after the last task");
  return 0;
} catch (...) {
  return 0;
}

int Plugin::job_epilog(const std::vector<std::string>& args, uint32_t job_id, const std::string& node) try {
  init(args);
  if (config_.cgroup == CgroupMode::off || job_id == 0) return 0;
  std::string problems;
  const int removed = clean_job_leaves(read_cgroups_("/proc/self"), job_id, node, problems);
  if (removed > 0) {
    log(LogLevel::info, "removed " + std::to_string(removed) + " executor cgroup(s) that job " + std::to_string(job_id) +
                            " left behind");
  }
  if (!problems.empty()) log(LogLevel::warn, "after job " + std::to_string(job_id) + ": " + problems);
  return 0;
} catch (...) {
  return 0;
}

int Plugin::exit() try {
  cancel_lease();
  stop_executor("at step end");
  remove_leaf(true);
  return 0;
} catch (...) {
  return 0;
}

}  // namespace sidecore::spank
