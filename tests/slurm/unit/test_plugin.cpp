// The plugin core driven through a fake SPANK API, callback by callback as slurmstepd calls them.
#include <gtest/gtest.h>

#include <regex>

#include "card.hpp"
#include "card_reference.hpp"
#include "fake_spank.hpp"
#include "plugin.hpp"
#include "test_helpers.hpp"

namespace sidecore::spank {
namespace {

using namespace testing;

// This machine may have as few as 2 CPUs; the fake topology folds Slurm's cores 0..n onto CPUs 0 and 1
// (core k runs on CPU k % 2), so steps with more cores than the machine still start.
CpuMapping two_cpu_topology(const CoreSet& abstract) {
  std::vector<int> cpus;
  for (int core : abstract.cores()) cpus.push_back(core % 2);
  return {CoreSet(std::move(cpus)), ""};
}

class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(fake_executor().empty()) << "SIDECORE_FAKE_EXECUTOR is not set";
    host.items.job_id = 42;
    host.items.step_id = 0;
    host.items.local_task_count = 2;
    host.items.uid = getuid();
    host.items.gid = getgid();
    host.items.job_cores = "0-1";
    host.items.step_cores = "0";
    host.env["PATH"] = "/usr/bin:/bin";
    host.env["TMPDIR"] = dir.path();
    host.env["PWD"] = dir.path();
    host.env["FAKE_EXECUTOR_LOG"] = dir.file("log");
  }
  std::vector<std::string> admin(std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), "executor=" + fake_executor());
    return extra;
  }
  // What a task gets from SIDECORE_EXECUTOR: the card, once the (fake) executor has written it.
  std::string card() const {
    auto found = host.env.find("SIDECORE_EXECUTOR");
    if (found == host.env.end()) return "";
    try {
      return resolve_card(found->second);
    } catch (const CardError& e) {
      return std::string("no card: ") + e.what();
    }
  }
  // The card folder the plugin made under TMPDIR, if it still exists.
  bool card_folder_left() const {
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
      if (entry.path().filename().string().rfind("sidecore.42.", 0) == 0) return true;
    }
    return false;
  }

  TempDir dir;
  FakeSpank host;
  Plugin plugin{host, "/nonexistent/sidecore-executor", two_cpu_topology};
};

TEST_F(PluginTest, StartsOnTheIdleCoresExportsTheVariablesAndStopsAfterTheLastTask) {
  ASSERT_TRUE(start_step(plugin, host, admin(), {{OptionId::offload, nullptr}}));
  auto pid = plugin.executor_pid();
  ASSERT_TRUE(pid) << host.all_messages();
  EXPECT_FALSE(process_gone(*pid));
  EXPECT_EQ(host.env["SIDECORE_CORES"], "1");
  EXPECT_TRUE(std::regex_match(host.env["SIDECORE_TOKEN"], std::regex("[0-9a-f]{32}"))) << host.env["SIDECORE_TOKEN"];
  // start=async (the default): the tasks get a reference to the card and resolve it themselves.
  EXPECT_EQ(host.env["SIDECORE_EXECUTOR"].rfind("@" + dir.path() + "/sidecore.42.0.", 0), 0u) << host.env["SIDECORE_EXECUTOR"];
  EXPECT_NE(host.env["SIDECORE_EXECUTOR"].find(" pid=" + std::to_string(*pid) + " timeout_ms=10000"), std::string::npos)
      << host.env["SIDECORE_EXECUTOR"];
  const std::string text = card();
  EXPECT_NE(text.find("fake cores=1 token=" + host.env["SIDECORE_TOKEN"]), std::string::npos) << text;
  EXPECT_NE(text.find("--provider shm --poll adaptive"), std::string::npos) << text;
  // The executor writes to the user's stderr: warnings only, unless the admin asks for debug.
  EXPECT_NE(text.find("--log-level warn"), std::string::npos) << text;
  EXPECT_EQ(proc_status(*pid, "Cpus_allowed_list"), "1");
  EXPECT_TRUE(card_folder_left());

  EXPECT_EQ(plugin.task_exit(), 0);
  EXPECT_FALSE(process_gone(*pid)) << "stopped before the last task ended";
  EXPECT_EQ(plugin.task_exit(), 0);
  EXPECT_TRUE(wait_gone(*pid));
  EXPECT_FALSE(plugin.executor_pid());
  EXPECT_EQ(plugin.exit(), 0);
  EXPECT_NE(read_file(dir.file("log")).find("stopped"), std::string::npos);
  EXPECT_FALSE(card_folder_left());
}

