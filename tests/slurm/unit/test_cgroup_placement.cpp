// Where the executor goes in the cgroup tree, planned and carried out on fake cgroup trees (plain
// folders laid out as cgroup v1 and v2 mount them, with Slurm's job and step folders).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>

#include "cgroup_placement.hpp"
#include "fake_spank.hpp"
#include "plugin.hpp"
#include "process/child_process.hpp"
#include "test_helpers.hpp"

namespace sidecore::spank {
namespace {

using namespace testing;
namespace fs = std::filesystem;

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text << "\n";
}

// Debian 12's layout: v1 controllers under <root>/<name>, an empty v2 hierarchy at <root>/unified,
// and slurmstepd of job 7 step 0 on node n1 in the step's cpuset and the job's freezer cgroup.
class CgroupV1Tree : public ::testing::Test {
 protected:
  void SetUp() override {
    view.mounts = parse_mountinfo(
        "30 25 0:26 / " + dir.path() + "/cpuset rw,nosuid - cgroup cgroup rw,cpuset\n"
        "31 25 0:27 / " + dir.path() + "/freezer rw,nosuid - cgroup cgroup rw,freezer\n"
        "32 25 0:28 / " + dir.path() + "/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
        "33 25 0:29 / " + dir.path() + "/unified rw,nosuid - cgroup2 cgroup2 rw\n"
        "34 25 8:1 / / rw - ext4 /dev/vda1 rw\n");
    view.self_cgroup = "6:freezer:/slurm_n1/uid_5/job_7\n3:cpuset:/slurm_n1/uid_5/job_7/step_0\n2:cpu,cpuacct:/\n0::/\n";
    write(job_dir() + "/cpuset.effective_cpus", "0-3");
    write(job_dir() + "/cpuset.effective_mems", "0");
    write(job_dir() + "/step_0/cpuset.effective_cpus", "0");
  }
  std::string job_dir() const { return dir.path() + "/cpuset/slurm_n1/uid_5/job_7"; }
  // Step 0 of job 7, one task on core 0, the job holding `job_cores`.
  void step_of_job_7(FakeSpank& host, const std::string& job_cores) const {
    host.items.job_id = 7;
    host.items.local_task_count = 1;
    host.items.uid = getuid();
    host.items.gid = getgid();
    host.items.job_cores = job_cores;
    host.items.step_cores = "0";
    host.env["TMPDIR"] = dir.path();
  }
  // A plugin that sees this fake tree as its cgroups, with Slurm's core ids as CPU numbers.
  Plugin plugin_on_this_tree(FakeSpank& host) const {
    const CgroupView tree = view;
    return Plugin(host, "/nonexistent", [](const CoreSet& cores) { return CpuMapping{cores, ""}; },
                  [tree](const std::string&) { return tree; });
  }

