// --offload-lease in srun: the refusals, and the sbatch and scancel calls, against stand-ins for
// Slurm's commands that record how they were called.
#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>

#include "fake_spank.hpp"
#include "lease.hpp"
#include "plugin.hpp"
#include "test_helpers.hpp"

namespace sidecore::spank {
namespace {

using namespace testing;

TEST(LeaseText, TimeLeftInMinutes) {
  EXPECT_EQ(parse_time_left_minutes("1:30:00\n"), 90u);
  EXPECT_EQ(parse_time_left_minutes("59:59"), 59u);
  EXPECT_EQ(parse_time_left_minutes("2-01:00:30"), 2u * 24 * 60 + 60);
  EXPECT_EQ(parse_time_left_minutes("0:45"), 0u);
  EXPECT_FALSE(parse_time_left_minutes("UNLIMITED"));
  EXPECT_FALSE(parse_time_left_minutes("INVALID"));
  EXPECT_FALSE(parse_time_left_minutes(""));
}

TEST(LeaseText, SbatchJobId) {
  EXPECT_EQ(parse_sbatch_job_id("123\n"), 123u);
  EXPECT_EQ(parse_sbatch_job_id("77;cluster2\n"), 77u);
  EXPECT_FALSE(parse_sbatch_job_id("sbatch: error: invalid partition"));
  EXPECT_FALSE(parse_sbatch_job_id(""));
}

TEST(LeaseText, TheLeaseJobKeepsTheUsersEnvironmentWithoutTheStepsAndGetsTheToken) {
  const auto env = lease_environment({"HOME=/home/u", "PATH=/bin", "SLURM_CONF=/etc/slurm.conf", "SLURM_JOB_ID=5",
                                      "SLURM_NTASKS=4", "_SLURM_SPANK_OPTION_sidecore_offload_lease=2",
                                      "SPANK_SIDECORE_X=1", "OMPI_MCA_pml=cm", "SIDECORE_STEP_TOKEN=abc"},
                                     "0123");
  EXPECT_EQ(env, (std::vector<std::string>{"HOME=/home/u", "PATH=/bin", "SLURM_CONF=/etc/slurm.conf",
                                           std::string(kLeaseTokenVariable) + "=0123"}));
}

// Stand-ins for sbatch, squeue and scancel on PATH, each appending its arguments (and sbatch its
// environment) to a log.
class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tool("sbatch",
               "echo \"sbatch $*\" >> " + dir.file("calls") + "\nenv > " + dir.file("sbatch.env") +
                   "\nif [ -n \"$FAIL\" ]; then echo 'sbatch: error: invalid partition specified: spare' >&2; "
                   "exit 1; fi\nif [ -n \"$SILENT\" ]; then exit 0; fi\necho '4242;cluster'");
    write_tool("squeue", "echo \"squeue $*\" >> " + dir.file("calls") + "\necho '1:30:00'");
    write_tool("scancel", "echo \"scancel $*\" >> " + dir.file("calls"));
    const char* path = std::getenv("PATH");
    saved_path = path ? path : "";
    ::setenv("PATH", (dir.path() + ":" + saved_path).c_str(), 1);
    host.current = Context::local;
    host.env["PATH"] = dir.path() + ":/usr/bin:/bin";
    host.env["SLURM_JOB_ID"] = "17";
    host.env["SLURM_JOB_ACCOUNT"] = "physics";
    host.env["SLURM_NTASKS"] = "1";
    host.env["PWD"] = "/home/u/run";
  }
  void TearDown() override { ::setenv("PATH", saved_path.c_str(), 1); }
  void write_tool(const std::string& name, const std::string& body) {
    std::ofstream(dir.file(name)) << "#!/bin/sh\n" << body << "\n";
    chmod(dir.file(name).c_str(), 0755);
  }
  // srun: init, the flags, then local_user_init.
  void srun(const std::vector<std::string>& admin, unsigned lease, const char* lib = nullptr) {
    ASSERT_EQ(plugin.init(admin), 0);
    ASSERT_EQ(plugin.option(OptionId::lease, std::to_string(lease).c_str(), false), 0);
    if (lib) {
      ASSERT_EQ(plugin.option(OptionId::lib, lib, false), 0);
    }
    ASSERT_EQ(plugin.local_user_init(), 0);
  }
  std::string calls() const { return read_file(dir.file("calls")); }

  TempDir dir;
  std::string saved_path;
  FakeSpank host;
  Plugin plugin{host, "/opt/sidecore/bin/sidecore-executor"};
};

