// An executor with a remote provider, as the Slurm plugin starts one for a step on several nodes:
// callers on its own host are served over shm, callers on another host over the remote provider,
// by the same workers' cores at the same time. The caller "on another host" runs in a UTS namespace
// of its own (another host name), which is what makes a caller remote.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "card.hpp"
#include "executor_process.hpp"

namespace sidecore_test {
namespace {

std::vector<std::string> on_another_host(std::vector<std::string> argv) {
  std::vector<std::string> wrapped{"/usr/bin/unshare", "--uts", "/bin/sh", "-c",
                                   "hostname sidecore-elsewhere && exec \"$0\" \"$@\""};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

TEST(TwoProviders, CallersOnTheHostUseShmAndCallersElsewhereTheRemoteProvider) {
  const std::string token = fresh_token();
  ExecutorProcess executor(
      ExecutorOptions{.provider = "shm", .token = token, .extra_args = {"--remote-provider", "tcp;ofi_rxm"}});
  const auto card = sidecore::parse_card(executor.card());
  EXPECT_EQ(card.provider, "shm");
  EXPECT_EQ(card.remote_provider, "tcp;ofi_rxm");
  ASSERT_EQ(card.remote_addresses.size(), card.worker_addresses.size());
  EXPECT_NE(card.watch, 0u) << "callers on other hosts need the liveness port: " << executor.card();

  // On this host: shm, with the executor's doorbell.
  auto client = sidecore::Client::connect(executor.card(), token);
  EXPECT_EQ(client.provider(), "shm");
  const auto echo = client.lookup(functions_library(), "echo");
  const uint64_t in = 0x5eedULL;
  uint64_t out = 0;
  const auto done = client.wait(client.submit(echo, &in, sizeof in, &out, sizeof out));
  EXPECT_EQ(done.error, sidecore::ErrorKind::none);
  EXPECT_EQ(out, in);

  // Elsewhere, while the local client stays connected: the remote provider.
  const auto remote = run_command(on_another_host({env_client_binary(), functions_library(), "200", "--print-provider"}),
                                  {"SIDECORE_EXECUTOR=" + executor.card(), "SIDECORE_TOKEN=" + token}, scaled(30000ms));
  EXPECT_EQ(remote.exit_code, 0) << remote.err;
  EXPECT_EQ(remote.out, "provider tcp;ofi_rxm\nok 200\n") << remote.err;

  // And a second caller on this host, in another process: shm again.
  const auto local = run_command({env_client_binary(), functions_library(), "200", "--print-provider"},
                                 {"SIDECORE_EXECUTOR=" + executor.card(), "SIDECORE_TOKEN=" + token}, scaled(30000ms));
  EXPECT_EQ(local.exit_code, 0) << local.err;
  EXPECT_EQ(local.out, "provider shm\nok 200\n") << local.err;
}

TEST(TwoProviders, ARemoteProviderTheSameAsTheLocalOneIsNotASecondSet) {
  const std::string token = fresh_token();
  ExecutorProcess executor(
      ExecutorOptions{.provider = "tcp;ofi_rxm", .token = token, .extra_args = {"--remote-provider", "tcp;ofi_rxm"}});
  const auto card = sidecore::parse_card(executor.card());
  EXPECT_EQ(card.provider, "tcp;ofi_rxm");
  EXPECT_TRUE(card.remote_provider.empty()) << executor.card();
}

TEST(TwoProviders, AnUnknownRemoteProviderIsAClearStartupError) {
  const std::string token = fresh_token();
  try {
    ExecutorProcess executor(
        ExecutorOptions{.provider = "shm", .token = token, .extra_args = {"--remote-provider", "no-such-provider"}});
    FAIL() << "the executor started with --remote-provider no-such-provider";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-provider"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sidecore_test
