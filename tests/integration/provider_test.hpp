// The fixture shared by the tests that run once per libfabric provider: a fresh executor on
// CPU 1 and a connected client, checked for a clean shutdown at the end.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "executor_process.hpp"
#include "sidecore/sidecore.hpp"

namespace sidecore_test {

// The libfabric providers, and shm with the client's transport set to fabric ("shm:fabric"): plain
// "shm" runs the client over the executor's node-local rings, which its card offers.
inline std::vector<std::string> providers() { return {"shm", "shm:fabric", "tcp;ofi_rxm", "net"}; }
inline std::string provider_of(const std::string& param) { return param.substr(0, param.find(':')); }
inline sidecore::Transport transport_of(const std::string& param) {
  return param.ends_with(":fabric") ? sidecore::Transport::fabric : sidecore::Transport::automatic;
}

// "tcp;ofi_rxm" -> "tcp_ofi_rxm": GoogleTest names allow only letters, digits and '_'.
inline std::string provider_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

class ProviderTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    token_ = fresh_token();
    executor_ =
        std::make_unique<ExecutorProcess>(ExecutorOptions{.provider = provider_of(GetParam()), .token = token_});
    client_.emplace(sidecore::Client::connect(executor_->card(), token_, options()));
  }

  void TearDown() override {
    client_.reset();
    if (executor_) {
      const int status = executor_->stop();
      EXPECT_EQ(status, 0) << "the executor did not exit cleanly on SIGTERM; stderr:\n" << executor_->stderr_text();
      std::error_code error;
      EXPECT_FALSE(std::filesystem::exists(executor_->card_path(), error)) << "the executor left its card file behind";
    }
  }

  sidecore::Client& client() { return *client_; }
  sidecore::ClientOptions options() const { return {.transport = transport_of(GetParam())}; }
  sidecore::Function lookup(const char* symbol) { return client_->lookup(functions_library(), symbol); }

  std::string token_;
  std::unique_ptr<ExecutorProcess> executor_;
  std::optional<sidecore::Client> client_;
};

}  // namespace sidecore_test