// One token per step, the same on every node: srun draws it (local context) and every node's
// slurmstepd uses it, so ranks can use the executors of other nodes.
TEST_F(PluginTest, SrunDrawsTheStepTokenThatEveryNodeUses) {
  host.current = Context::local;
  EXPECT_EQ(plugin.local_user_init(), 0);
  const std::string drawn = host.env[kStepTokenVariable];
  EXPECT_TRUE(std::regex_match(drawn, std::regex("[0-9a-f]{32}"))) << drawn;
  for (uint32_t node = 0; node < 2; ++node) {  // two nodes' slurmstepd, each with the job's environment
    Plugin on_node{host, "/nonexistent", two_cpu_topology};
    host.items.node_id = node;
    ASSERT_TRUE(start_step(on_node, host, admin(), {{OptionId::offload, nullptr}}));
    EXPECT_EQ(host.env["SIDECORE_TOKEN"], drawn) << "node " << node;
    EXPECT_NE(card().find("token=" + drawn), std::string::npos) << card();
    EXPECT_TRUE(end_step(on_node, host));
  }
  // Something that is not a token (set by hand, say) is not used.
  host.env[kStepTokenVariable] = "not-a-token";
  Plugin other{host, "/nonexistent", two_cpu_topology};
  ASSERT_TRUE(start_step(other, host, admin(), {{OptionId::offload, nullptr}}));
  EXPECT_NE(host.env["SIDECORE_TOKEN"], "not-a-token");
  EXPECT_TRUE(std::regex_match(host.env["SIDECORE_TOKEN"], std::regex("[0-9a-f]{32}")));
  EXPECT_TRUE(end_step(other, host));
}

TEST_F(PluginTest, EachStepGetsAFreshToken) {
  ASSERT_TRUE(start_step(plugin, host, admin(), {{OptionId::offload, "idle"}}));
  const std::string first = host.env["SIDECORE_TOKEN"];
  ASSERT_TRUE(end_step(plugin, host));
  Plugin second_step{host, "/nonexistent"};
  host.items.step_id = 1;
  ASSERT_TRUE(start_step(second_step, host, admin(), {{OptionId::offload, "idle"}}));
  EXPECT_NE(host.env["SIDECORE_TOKEN"], first);
  EXPECT_TRUE(end_step(second_step, host));
}

TEST_F(PluginTest, JobFlagsReachTheExecutor) {
  host.items.job_cores = "0-4";
  ASSERT_TRUE(start_step(plugin, host, admin({"provider=tcp;ofi_rxm"}),
                         {{OptionId::offload, "2"}, {OptionId::poll, "hot"}, {OptionId::lib, "/x/liba.so,libb.so"},
                          {OptionId::stats, nullptr}}));
  const std::string card = this->card();
  EXPECT_EQ(host.env["SIDECORE_CORES"], "0-1");  // cores 3-4
  // provider= is for traffic between nodes: a one-node step serves its ranks over shm alone.
  EXPECT_NE(card.find("--provider shm --poll hot"), std::string::npos) << card;
  EXPECT_EQ(card.find("--remote-provider"), std::string::npos) << card;
  EXPECT_NE(card.find("--preload /x/liba.so --preload " + dir.path() + "/libb.so"), std::string::npos) << card;
  EXPECT_NE(card.find("--stats"), std::string::npos) << card;
  EXPECT_TRUE(end_step(plugin, host));
}

