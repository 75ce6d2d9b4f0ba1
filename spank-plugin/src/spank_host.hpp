// What the plugin core needs from Slurm, as a plain C++ interface. spank_sidecore.cpp implements it
// with the SPANK API; unit tests implement it with a fake that plays slurmstepd's callback order.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "options.hpp"

namespace sidecore::spank {

enum class Context { local, remote, allocator, slurmd, job_script, unknown };

// The step as slurmstepd sees it (remote context only).
struct StepItems {
  uint32_t job_id = 0;
  uint32_t step_id = 0;
  uint32_t node_id = 0;
  uint32_t node_count = 1;
  uint32_t local_task_count = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string job_cores;   // S_JOB_ALLOC_CORES, Slurm's abstract ids, cpulist syntax
  std::string step_cores;  // S_STEP_ALLOC_CORES
  std::vector<std::string> job_env;
};

class SpankHost {
 public:
  virtual ~SpankHost() = default;
  virtual Context context() = 0;
  // Fills `items`, or returns a message naming the item that could not be read.
  virtual std::optional<std::string> step_items(StepItems& items) = 0;
  // The job's environment (what the tasks will see).
  virtual std::optional<std::string> getenv(const std::string& name) = 0;
  virtual bool setenv(const std::string& name, const std::string& value) = 0;
  // srun's whole environment (local context), for the commands it runs.
  virtual std::vector<std::string> environment() = 0;
  // Slurm's log; in slurmstepd errors also reach the step's stderr.
  virtual void log(LogLevel level, const std::string& message) = 0;
  // The task's pid in task_post_fork (S_TASK_PID), if Slurm gives it.
  virtual std::optional<pid_t> task_pid() = 0;
  // slurmstepd's stderr as the executor should inherit it; -1 for none.
  virtual int step_stderr_fd() = 0;
};

}  // namespace sidecore::spank