  TempDir dir;
  CgroupView view;
};

TEST(CgroupMountinfo, ReadsCgroupMountsOnlyWithTheirControllersRootAndEscapedPaths) {
  const auto mounts = parse_mountinfo(
      "30 25 0:26 /docker/abc /sys/fs/cgroup/cpu\\040set rw - cgroup cgroup rw,cpuset,clone_children\n"
      "33 25 0:29 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
      "34 25 8:1 / / rw - ext4 /dev/vda1 rw\n"
      "garbage line\n");
  ASSERT_EQ(mounts.size(), 2u);
  EXPECT_EQ(mounts[0].version, 1);
  EXPECT_EQ(mounts[0].root, "/docker/abc");
  EXPECT_EQ(mounts[0].mount_point, "/sys/fs/cgroup/cpu set");
  EXPECT_EQ(mounts[0].controllers, (std::vector<std::string>{"rw", "cpuset", "clone_children"}));
  EXPECT_EQ(mounts[1].version, 2);
  EXPECT_EQ(mounts[1].mount_point, "/sys/fs/cgroup/unified");
}

TEST(CgroupMode, ParsesTheFourSpellingsOnly) {
  EXPECT_EQ(parse_cgroup_mode("auto"), CgroupMode::automatic);
  EXPECT_EQ(parse_cgroup_mode("v1"), CgroupMode::v1);
  EXPECT_EQ(parse_cgroup_mode("v2"), CgroupMode::v2);
  EXPECT_EQ(parse_cgroup_mode("off"), CgroupMode::off);
  EXPECT_FALSE(parse_cgroup_mode("yes"));
  EXPECT_FALSE(parse_cgroup_mode(""));
}

TEST_F(CgroupV1Tree, AutoPutsTheExecutorInALeafOfTheJobOnItsCpusWithTheJobsMemoryNodes) {
  const CgroupPlan plan = plan_cgroup_leaf(view, CgroupMode::automatic, 7, 0, CoreSet::parse("2-3"));
  ASSERT_TRUE(plan.error.empty()) << plan.error;
  ASSERT_TRUE(plan.leaf);
  EXPECT_EQ(plan.leaf->version, 1);
  EXPECT_EQ(plan.leaf->directory, job_dir() + "/sidecore_step_0");
  EXPECT_EQ(plan.leaf->cpus, "2-3");
  EXPECT_EQ(plan.leaf->mems, "0");
  EXPECT_EQ(plan_cgroup_leaf(view, CgroupMode::v1, 7, 0, CoreSet::parse("2-3")).leaf->directory, plan.leaf->directory);
}

TEST_F(CgroupV1Tree, RefusesCpusOutsideTheJobsCpuset) {
  const CgroupPlan plan = plan_cgroup_leaf(view, CgroupMode::automatic, 7, 0, CoreSet::parse("3-4"));
  EXPECT_FALSE(plan.leaf);
  EXPECT_NE(plan.error.find("CPU 4 is not in the job's cpuset " + job_dir() + " (0-3)"), std::string::npos) << plan.error;
}

TEST_F(CgroupV1Tree, AnotherJobsCgroupIsNotOurs) {
  // slurmstepd of job 7 planning for job 8: no job_8 in its path, so not under task/cgroup for it.
  const CgroupPlan plan = plan_cgroup_leaf(view, CgroupMode::automatic, 8, 0, CoreSet::parse("2"));
  EXPECT_FALSE(plan.leaf);
  EXPECT_TRUE(plan.error.empty());
  EXPECT_FALSE(plan_cgroup_leaf(view, CgroupMode::v1, 8, 0, CoreSet::parse("2")).error.empty());
}

TEST_F(CgroupV1Tree, OffLeavesTheExecutorWhereItIs) {
  const CgroupPlan plan = plan_cgroup_leaf(view, CgroupMode::off, 7, 0, CoreSet::parse("2"));
  EXPECT_FALSE(plan.leaf);
  EXPECT_TRUE(plan.error.empty());
}

TEST_F(CgroupV1Tree, AskingForV2OnAV1NodeIsAnErrorThatSaysSo) {
  const CgroupPlan plan = plan_cgroup_leaf(view, CgroupMode::v2, 7, 0, CoreSet::parse("2"));
  EXPECT_FALSE(plan.leaf);
  EXPECT_NE(plan.error.find("cgroup=v2 in plugstack.conf, but the step is not in a Slurm job's cgroup v2"), std::string::npos)
      << plan.error;
}

TEST(CgroupAffinityNode, AutoDoesNothingOutsideAJobCgroupAndV1SaysWhatIsMissing) {
  CgroupView view;
  view.mounts = parse_mountinfo("30 25 0:26 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n");
  view.self_cgroup = "3:cpuset:/\n0::/\n";
  const CgroupPlan automatic = plan_cgroup_leaf(view, CgroupMode::automatic, 7, 0, CoreSet::parse("1"));
  EXPECT_FALSE(automatic.leaf);
  EXPECT_TRUE(automatic.error.empty());
  const CgroupPlan v1 = plan_cgroup_leaf(view, CgroupMode::v1, 7, 0, CoreSet::parse("1"));
  EXPECT_NE(v1.error.find("is TaskPlugin=task/cgroup set, with CgroupPlugin=cgroup/v1?"), std::string::npos) << v1.error;
  view.mounts.clear();
  EXPECT_NE(plan_cgroup_leaf(view, CgroupMode::v1, 7, 0, CoreSet::parse("1")).error.find("mounts no cgroup v1 cpuset"),
            std::string::npos);
}

// Slurm 24.11 on cgroup v2 without systemd: slurmstepd in job_<id>/step_<n>/slurm, the job's cgroup
// handing cpuset to its children.
TEST(CgroupV2Tree, AutoPutsTheExecutorInALeafOfTheJobAndNeedsTheCpusetController) {
  TempDir dir;
  const std::string job = dir.path() + "/system.slice/n1_slurmstepd.scope/job_7";
  write(job + "/cgroup.subtree_control", "cpuset cpu memory");
  write(job + "/cpuset.cpus.effective", "0-3");
  CgroupView view;
  view.mounts = parse_mountinfo("33 25 0:29 / " + dir.path() + " rw - cgroup2 cgroup2 rw\n");
  view.self_cgroup = "0::/system.slice/n1_slurmstepd.scope/job_7/step_0/slurm\n";
  const CgroupPlan plan = plan_cgroup_leaf(view, CgroupMode::automatic, 7, 0, CoreSet::parse("1-2"));
  ASSERT_TRUE(plan.leaf) << plan.error;
  EXPECT_EQ(plan.leaf->version, 2);
  EXPECT_EQ(plan.leaf->directory, job + "/sidecore_step_0");
  EXPECT_EQ(plan.leaf->cpus, "1-2");
  EXPECT_EQ(plan.leaf->mems, "");  // v2: a new cgroup takes its parent's memory nodes
  EXPECT_TRUE(plan_cgroup_leaf(view, CgroupMode::v2, 7, 0, CoreSet::parse("1-2")).leaf);

  write(job + "/cgroup.subtree_control", "cpu memory");
  const CgroupPlan without = plan_cgroup_leaf(view, CgroupMode::automatic, 7, 0, CoreSet::parse("1-2"));
  EXPECT_FALSE(without.leaf);
  EXPECT_NE(without.error.find("does not enable the cpuset controller"), std::string::npos) << without.error;
}

TEST_F(CgroupV1Tree, TheExecutorFollowsTheStepIntoItsFreezerAndCpuacctCgroups) {
  const CgroupPlan plan = plan_cgroup_leaf(view, CgroupMode::automatic, 7, 0, CoreSet::parse("2"));
  ASSERT_TRUE(plan.leaf);
  // The executor's two processes in its leaf; the step's task in step_0 (and task_0 for cpuacct).
  write(plan.leaf->directory + "/cgroup.procs", "111\n112");
  const std::string freezer_step = dir.path() + "/freezer/slurm_n1/uid_5/job_7/step_0";
  const std::string cpuacct_step = dir.path() + "/cpu,cpuacct/slurm_n1/uid_5/job_7/step_0";
  fs::create_directories(freezer_step);
  fs::create_directories(cpuacct_step + "/task_0");
  CgroupView task = view;
  task.self_cgroup = "6:freezer:/slurm_n1/uid_5/job_7/step_0\n5:devices:/slurm_n1/uid_5/job_7/step_0\n"
                     "3:cpuset:/slurm_n1/uid_5/job_7/step_0\n"
                     "2:cpu,cpuacct:/slurm_n1/uid_5/job_7/step_0/task_0\n1:name=systemd:/\n0::/\n";
  task.mounts.push_back(parse_mountinfo("35 25 0:30 / " + dir.path() + "/devices rw - cgroup cgroup rw,devices\n")[0]);
  fs::create_directories(dir.path() + "/devices/slurm_n1/uid_5/job_7/step_0");
  EXPECT_EQ(follow_step_cgroups(*plan.leaf, task, 7), "");
  EXPECT_EQ(read_file(freezer_step + "/cgroup.procs"), "111112");  // one write per process
  EXPECT_EQ(read_file(cpuacct_step + "/cgroup.procs"), "111112");
  EXPECT_FALSE(fs::exists(cpuacct_step + "/task_0/cgroup.procs"));
  // Not the devices cgroup: the step's device limits would take the job's GPUs from the executor.
  EXPECT_FALSE(fs::exists(dir.path() + "/devices/slurm_n1/uid_5/job_7/step_0/cgroup.procs"));
  // The cpuset hierarchy is the leaf's, untouched.
  EXPECT_FALSE(fs::exists(job_dir() + "/step_0/cgroup.procs"));
}

// The job's epilog: what a killed slurmstepd left in Slurm's own job folder is stopped and removed;
// a job_<id> folder elsewhere (a user could make one in a delegated subtree) is never touched.
TEST_F(CgroupV1Tree, TheEpilogStopsWhatIsLeftInSlurmsJobFolderOnly) {
  auto start_sleeper = [] {
    SpawnOptions options;
    options.argv = {"/bin/sleep", "30"};
    return ChildProcess::spawn(options);
  };
  auto left = start_sleeper();
  auto elsewhere = start_sleeper();
  const std::string leaf = job_dir() + "/sidecore_step_3";
  write(leaf + "/cgroup.procs", std::to_string(left.pid()));
  const std::string foreign = dir.path() + "/cpuset/user.slice/job_7/sidecore_step_3";
  write(foreign + "/cgroup.procs", std::to_string(elsewhere.pid()));
  write(dir.path() + "/cpuset/slurm_n2/uid_5/job_7/sidecore_step_3/cgroup.procs", std::to_string(elsewhere.pid()));

  std::string problems;
  clean_job_leaves(view, 7, "n1", problems);
  const auto stopped = left.wait_for(std::chrono::seconds(10));
  ASSERT_TRUE(stopped) << "the process left in the job folder was not stopped";
  EXPECT_EQ(stopped->kind, ExitStatus::Kind::signaled) << stopped->describe();
  EXPECT_EQ(stopped->value, SIGTERM) << stopped->describe();
  // Here the leaf is a plain folder with a file in it, which rmdir refuses, and says so.
  EXPECT_NE(problems.find("cannot remove " + leaf), std::string::npos) << problems;
  EXPECT_TRUE(elsewhere.running()) << "a process outside this node's Slurm job folder was signalled";
  EXPECT_TRUE(fs::exists(foreign));
  elsewhere.stop(std::chrono::milliseconds(0));
}

// The whole start in the plugin: the forked child creates the leaf, writes its CPUs and memory
// nodes, and moves itself in before it pins itself.
TEST_F(CgroupV1Tree, ThePluginsExecutorJoinsItsLeafBeforeItRuns) {
  ASSERT_FALSE(fake_executor().empty()) << "SIDECORE_FAKE_EXECUTOR is not set";
  FakeSpank host;
  step_of_job_7(host, "0-1");
  host.env["FAKE_EXECUTOR_LOG"] = dir.file("log");
  write(job_dir() + "/cpuset.effective_cpus", "0-1");
  // The files a cgroup file system gives a new folder (the child never creates files).
  const std::string leaf = job_dir() + "/sidecore_step_0";
  fs::create_directories(leaf);
  for (const char* file : {"cpuset.cpus", "cpuset.mems", "cgroup.procs"}) std::ofstream(leaf + "/" + file);
  Plugin plugin = plugin_on_this_tree(host);
  ASSERT_TRUE(start_step(plugin, host, {"executor=" + fake_executor(), "start=wait"}, {{OptionId::offload, nullptr}}));
  const auto pid = plugin.executor_pid();
  ASSERT_TRUE(pid) << host.all_messages();
  ASSERT_TRUE(plugin.cgroup_leaf());
  EXPECT_EQ(plugin.cgroup_leaf()->directory, leaf);
  EXPECT_EQ(read_file(leaf + "/cpuset.cpus"), "1");
  EXPECT_EQ(read_file(leaf + "/cpuset.mems"), "0");
  EXPECT_EQ(read_file(leaf + "/cgroup.procs"), std::to_string(*pid));
  ASSERT_TRUE(end_step(plugin, host));
  EXPECT_TRUE(wait_gone(*pid));
}

TEST_F(CgroupV1Tree, ALeafThatHoldsAnotherExecutorIsNotJoined) {
  FakeSpank host;
  step_of_job_7(host, "0-1");
  write(job_dir() + "/cpuset.effective_cpus", "0-1");
  write(job_dir() + "/sidecore_step_0/cgroup.procs", "4242");  // an executor of an earlier run of step 0
  Plugin plugin = plugin_on_this_tree(host);
  ASSERT_TRUE(start_step(plugin, host, {"executor=" + fake_executor(), "start=wait"}, {{OptionId::offload, nullptr}}));
  EXPECT_FALSE(plugin.executor_pid());
  EXPECT_TRUE(host.logged(LogLevel::warn, "the executor did not start: creating its cgroup " + job_dir() +
                                              "/sidecore_step_0 failed: File exists"))
      << host.all_messages();
}

TEST_F(CgroupV1Tree, APlanThatCannotBeMetMeansNoExecutorAndAMessage) {
  FakeSpank host;
  step_of_job_7(host, "0-5");
  Plugin plugin = plugin_on_this_tree(host);
  ASSERT_TRUE(start_step(plugin, host, {"executor=" + fake_executor()}, {{OptionId::offload, nullptr}}));
  EXPECT_FALSE(plugin.executor_pid());
  EXPECT_FALSE(host.env.count("SIDECORE_EXECUTOR"));
  EXPECT_TRUE(host.logged(LogLevel::warn, "no executor on this node: CPU 4 is not in the job's cpuset")) << host.all_messages();
  // Nothing was made: no card folder, no leaf.
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_NE(entry.path().filename().string().rfind("sidecore.7.", 0), 0u) << entry.path();
  }
  EXPECT_FALSE(fs::exists(job_dir() + "/sidecore_step_0"));
}

TEST(CgroupNodeCheck, SlurmdLogsOnceWhenTheNodeLacksTheVersionAsked) {
  FakeSpank host;
  host.current = Context::slurmd;
  CgroupView view;
  view.mounts = parse_mountinfo("30 25 0:26 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n");
  Plugin plugin(host, "/nonexistent", abstract_cores_to_cpus, [view](const std::string&) { return view; });
  EXPECT_EQ(plugin.init({"cgroup=v2"}), 0);
  EXPECT_TRUE(host.logged(LogLevel::error, "sidecore: plugstack.conf: cgroup=v2, but this node mounts no cgroup v2 hierarchy"))
      << host.all_messages();
  EXPECT_EQ(host.messages.size(), 1u);
  host.messages.clear();
  EXPECT_EQ(plugin.init({"cgroup=v1"}), 0);
  EXPECT_TRUE(host.messages.empty()) << host.all_messages();
}

}  // namespace
}  // namespace sidecore::spank