// A step on several nodes: the node's ranks still use shm, other nodes' ranks the admin's provider.
TEST_F(PluginTest, MultiNodeStepsServeRemoteCallersOverTheAdminsProvider) {
  host.items.node_count = 3;
  ASSERT_TRUE(start_step(plugin, host, admin({"provider=verbs;ofi_rxm"}), {{OptionId::offload, nullptr}}));
  std::string text = card();
  EXPECT_NE(text.find("--provider shm --remote-provider verbs;ofi_rxm --poll"), std::string::npos) << text;
  EXPECT_TRUE(end_step(plugin, host));

  Plugin second{host, "/nonexistent"};
  host.items.step_id = 1;
  ASSERT_TRUE(start_step(second, host, admin(), {{OptionId::offload, nullptr}}));
  text = card();
  EXPECT_NE(text.find("--provider shm --remote-provider auto --poll"), std::string::npos) << text;
  EXPECT_TRUE(end_step(second, host));
}

TEST_F(PluginTest, AdminDebugLogReachesTheExecutor) {
  ASSERT_TRUE(start_step(plugin, host, admin({"log_level=debug"}), {{OptionId::offload, nullptr}}));
  EXPECT_NE(card().find("--log-level debug"), std::string::npos) << card();
  EXPECT_TRUE(end_step(plugin, host));
}

TEST_F(PluginTest, NoExecutorForTheBatchOrExternStep) {
  for (uint32_t special : {0xfffffffbu, 0xfffffffcu, 0xfffffffau}) {
    FakeSpank step_host = host;
    Plugin step_plugin{step_host, "/nonexistent"};
    step_host.items.step_id = special;
    ASSERT_TRUE(start_step(step_plugin, step_host, admin(), {{OptionId::offload, nullptr}}));
    EXPECT_FALSE(step_plugin.executor_pid());
    EXPECT_EQ(step_host.env.count("SIDECORE_EXECUTOR"), 0u);
    EXPECT_TRUE(end_step(step_plugin, step_host));
  }
}

TEST_F(PluginTest, NoIdleCoresRunsTheStepAndSaysWhy) {
  host.items.step_cores = "0-1";
  ASSERT_TRUE(start_step(plugin, host, admin(), {{OptionId::offload, nullptr}}));
  EXPECT_FALSE(plugin.executor_pid());
  EXPECT_EQ(host.env.count("SIDECORE_EXECUTOR"), 0u);
  EXPECT_TRUE(host.logged(LogLevel::warn, "no executor on this node: the step's tasks use all 2")) << host.all_messages();
  EXPECT_TRUE(end_step(plugin, host));
}

TEST_F(PluginTest, WithoutTheFlagTheSiteDefaultDecides) {
  ASSERT_TRUE(start_step(plugin, host, admin(), {}));
  EXPECT_FALSE(plugin.executor_pid());
  EXPECT_TRUE(host.messages.empty()) << host.all_messages();
  EXPECT_TRUE(end_step(plugin, host));

  Plugin idle_default{host, "/nonexistent"};
  ASSERT_TRUE(start_step(idle_default, host, admin({"default=idle"}), {}));
  EXPECT_TRUE(idle_default.executor_pid()) << host.all_messages();
  EXPECT_EQ(host.env["SIDECORE_CORES"], "1");
  EXPECT_TRUE(end_step(idle_default, host));

  // The job's --offload=0 overrides the site's default.
  Plugin refused{host, "/nonexistent"};
  host.env.erase("SIDECORE_EXECUTOR");
  ASSERT_TRUE(start_step(refused, host, admin({"default=idle"}), {{OptionId::offload, "0"}}));
  EXPECT_FALSE(refused.executor_pid());
  EXPECT_EQ(host.env.count("SIDECORE_EXECUTOR"), 0u);
  EXPECT_TRUE(end_step(refused, host));
}

