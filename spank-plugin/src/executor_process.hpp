// Starting one sidecore-executor from inside slurmstepd, through the runtime's ChildProcess.
//
// The executor is a direct child of slurmstepd, so that proctrack counts it as part of the step and
// nothing is left as a zombie. slurmstepd's task loop reaps any child (wait3 on every pid) and skips
// pids that are not tasks: ChildProcess follows the executor through a pidfd, which tells when it
// exits and signals it without racing a reused pid, and reaps it itself where it still can. What
// this file adds runs in the child before exec (privilege drop, cgroup, CPUs): async-signal-safe
// calls only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "cgroup_placement.hpp"
#include "core_set.hpp"
#include "process/child_process.hpp"

namespace sidecore::spank {

struct LaunchSpec {
  std::string executable;
  std::vector<std::string> args;  // after argv[0]
  std::vector<std::string> env;   // the whole environment, "KEY=VALUE"
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;      // supplementary groups
  CoreSet cpus;                   // OS CPUs to pin to
  // A cgroup leaf the child creates and joins before it pins itself (cgroup_placement.hpp); the
  // child does it as root, before it drops to the job's user.
  std::optional<CgroupLeaf> cgroup;
  std::string workdir;            // empty or unreachable: "/"
  std::string card_file;          // the executor writes its card here once ready
  int stderr_fd = -1;             // the executor's stderr; -1: /dev/null
  std::chrono::milliseconds ready_timeout{10'000};
  // Wait for the card (up to ready_timeout) before returning; otherwise return as soon as the
  // executor has been exec'd, with a reference to the card (card_reference.hpp) for the tasks.
  bool wait_for_card = true;
};

struct LaunchResult {
  // Set on success. Its destructor only lets go of the pidfd: a copy of the plugin state in a
  // forked task never signals anything.
  std::optional<ChildProcess> process;
  std::string card;   // the executor's card (or a reference to it), on success
  std::string error;  // why there is no executor, otherwise ("the executor ...")
};

// Starts the executor fully dropped to spec.uid/gid/groups, with every signal unblocked and at its
// default action, pinned to spec.cpus, in a session of its own, with SIGTERM as its parent-death
// signal (it stops when the thread that launched it exits: for the plugin, when slurmstepd dies,
// even by SIGKILL). With spec.wait_for_card, waits until its card appears (or its error line, its
// exit, or ready_timeout: then it is stopped and `error` says why).
LaunchResult launch_executor(const LaunchSpec& spec);

}  // namespace sidecore::spank
