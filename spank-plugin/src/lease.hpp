// Leases (--offload-lease=N): srun borrows N idle cores elsewhere in the cluster as a Slurm job of
// the user's own in the admin's lease partition. That job (spank-plugin/lease/sidecore-lease) runs
// one executor per task as one step and publishes their cards in its job record; the step's ranks
// read them there (offload/src/mpi/lease_watch.cpp). Slurm is the registry, the accountant and the
// one that takes the cores back (preemption); Sidecore runs no service of its own.
//
// This file holds what srun does: the sbatch call, its environment, the time limit, and the
// scancel at the step's end. Pure functions where it can, so unit tests cover them.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sidecore::spank {

// Set by srun in the step's environment: the lease job's id, which the ranks watch.
inline constexpr const char* kLeaseJobVariable = "SIDECORE_LEASE_JOB";
// Set to 1 with --offload-stats: each pool reports what the lease did for it at pool_free.
inline constexpr const char* kLeaseStatsVariable = "SIDECORE_LEASE_STATS";
// How the token reaches the lease job: its environment (Slurm keeps a job's environment readable
// by its user and root only), never its command line, its script or a log.
inline constexpr const char* kLeaseTokenVariable = "SIDECORE_LEASE_TOKEN";

// The outcome of a short command that srun runs (sbatch, squeue, scancel).
struct CommandResult {
  bool ran = false;    // it started and ended within the time limit
  int exit_code = -1;  // the shell's convention (128 + signal)
  std::string out;     // its standard output
  std::string err;     // its standard error, or why it did not run
};
// Runs `argv` with `env` (the whole environment), its output captured, for at most `limit`.
CommandResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          std::chrono::milliseconds limit);

// Slurm's time left ("squeue -o %L": [D-]HH:MM:SS, MM:SS, UNLIMITED, ...) in whole minutes, rounded
// down; nullopt for no limit or an unreadable text.
std::optional<unsigned> parse_time_left_minutes(std::string_view text);

// The lease job's environment: the user's, without what belongs to this job and step (Slurm's and
// MPI's variables, the plugin's options, which would otherwise recurse), plus the token.
std::vector<std::string> lease_environment(const std::vector<std::string>& env, const std::string& token);

struct LeaseRequest {
  unsigned cores = 0;
  std::string partition;
  unsigned minutes = 0;  // the lease job's time limit
  std::string account;   // the consumer job's account; empty: the user's default
  uint32_t consumer_job = 0;
  std::string script;                      // sidecore-lease
  std::string executor;                    // sidecore-executor
  std::string provider;                    // the lease executors' provider
  std::vector<std::string> executor_args;  // poll, libraries, max task time, log level
};
// sbatch's argument list for `request`.
std::vector<std::string> sbatch_arguments(const LeaseRequest& request);
// The job id sbatch --parsable printed ("123" or "123;cluster"), or nothing.
std::optional<uint32_t> parse_sbatch_job_id(std::string_view out);

}  // namespace sidecore::spank
