// Where a step's executor goes in the node's cgroup tree, beside cpu_map (which CPUs) and the
// executor process (how it starts).
//
// Under task/cgroup with ConstrainCores=yes, slurmstepd and everything it forks live in the step's
// cpuset cgroup (.../job_<id>/step_<n>), which holds only the step's cores: the executor, forked
// there, could not pin itself to the idle ones. It goes instead into a leaf of its own under the
// job's cgroup, `job_<id>/sidecore_step_<n>`, whose cpuset is exactly the executor's CPUs. The job's
// cpuset bounds the leaf's (the kernel refuses anything outside it), so nothing escapes the job.
//
// cgroup v1: only the cpuset hierarchy changes. In every other hierarchy (freezer, cpuacct, memory)
// the executor stays in the step's cgroup, so proctrack/cgroup kills it with the step and its CPU
// time and memory count for the step and the job.
// cgroup v2: one tree, so the leaf takes the executor out of the step's cgroup: it still counts for
// the job (job_<id> sums its children) but not for the step, and the plugin, not proctrack, stops it
// (with the job's cgroup as the bound, and the leaf's cgroup.kill as the last resort).
//
// Planning is a pure function of /proc/self/cgroup, /proc/self/mountinfo and the files under the
// mounts, so unit tests run it on a fake tree; the leaf is created by the forked child, which is
// root there (executor_process.cpp), and removed by the plugin after the executor has stopped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core_set.hpp"
#include "options.hpp"

namespace sidecore::spank {

// One cgroup mount from /proc/self/mountinfo.
struct CgroupMount {
  int version = 1;               // 1: "cgroup", 2: "cgroup2"
  std::string root;              // the hierarchy's folder that is mounted ("/" normally)
  std::string mount_point;       // where it is mounted
  std::vector<std::string> controllers;  // v1: from the super options (cpuset, cpu, ...)
};

// What the process can see of its cgroups: the mounts and its own /proc/self/cgroup lines.
struct CgroupView {
  std::vector<CgroupMount> mounts;
  std::string self_cgroup;  // text of /proc/self/cgroup
};
CgroupView read_cgroup_view(const std::string& proc_self = "/proc/self");
std::vector<CgroupMount> parse_mountinfo(const std::string& text);
// The cgroup v2 mount, if there is one (the unified hierarchy: one per mount namespace).
const CgroupMount* cgroup2_mount(const CgroupView& view);

// The executor's leaf: created, filled and joined by the child before it pins itself.
struct CgroupLeaf {
  int version = 1;
  std::string directory;  // absolute path of the leaf folder
  std::string job_path;   // the job's cgroup as /proc/PID/cgroup names it (.../job_<id>)
  std::string cpus;       // written to cpuset.cpus
  std::string mems;       // written to cpuset.mems first (v1: a new cpuset starts with none)
};

struct CgroupPlan {
  std::optional<CgroupLeaf> leaf;  // nothing to do when empty and `error` is empty
  std::string error;               // the step gets no executor, for this reason
  std::string note;                // what was decided, for the debug log
};

// Where the executor of step `step_id` of job `job_id` runs on `cpus` (OS CPU ids).
CgroupPlan plan_cgroup_leaf(const CgroupView& view, CgroupMode mode, uint32_t job_id, uint32_t step_id,
                            const CoreSet& cpus);

// Removes the leaf once its processes are gone (retrying briefly while they exit); on cgroup v2, a
// leaf that still holds processes is emptied with cgroup.kill first. Empty string when removed or
// absent, else why not.
std::string remove_cgroup_leaf(const CgroupLeaf& leaf);

// cgroup v1: the executor's processes (those in its leaf) join, in the freezer, cpuacct and memory
// hierarchies (not devices: the step's device limits would take the job's GPUs away from it), the
// cgroup of the step that the step's task (seen in `task_view`) is in, one level above its task_<n>:
// proctrack/cgroup then signals them with the step and waits for them, and cpuacct and memory count
// them for the step and the job. (slurmstepd itself sits in the job's freezer cgroup and outside
// cpuacct when it forks the executor; the step's cgroups exist only once its tasks do.) Returns an
// empty string, or what failed.
std::string follow_step_cgroups(const CgroupLeaf& leaf, const CgroupView& task_view, uint32_t job_id);

// After the job (its epilog, as root): stops what is left in the job's executor leaves and removes
// them, then the job's cgroup if that is empty now (Slurm could not remove it while a leaf was in
// it). A slurmstepd killed with SIGKILL leaves its leaf, and perhaps processes in it, behind. Only
// Slurm's own job folders are looked at: v1 <cpuset>/slurm[_<node>]/uid_<uid>/job_<id>, v2
// .../[<node>_]slurmstepd.scope/job_<id>, so that a folder a user made elsewhere is never touched.
// `node` is this slurmd's node name (empty: any). Returns how many leaves it removed; `problems`
// says what it could not do.
int clean_job_leaves(const CgroupView& view, uint32_t job_id, const std::string& node, std::string& problems);

}  // namespace sidecore::spank