TEST_F(LeaseTest, SrunSubmitsTheLeaseAsTheUsersJobAndCancelsItAtTheEnd) {
  srun({"lease_partition=spare", "lease_max_cores=4", "lease_time=120", "max_task_s=30"}, 2, "fn.so");
  EXPECT_EQ(host.env[kLeaseJobVariable], "4242") << host.all_messages();
  const std::string text = calls();
  EXPECT_NE(text.find("squeue --noheader --jobs=17 --format=%L"), std::string::npos) << text;
  // The job's 90 minutes left bound the admin's 120.
  EXPECT_NE(text.find("sbatch --parsable --partition=spare --ntasks=2 --cpus-per-task=1 --time=90 "
                      "--job-name=sidecore-lease.17 --output=/dev/null --error=/dev/null --chdir=/ "
                      "--comment=sidecore-lease/1 --account=physics /opt/sidecore/libexec/sidecore/sidecore-lease "
                      "/opt/sidecore/bin/sidecore-executor tcp;ofi_rxm --poll adaptive --log-level warn "
                      "--max-task-s 30 --preload /home/u/run/fn.so"),
            std::string::npos)
      << text;
  // The token: the step's, in the lease job's environment only.
  const std::string token = host.env[kStepTokenVariable];
  ASSERT_TRUE(std::regex_match(token, std::regex("[0-9a-f]{32}")));
  EXPECT_EQ(text.find(token), std::string::npos) << "the token is on sbatch's command line";
  const std::string env = read_file(dir.file("sbatch.env"));
  EXPECT_NE(env.find(std::string(kLeaseTokenVariable) + "=" + token + "\n"), std::string::npos) << env;
  EXPECT_EQ(env.find("SLURM_JOB_ID="), std::string::npos) << env;
  EXPECT_EQ(env.find("SLURM_NTASKS="), std::string::npos) << env;
  EXPECT_TRUE(host.logged(LogLevel::info, "lease job 4242: 2 core(s) in partition spare for at most 90 min"))
      << host.all_messages();

  EXPECT_FALSE(host.env.count(kLeaseStatsVariable));  // no --offload-stats

  EXPECT_EQ(plugin.exit(), 0);
  EXPECT_NE(calls().find("scancel --quiet 4242"), std::string::npos) << calls();
}

TEST_F(LeaseTest, WithStatsTheRanksReportWhatTheLeaseServed) {
  ASSERT_EQ(plugin.init({"lease_partition=spare"}), 0);
  ASSERT_EQ(plugin.option(OptionId::lease, "2", false), 0);
  ASSERT_EQ(plugin.option(OptionId::stats, nullptr, false), 0);
  ASSERT_EQ(plugin.local_user_init(), 0);
  EXPECT_EQ(host.env[kLeaseStatsVariable], "1") << host.all_messages();
}

TEST_F(LeaseTest, WithoutALeasePartitionTheStepRunsAndSaysWhy) {
  srun({}, 2);
  EXPECT_FALSE(host.env.count(kLeaseJobVariable));
  EXPECT_TRUE(host.logged(
      LogLevel::warn, "sidecore: --offload-lease=2: this cluster has no lease partition (the admin's plugstack.conf "
                      "line sets no lease_partition=); the step runs without a lease"))
      << host.all_messages();
  EXPECT_EQ(host.messages.size(), 1u) << host.all_messages();
  EXPECT_EQ(calls(), "");
  EXPECT_EQ(plugin.exit(), 0);
  EXPECT_EQ(calls(), "");
}

TEST_F(LeaseTest, OverTheSitesCapTheStepRunsAndSaysWhy) {
  srun({"lease_partition=spare", "lease_max_cores=2"}, 3);
  EXPECT_FALSE(host.env.count(kLeaseJobVariable));
  EXPECT_TRUE(host.logged(LogLevel::warn, "--offload-lease=3: the site lends at most 2 core(s) per step "
                                          "(lease_max_cores); the step runs without a lease"))
      << host.all_messages();
  EXPECT_EQ(calls(), "");
}

TEST_F(LeaseTest, SlurmsRefusalReachesTheUser) {
  host.env["FAIL"] = "1";
  srun({"lease_partition=spare"}, 1);
  EXPECT_FALSE(host.env.count(kLeaseJobVariable));
  EXPECT_TRUE(host.logged(LogLevel::warn,
                          "--offload-lease=1: Slurm refused the lease job in partition spare: "
                          "sbatch: error: invalid partition specified: spare; the step runs without a lease"))
      << host.all_messages();
  EXPECT_EQ(plugin.exit(), 0);
  EXPECT_EQ(calls().find("scancel"), std::string::npos) << calls();
}

// sbatch --quiet prints no id even with --parsable (Slurm 22.05): a lease submitted without one
// coming back is cancelled by its name, never left to run.
TEST_F(LeaseTest, ALeaseWhoseIdDidNotComeBackIsCancelledByName) {
  host.env["SILENT"] = "1";
  srun({"lease_partition=spare"}, 1);
  EXPECT_FALSE(host.env.count(kLeaseJobVariable));
  EXPECT_NE(calls().find("scancel --quiet --name=sidecore-lease.17"), std::string::npos) << calls();
  EXPECT_TRUE(host.logged(LogLevel::warn, "--offload-lease=1: sbatch gave no job id for the lease job"))
      << host.all_messages();
}

TEST_F(LeaseTest, NoLeaseWasAskedForNoCommandRuns) {
  ASSERT_EQ(plugin.init({"lease_partition=spare"}), 0);
  ASSERT_EQ(plugin.local_user_init(), 0);
  EXPECT_EQ(plugin.exit(), 0);
  EXPECT_EQ(calls(), "");
  EXPECT_TRUE(host.messages.empty()) << host.all_messages();
}

}  // namespace
}  // namespace sidecore::spank
