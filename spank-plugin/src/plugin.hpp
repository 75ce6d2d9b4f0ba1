// The plugin's logic, one instance per process that loads spank_sidecore.so. Each method matches
// one SPANK callback and never throws; the return value is what the callback returns to Slurm.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cgroup_placement.hpp"
#include "cpu_map.hpp"
#include "executor_process.hpp"
#include "options.hpp"
#include "spank_host.hpp"

namespace sidecore::spank {

enum class OptionId : int { offload = 1, poll = 2, lib = 3, stats = 4, lease = 5 };

// Set by srun (local_user_init) in the step's environment: the step's token, for every node.
inline constexpr const char* kStepTokenVariable = "SIDECORE_STEP_TOKEN";

class Plugin {
 public:
  // `default_executor`: where sidecore-executor is when the admin does not say (executor=).
  // `map_cores` turns Slurm's abstract core ids into OS CPUs (hwloc by default; tests fake a topology).
  // `read_cgroups` is what a process (a /proc/PID folder) sees of its cgroups; tests fake a tree.
  using CoreMapper = std::function<CpuMapping(const CoreSet&)>;
  using CgroupReader = std::function<CgroupView(const std::string& proc_dir)>;
  Plugin(SpankHost& host, std::string default_executor, CoreMapper map_cores = abstract_cores_to_cpus,
         CgroupReader read_cgroups = read_cgroup_view);

  int init(const std::vector<std::string>& args);
  // 0 accepts the value; -1 makes srun/sbatch/salloc refuse it (the message names the flag).
  int option(OptionId id, const char* value, bool remote);
  int init_post_opt();
  // Starts the executor. Always 0: an error here drains the node in 22.05.
  // srun: draws the step's token, which every node's slurmstepd then uses (SIDECORE_STEP_TOKEN),
  // and submits the step's lease job (--offload-lease, lease.hpp).
  int local_user_init();
  int user_init();
  int task_post_fork();
  // The last local task's exit stops the executor.
  int task_exit();
  // Fallback stop, for steps whose tasks never all reported. srun: cancels the step's lease job.
  int exit();
  // slurmd, after the job (root): removes executor cgroups that a killed slurmstepd left behind.
  // `node` is this slurmd's node name (SLURMD_NODENAME; empty: unknown).
  int job_epilog(const std::vector<std::string>& args, uint32_t job_id, const std::string& node);

  const AdminConfig& config() const noexcept { return config_; }
  const JobOptions& job_options() const noexcept { return options_; }
  // The running executor's pid, if any (for tests).
  std::optional<pid_t> executor_pid() const;
  // The running executor's cgroup leaf, if it has one (for tests).
  const std::optional<CgroupLeaf>& cgroup_leaf() const noexcept { return cgroup_leaf_; }

 private:
  void log(LogLevel level, const std::string& message);
  void no_executor(const std::string& why);
  void start_executor();
  void stop_executor(const char* when);
  void remove_leaf(bool last_try);
  void check_node_cgroups();
  void submit_lease(const std::string& token);
  void cancel_lease();

  SpankHost& host_;
  std::string default_executor_;
  CoreMapper map_cores_;
  CgroupReader read_cgroups_;
  std::optional<CgroupLeaf> cgroup_leaf_;
  uint32_t job_id_ = 0;
  bool followed_step_cgroups_ = false;
  AdminConfig config_;
  JobOptions options_;
  std::optional<ChildProcess> executor_;
  std::string card_dir_;
  std::string card_file_;
  uint32_t tasks_to_exit_ = 0;
  bool stats_ = false;
  uint32_t lease_job_ = 0;  // srun: the step's lease job, cancelled at its end
};

}  // namespace sidecore::spank
