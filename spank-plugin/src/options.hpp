// The plugin's two inputs, parsed and checked: the admin's plugstack.conf arguments and the job's
// option flags. Pure functions, so unit tests cover every accepted and refused spelling.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "poll_mode.hpp"

namespace sidecore::spank {

// How many idle cores a step asks for: none, all of them, or a count.
struct OffloadRequest {
  enum class Kind { off, idle, count };
  Kind kind = Kind::off;
  unsigned count = 0;  // only for Kind::count, >= 1

  static OffloadRequest off() { return {}; }
  static OffloadRequest idle() { return {Kind::idle, 0}; }
  static OffloadRequest cores(unsigned n) { return n == 0 ? off() : OffloadRequest{Kind::count, n}; }
  bool operator==(const OffloadRequest&) const = default;
};
std::string to_string(const OffloadRequest& request);

enum class LogLevel { debug, info, warn, error };

// The admin's cgroup= key (cgroup_placement.hpp). auto: place the executor when the step is in a
// Slurm job cgroup of either version, leave it where it is otherwise; v1 and v2: require that
// version (a node without it gets no executors, and the log says why); off: never touch cgroups.
enum class CgroupMode { automatic, v1, v2, off };
std::optional<CgroupMode> parse_cgroup_mode(const std::string& text);
const char* to_string(CgroupMode mode);

// What the admin wrote on the plugstack.conf line. Unknown keys and bad values are reported in
// `errors` and leave the default in place: a typo must never take a node down.
struct AdminConfig {
  // Most executor cores per node per step; unset means no cap, 0 turns executors off.
  std::optional<unsigned> max_cores;
  // What a step gets when the job did not pass --offload.
  OffloadRequest default_request = OffloadRequest::off();
  // Poll mode when the job does not pass --offload-poll.
  PollMode poll = PollMode::adaptive;
  // libfabric provider; "auto" is shm for a one-node job and tcp;ofi_rxm across nodes.
  std::string provider = "auto";
  // The sidecore-executor binary to start.
  std::string executor;
  // Partitions where executors may start; empty means every partition.
  std::vector<std::string> allow_partitions;
  // Messages below this level are not logged.
  LogLevel log_level = LogLevel::info;
  // async: the tasks start at once with a reference to the card and wait for it themselves (when
  // they connect), so libfabric's load (about 0.3 s) overlaps theirs. wait: user_init waits for the
  // card, so the tasks start with the card itself, or with no executor and the reason logged.
  bool wait_ready = false;
  // How long user_init (wait) or a task (async) waits for the executor's card before giving up.
  std::chrono::milliseconds ready_timeout{10'000};
  // Where the executor goes in the node's cgroups (cgroup_placement.hpp): auto, v1, v2 or off.
  CgroupMode cgroup = CgroupMode::automatic;
  // The site's bound on any task, in seconds: past it the caller gets TIMEOUT and the executor
  // replaces the worker that runs it. A user's timeout can only shorten it. Unset: no bound.
  std::optional<unsigned> max_task_s;
  // How long a stopping executor gets between SIGTERM and SIGKILL.
  std::chrono::milliseconds stop_grace{5'000};
  // Leases (lease.hpp): the partition srun --offload-lease submits lease jobs to (empty: no leases
  // on this cluster), the most cores one step may lease (unset: no cap), and a lease job's time
  // limit in minutes (at most the consumer job's time left).
  std::string lease_partition;
  std::optional<unsigned> lease_max_cores;
  unsigned lease_time_min = 60;
};

struct AdminParse {
  AdminConfig config;
  std::vector<std::string> errors;  // one readable line per refused argument
};
// `default_executor` is where the plugin looks for sidecore-executor when executor= is absent.
AdminParse parse_admin_args(const std::vector<std::string>& args, std::string default_executor);
// The effective configuration in plugstack.conf syntax, logged once per step.
std::string describe(const AdminConfig& config);

// What the job asked for with its flags; unset fields fall back to the admin's defaults.
struct JobOptions {
  std::optional<OffloadRequest> offload;
  std::optional<PollMode> poll;
  std::vector<std::string> libraries;
  bool stats = false;
  unsigned lease = 0;  // --offload-lease: cores to lease elsewhere (0: none)
};

// Each parser returns an error message naming the flag, or nothing when the value was accepted
// and stored into `options`. `value` is null when the flag was given without "=VALUE".
std::optional<std::string> parse_offload_flag(const char* value, JobOptions& options);
std::optional<std::string> parse_poll_flag(const char* value, JobOptions& options);
std::optional<std::string> parse_lib_flag(const char* value, JobOptions& options);
std::optional<std::string> parse_stats_flag(const char* value, JobOptions& options);
std::optional<std::string> parse_lease_flag(const char* value, JobOptions& options);

std::vector<std::string> split(std::string_view text, char separator);

}  // namespace sidecore::spank