TEST_F(PluginTest, MaxCoresCapsAndSays) {
  host.items.job_cores = "0-3";
  ASSERT_TRUE(start_step(plugin, host, admin({"max_cores=1"}), {{OptionId::offload, nullptr}}));
  EXPECT_EQ(host.env["SIDECORE_CORES"], "1");  // core 3
  EXPECT_TRUE(host.logged(LogLevel::warn, "max_cores=1")) << host.all_messages();
  EXPECT_TRUE(end_step(plugin, host));
}

TEST_F(PluginTest, PartitionsOutsideAllowPartitionsGetNone) {
  host.env["SLURM_JOB_PARTITION"] = "debug";
  ASSERT_TRUE(start_step(plugin, host, admin({"allow_partitions=batch,gpu"}), {{OptionId::offload, nullptr}}));
  EXPECT_FALSE(plugin.executor_pid());
  EXPECT_TRUE(host.logged(LogLevel::warn, "partition 'debug'")) << host.all_messages();
  EXPECT_TRUE(end_step(plugin, host));

  Plugin allowed{host, "/nonexistent"};
  ASSERT_TRUE(start_step(allowed, host, admin({"allow_partitions=debug"}), {{OptionId::offload, nullptr}}));
  EXPECT_TRUE(allowed.executor_pid()) << host.all_messages();
  EXPECT_TRUE(end_step(allowed, host));
}

TEST_F(PluginTest, UnknownAdminKeysAreLoggedNotFatal) {
  ASSERT_TRUE(start_step(plugin, host, admin({"colour=blue", "max_cores=x"}), {{OptionId::offload, nullptr}}));
  EXPECT_TRUE(host.logged(LogLevel::error, "unknown argument 'colour'")) << host.all_messages();
  EXPECT_TRUE(host.logged(LogLevel::error, "max_cores=x")) << host.all_messages();
  EXPECT_TRUE(plugin.executor_pid());
  EXPECT_TRUE(end_step(plugin, host));
}

TEST_F(PluginTest, ClientsRefuseBadValuesAndSlurmstepdNeverFails) {
  for (Context client : {Context::local, Context::allocator}) {
    host.current = client;
    Plugin in_client{host, "/nonexistent"};
    EXPECT_EQ(in_client.init(admin({"colour=blue"})), 0);
    EXPECT_FALSE(host.logged(LogLevel::error, "colour")) << "admin errors are for the admin's logs";
    EXPECT_EQ(in_client.option(OptionId::offload, "abc", false), -1);
    EXPECT_TRUE(host.logged(LogLevel::error, "--offload=abc"));
    EXPECT_EQ(in_client.option(OptionId::offload, "-1", false), -1);
    EXPECT_EQ(in_client.option(OptionId::poll, "lukewarm", false), -1);
    EXPECT_TRUE(host.logged(LogLevel::error, "--offload-poll=lukewarm"));
    EXPECT_EQ(in_client.option(OptionId::offload, "2", false), 0);
    EXPECT_EQ(in_client.init_post_opt(), 0);
    EXPECT_EQ(in_client.user_init(), 0);
    EXPECT_FALSE(in_client.executor_pid()) << "clients never start executors";
    EXPECT_EQ(in_client.exit(), 0);
  }
  host.current = Context::remote;
  EXPECT_EQ(plugin.option(OptionId::offload, "abc", true), 0);
}

TEST_F(PluginTest, WithStartWaitTheTasksGetTheCardItself) {
  ASSERT_TRUE(start_step(plugin, host, admin({"start=wait"}), {{OptionId::offload, nullptr}}));
  EXPECT_EQ(host.env["SIDECORE_EXECUTOR"].rfind("fake cores=1 token=", 0), 0u) << host.env["SIDECORE_EXECUTOR"];
  EXPECT_TRUE(end_step(plugin, host));
}

