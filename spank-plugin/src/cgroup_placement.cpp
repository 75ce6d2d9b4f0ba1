#include "cgroup_placement.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "options.hpp"

namespace sidecore::spank {
namespace {

constexpr const char* kLeafPrefix = "sidecore_step_";

// The leaf's name under the job's cgroup.
std::string leaf_name(uint32_t step_id) { return kLeafPrefix + std::to_string(step_id); }

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

bool is_directory(const std::string& path) {
  struct stat info {};
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string digits = field.substr(i + 1, 3);
      if (digits.size() == 3 && digits.find_first_not_of("01234567") == std::string::npos) {
        out.push_back(static_cast<char>(std::stoi(digits, nullptr, 8)));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// One line of /proc/self/cgroup: "hierarchy-id:controllers:path".
struct SelfCgroup {
  std::vector<std::string> controllers;
  std::string path;
};

std::vector<SelfCgroup> parse_self_cgroup(const std::string& text) {
  std::vector<SelfCgroup> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto first = line.find(':');
    const auto second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    lines.push_back({split(line.substr(first + 1, second - first - 1), ','), line.substr(second + 1)});
  }
  return lines;
}

bool has(const std::vector<std::string>& list, const std::string& item) {
  for (const auto& entry : list) {
    if (entry == item) return true;
  }
  return false;
}

// `path` (as /proc/self/cgroup names it) on disk under `mount`, or empty when the mount does not
// show it (a container that mounts only part of the hierarchy).
std::string on_disk(const CgroupMount& mount, const std::string& path) {
  if (mount.root == "/") return mount.mount_point + (path == "/" ? "" : path);
  if (path == mount.root) return mount.mount_point;
  if (path.rfind(mount.root + "/", 0) == 0) return mount.mount_point + path.substr(mount.root.size());
  return "";
}

// The prefix of `path` that ends with the component job_<id>, or empty when there is none.
std::string job_prefix(const std::string& path, uint32_t job_id) {
  const std::string component = "job_" + std::to_string(job_id);
  size_t start = 0;
  while (start < path.size()) {
    const size_t slash = path.find('/', start + 1);
    const size_t end = slash == std::string::npos ? path.size() : slash;
    if (path.compare(start + 1, end - start - 1, component) == 0 && end - start - 1 == component.size()) {
      return path.substr(0, end);
    }
    start = end;
  }
  return "";
}

// What the node offers for one version: the step's cgroup path and the mount that shows it.
struct Candidate {
  const CgroupMount* mount = nullptr;
  std::string path;
};

Candidate find_v1(const CgroupView& view) {
  Candidate candidate;
  for (const auto& mount : view.mounts) {
    if (mount.version == 1 && has(mount.controllers, "cpuset")) candidate.mount = &mount;
  }
  for (const auto& line : parse_self_cgroup(view.self_cgroup)) {
    if (has(line.controllers, "cpuset")) candidate.path = line.path;
  }
  return candidate;
}

Candidate find_v2(const CgroupView& view) {
  Candidate candidate;
  candidate.mount = cgroup2_mount(view);
  for (const auto& line : parse_self_cgroup(view.self_cgroup)) {
    if (line.controllers.empty() || (line.controllers.size() == 1 && line.controllers[0].empty())) {
      candidate.path = line.path;
    }
  }
  return candidate;
}

// Builds the leaf under the job's cgroup, or says why it cannot.
CgroupPlan plan_leaf(int version, const Candidate& candidate, uint32_t job_id, uint32_t step_id,
                     const CoreSet& cpus) {
  CgroupPlan plan;
  const std::string job_path = job_prefix(candidate.path, job_id);
  const std::string job_dir = on_disk(*candidate.mount, job_path);
  if (job_dir.empty() || !is_directory(job_dir)) {
    plan.error = "the job's cgroup " + job_path + " is not visible under " + candidate.mount->mount_point;
    return plan;
  }
  // v2: the job's cgroup must hand the cpuset controller to its children.
  if (version == 2) {
    const std::string control = first_line(job_dir + "/cgroup.subtree_control");
    if (!has(split(control, ' '), "cpuset")) {
      plan.error = "the job's cgroup " + job_dir + " does not enable the cpuset controller for its children "
                   "(cgroup.subtree_control: '" + control + "')";
      return plan;
    }
  }
  // The CPUs the job may use now (v1 and v2 spell the file differently).
  std::string job_cpus_text = first_line(job_dir + (version == 1 ? "/cpuset.effective_cpus" : "/cpuset.cpus.effective"));
  if (job_cpus_text.empty()) job_cpus_text = first_line(job_dir + "/cpuset.cpus");
  try {
    const CoreSet job_cpus = CoreSet::parse(job_cpus_text);
    for (int cpu : cpus.cores()) {
      if (!job_cpus.contains(cpu)) {
        plan.error = "CPU " + std::to_string(cpu) + " is not in the job's cpuset " + job_dir + " (" +
                     job_cpus_text + ")";
        return plan;
      }
    }
  } catch (const CoreSetError& e) {
    plan.error = "cannot read the CPUs of the job's cpuset " + job_dir + ": " + e.what();
    return plan;
  }
  CgroupLeaf leaf;
  leaf.version = version;
  leaf.directory = job_dir + "/" + leaf_name(step_id);
  leaf.job_path = job_path;
  leaf.cpus = cpus.to_string();
  if (version == 1) {
    leaf.mems = first_line(job_dir + "/cpuset.effective_mems");
    if (leaf.mems.empty()) leaf.mems = first_line(job_dir + "/cpuset.mems");
    if (leaf.mems.empty()) {
      plan.error = "cannot read the memory nodes of the job's cpuset " + job_dir;
      return plan;
    }
  }
  plan.note = "cgroup v" + std::to_string(version) + ": executor in " + leaf.directory + " on CPU(s) " + leaf.cpus;
  plan.leaf = std::move(leaf);
  return plan;
}

}  // namespace

std::vector<CgroupMount> parse_mountinfo(const std::string& text) {
  std::vector<CgroupMount> mounts;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto separator = line.find(" - ");
    if (separator == std::string::npos) continue;
    std::istringstream before(line.substr(0, separator));
    std::istringstream after(line.substr(separator + 3));
    std::string id, parent, device, root, mount_point, fstype, source, super_options;
    before >> id >> parent >> device >> root >> mount_point;
    after >> fstype >> source >> super_options;
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    CgroupMount mount;
    mount.version = fstype == "cgroup2" ? 2 : 1;
    mount.root = unescape(root);
    mount.mount_point = unescape(mount_point);
    if (mount.version == 1) mount.controllers = split(super_options, ',');
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

const CgroupMount* cgroup2_mount(const CgroupView& view) {
  for (const auto& mount : view.mounts) {
    if (mount.version == 2) return &mount;
  }
  return nullptr;
}

CgroupView read_cgroup_view(const std::string& proc_self) {
  CgroupView view;
  view.mounts = parse_mountinfo(read_text(proc_self + "/mountinfo"));
  view.self_cgroup = read_text(proc_self + "/cgroup");
  return view;
}

CgroupPlan plan_cgroup_leaf(const CgroupView& view, CgroupMode mode, uint32_t job_id, uint32_t step_id,
                            const CoreSet& cpus) {
  CgroupPlan plan;
  if (mode == CgroupMode::off) {
    plan.note = "cgroup=off: the executor stays in slurmstepd's cgroups";
    return plan;
  }
  const Candidate v1 = find_v1(view);
  const Candidate v2 = find_v2(view);
  const bool v1_job = v1.mount && !job_prefix(v1.path, job_id).empty();
  const bool v2_job = v2.mount && !job_prefix(v2.path, job_id).empty();
  if (mode == CgroupMode::v1 || mode == CgroupMode::v2) {
    // The admin insists on one version: its leaf, or why this node or step cannot have one.
    const int version = mode == CgroupMode::v1 ? 1 : 2;
    const Candidate& candidate = version == 1 ? v1 : v2;
    const std::string wanted = std::string("cgroup=") + to_string(mode) + " in plugstack.conf, but ";
    if (!candidate.mount) {
      plan.error = wanted + (version == 1 ? "this node mounts no cgroup v1 cpuset hierarchy"
                                          : "this node mounts no cgroup v2 hierarchy");
    } else if (!(version == 1 ? v1_job : v2_job)) {
      plan.error = wanted + "the step is not in a Slurm job's " + (version == 1 ? "cpuset cgroup" : "cgroup v2") +
                   " (" + (candidate.path.empty() ? std::string("none") : candidate.path) +
                   "): is TaskPlugin=task/cgroup set, with CgroupPlugin=cgroup/v" + std::to_string(version) + "?";
    } else {
      return plan_leaf(version, candidate, job_id, step_id, cpus);
    }
    return plan;
  }
  if (v1_job) return plan_leaf(1, v1, job_id, step_id, cpus);
  if (v2_job) return plan_leaf(2, v2, job_id, step_id, cpus);
  plan.note = "the step is in no Slurm job cgroup (task/affinity): the executor stays in slurmstepd's cgroups";
  return plan;
}

std::string remove_cgroup_leaf(const CgroupLeaf& leaf) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  bool killed = false;
  while (true) {
    if (rmdir(leaf.directory.c_str()) == 0 || errno == ENOENT) return "";
    const int error = errno;
    if (error != EBUSY || Clock::now() >= deadline) {
      return "cannot remove " + leaf.directory + ": " + std::strerror(error);
    }
    // Still busy: processes the executor left (v2 only: in v1 they are in the step's freezer cgroup,
    // which proctrack empties). cgroup.kill (Linux 5.14) ends them all at once.
    if (leaf.version == 2 && !killed) {
      const int fd = open((leaf.directory + "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        [[maybe_unused]] auto written = write(fd, "1", 1);
        close(fd);
      }
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

namespace {

// Moves `pids` into the step's freezer, cpuacct and memory cgroups (cgroup v1); the errors, if any.
std::string move_into_step_cgroups(const CgroupLeaf& leaf, const CgroupView& task_view, uint32_t job_id,
                                   const std::vector<std::string>& pids) {
  std::string errors;
  for (const auto& line : parse_self_cgroup(task_view.self_cgroup)) {
    const bool wanted = has(line.controllers, "freezer") || has(line.controllers, "cpuacct") ||
                        has(line.controllers, "memory");
    if (!wanted || has(line.controllers, "cpuset")) continue;
    const std::string job_path = job_prefix(line.path, job_id);
    // Only the job the leaf belongs to, at the same place in each hierarchy.
    if (job_path.empty() || job_path != leaf.job_path) continue;
    // The step's folder: the component after job_<id>, if there is one.
    const size_t next = line.path.find('/', job_path.size() + 1);
    const std::string step_path = line.path.size() > job_path.size() ? line.path.substr(0, next) : job_path;
    const CgroupMount* mount = nullptr;
    for (const auto& candidate : task_view.mounts) {
      if (candidate.version == 1 && has(candidate.controllers, line.controllers[0])) mount = &candidate;
    }
    if (mount == nullptr) continue;
    const std::string directory = on_disk(*mount, step_path);
    if (directory.empty()) continue;
    for (const auto& pid : pids) {
      std::ofstream procs(directory + "/cgroup.procs", std::ios::app);
      procs << pid << std::flush;
      // A process that exited in the meantime (ESRCH) is not an error.
      if (!procs && is_directory("/proc/" + pid)) errors += (errors.empty() ? "" : "; ") + std::string("cannot move ") + pid + " into " + directory;
    }
  }
  return errors;
}

}  // namespace

std::string follow_step_cgroups(const CgroupLeaf& leaf, const CgroupView& task_view, uint32_t job_id) {
  if (leaf.version != 1) return "";
  // The executor's processes: its supervisor and the worker processes it has forked so far (later
  // ones are forked from a supervisor already moved, and start where it is). A worker forked while
  // the others move is in the leaf on the next read: a few rounds, until none is new.
  std::vector<std::string> moved;
  std::string errors;
  for (int round = 0; round < 4; ++round) {
    std::vector<std::string> pids;
    std::istringstream procs(read_text(leaf.directory + "/cgroup.procs"));
    for (std::string pid; procs >> pid;) {
      if (std::find(moved.begin(), moved.end(), pid) == moved.end()) pids.push_back(pid);
    }
    if (pids.empty()) break;
    errors = move_into_step_cgroups(leaf, task_view, job_id, pids);
    moved.insert(moved.end(), pids.begin(), pids.end());
  }
  if (moved.empty()) return "no executor process in " + leaf.directory;
  return errors;
}

namespace {

// The subfolders of `dir` (names only).
std::vector<std::string> subfolders(const std::string& dir) {
  std::vector<std::string> names;
  DIR* handle = opendir(dir.c_str());
  if (handle == nullptr) return names;
  while (const dirent* entry = readdir(handle)) {
    const std::string name = entry->d_name;
    if (name != "." && name != ".." && entry->d_type == DT_DIR) names.push_back(name);
  }
  closedir(handle);
  return names;
}

// Slurm's folders for job `job_id` under `mount`, for node `node` (empty: any).
std::vector<std::string> slurm_job_folders(const CgroupMount& mount, uint32_t job_id, const std::string& node) {
  const std::string job = "job_" + std::to_string(job_id);
  std::vector<std::string> found;
  auto keep = [&](const std::string& dir) {
    if (is_directory(dir + "/" + job)) found.push_back(dir + "/" + job);
  };
  if (mount.version == 1) {
    // slurm (one slurmd per host) or slurm_<node> (several), then uid_<uid>.
    for (const auto& top : subfolders(mount.mount_point)) {
      const bool ours = top == "slurm" || (top.rfind("slurm_", 0) == 0 && (node.empty() || top == "slurm_" + node));
      if (!ours) continue;
      for (const auto& uid : subfolders(mount.mount_point + "/" + top)) {
        if (uid.rfind("uid_", 0) == 0) keep(mount.mount_point + "/" + top + "/" + uid);
      }
    }
    return found;
  }
  // v2: slurmstepd.scope (or <node>_slurmstepd.scope with several slurmd), at the top or in a slice.
  auto is_scope = [&](const std::string& name) {
    return name == "slurmstepd.scope" ||
           (name.size() > 17 && name.compare(name.size() - 17, 17, "_slurmstepd.scope") == 0 &&
            (node.empty() || name == node + "_slurmstepd.scope"));
  };
  for (const auto& top : subfolders(mount.mount_point)) {
    if (is_scope(top)) keep(mount.mount_point + "/" + top);
    else if (top.size() > 6 && top.compare(top.size() - 6, 6, ".slice") == 0) {
      for (const auto& scope : subfolders(mount.mount_point + "/" + top)) {
        if (is_scope(scope)) keep(mount.mount_point + "/" + top + "/" + scope);
      }
    }
  }
  return found;
}

std::vector<pid_t> leaf_processes(const std::string& directory) {
  std::vector<pid_t> pids;
  std::istringstream procs(read_text(directory + "/cgroup.procs"));
  pid_t pid = 0;
  while (procs >> pid) {
    if (pid > 0) pids.push_back(pid);
  }
  return pids;
}

void signal_leaf(const std::string& directory, int signal) {
  for (pid_t pid : leaf_processes(directory)) kill(pid, signal);
}

}  // namespace

int clean_job_leaves(const CgroupView& view, uint32_t job_id, const std::string& node, std::string& problems) {
  int removed = 0;
  for (const auto& mount : view.mounts) {
    if (mount.version == 1 && !has(mount.controllers, "cpuset")) continue;
    for (const auto& job : slurm_job_folders(mount, job_id, node)) {
      for (const auto& name : subfolders(job)) {
        if (name.rfind(kLeafPrefix, 0) != 0) continue;
        const std::string directory = job + "/" + name;
        // SIGTERM first: an executor that stops on it removes its card and shared memory itself.
        signal_leaf(directory, SIGTERM);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
        while (!leaf_processes(directory).empty() && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        signal_leaf(directory, SIGKILL);
        CgroupLeaf leaf;
        leaf.version = mount.version;
        leaf.directory = directory;
        const std::string error = remove_cgroup_leaf(leaf);  // on v2 also cgroup.kill
        if (error.empty()) ++removed;
        else problems += (problems.empty() ? "" : "; ") + error;
      }
      // Slurm could not remove the job's cgroup while a leaf was in it (or while the executor was
      // still stopping when Slurm tried): it is empty now, or rmdir leaves it.
      rmdir(job.c_str());
    }
  }
  return removed;
}

}  // namespace sidecore::spank