TEST_F(PluginTest, WithStartWaitAnErrorCardIsNeverExportedAndTheStepRuns) {
  host.env["FAKE_EXECUTOR_MODE"] = "error";
  ASSERT_TRUE(start_step(plugin, host, admin({"start=wait"}), {{OptionId::offload, nullptr}}));
  EXPECT_EQ(host.env.count("SIDECORE_EXECUTOR"), 0u) << host.env["SIDECORE_EXECUTOR"];
  EXPECT_FALSE(plugin.executor_pid());
  EXPECT_TRUE(host.logged(LogLevel::warn, "could not start: fake executor: no provider on purpose"))
      << host.all_messages();
  EXPECT_FALSE(card_folder_left());
  EXPECT_TRUE(end_step(plugin, host));
}

TEST_F(PluginTest, AsyncStartAnExecutorThatCannotStartLeavesTheStepRunningAndSaysWhy) {
  host.env["FAKE_EXECUTOR_MODE"] = "exit";
  ASSERT_TRUE(start_step(plugin, host, admin(), {{OptionId::offload, nullptr}}));
  auto pid = plugin.executor_pid();
  ASSERT_TRUE(pid) << host.all_messages();
  // A task that connects learns there is no executor, and why, instead of waiting out the timeout.
  EXPECT_NE(card().find("no card: the executor (pid " + std::to_string(*pid) + ") exited before it was ready"),
            std::string::npos) << card();
  EXPECT_TRUE(end_step(plugin, host));
  EXPECT_TRUE(host.logged(LogLevel::warn, "exited with status 3 before it was ready")) << host.all_messages();
  EXPECT_FALSE(card_folder_left());
}

TEST_F(PluginTest, AnExecutorThatCannotStartLeavesTheStepRunning) {
  host.env["FAKE_EXECUTOR_MODE"] = "exit";
  ASSERT_TRUE(start_step(plugin, host, admin({"start=wait"}), {{OptionId::offload, nullptr}}));
  EXPECT_FALSE(plugin.executor_pid());
  EXPECT_EQ(host.env.count("SIDECORE_EXECUTOR"), 0u);
  EXPECT_TRUE(host.logged(LogLevel::warn, "exited with status 3 before it was ready")) << host.all_messages();
  EXPECT_FALSE(card_folder_left());
  EXPECT_TRUE(end_step(plugin, host));

  Plugin missing{host, "/nonexistent"};
  host.env.erase("FAKE_EXECUTOR_MODE");
  ASSERT_TRUE(start_step(missing, host, {"executor=/nonexistent/sidecore-executor"}, {{OptionId::offload, nullptr}}));
  EXPECT_FALSE(missing.executor_pid());
  EXPECT_TRUE(host.logged(LogLevel::warn, "cannot execute /nonexistent/sidecore-executor")) << host.all_messages();
  EXPECT_TRUE(end_step(missing, host));
}

TEST_F(PluginTest, AnExecutorKilledMidStepDoesNotFailIt) {
  ASSERT_TRUE(start_step(plugin, host, admin(), {{OptionId::offload, nullptr}}));
  auto pid = plugin.executor_pid();
  ASSERT_TRUE(pid);
  ASSERT_EQ(card().rfind("fake cores=", 0), 0u) << card();  // it served, as far as the tasks know
  ASSERT_EQ(kill(*pid, SIGKILL), 0);
  ASSERT_TRUE(wait_gone(*pid));
  EXPECT_TRUE(end_step(plugin, host));
  EXPECT_TRUE(host.logged(LogLevel::info, "had already exited")) << host.all_messages();
  EXPECT_FALSE(card_folder_left());
}

TEST_F(PluginTest, ExitStopsAnExecutorWhoseTasksNeverReported) {
  ASSERT_TRUE(start_step(plugin, host, admin(), {{OptionId::offload, nullptr}}));
  auto pid = plugin.executor_pid();
  ASSERT_TRUE(pid);
  EXPECT_EQ(plugin.task_exit(), 0);  // one of two
  EXPECT_EQ(plugin.exit(), 0);
  EXPECT_TRUE(wait_gone(*pid));
  EXPECT_FALSE(card_folder_left());
}

}  // namespace
}  // namespace sidecore::spank
