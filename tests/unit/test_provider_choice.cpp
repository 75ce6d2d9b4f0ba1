// provider=auto: which cross-node provider a node picks, and why, from its RDMA ports and what
// libfabric offers; and which providers an executor lets libfabric discover (FI_PROVIDER).
#include <gtest/gtest.h>
#include <rdma/fabric.h>

#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../support/scoped_environment.hpp"
#include "fabric/compat.hpp"
#include "fabric/info.hpp"
#include "provider_choice.hpp"

namespace sidecore {
namespace {

const RdmaPort kInfiniBandPort{"mlx5_0", 1, "InfiniBand"};
const RdmaPort kRocePort{"mlx5_1", 2, "Ethernet"};

// An `available` that offers exactly `offered` and records what it was asked.
struct FakeLibfabric {
  std::set<std::string> offered;
  std::vector<std::string> asked;
  bool operator()(const std::string& provider) {
    asked.push_back(provider);
    return offered.contains(provider);
  }
};

ProviderChoice choose(const std::vector<RdmaPort>& ports, FakeLibfabric& libfabric) {
  return choose_cross_node_provider(ports, [&](const std::string& provider) { return libfabric(provider); });
}

TEST(ProviderChoice, NoActivePortMeansTcpWithoutAskingLibfabric) {
  FakeLibfabric libfabric{{"cxi", "efa", "verbs;ofi_rxm", "tcp;ofi_rxm"}, {}};
  const auto choice = choose({}, libfabric);
  EXPECT_EQ(choice.provider, "tcp;ofi_rxm");
  EXPECT_NE(choice.reason.find("no active RDMA port"), std::string::npos) << choice.reason;
  EXPECT_TRUE(libfabric.asked.empty());
}

TEST(ProviderChoice, ActivePortAndVerbsMeansVerbs) {
  FakeLibfabric libfabric{{"verbs;ofi_rxm", "tcp;ofi_rxm"}, {}};
  const auto choice = choose({kInfiniBandPort}, libfabric);
  EXPECT_EQ(choice.provider, "verbs;ofi_rxm");
  EXPECT_EQ(choice.reason, "active RDMA port mlx5_0:1 (InfiniBand); libfabric offers verbs;ofi_rxm");
}

TEST(ProviderChoice, CxiIsPreferredOverVerbs) {
  FakeLibfabric libfabric{{"cxi", "verbs;ofi_rxm"}, {}};
  const auto choice = choose({kInfiniBandPort}, libfabric);
  EXPECT_EQ(choice.provider, "cxi");
  EXPECT_NE(choice.reason.find("mlx5_0:1"), std::string::npos) << choice.reason;
  EXPECT_NE(choice.reason.find("cxi"), std::string::npos) << choice.reason;
  // The first acceptable provider ends the search: nothing more is loaded or probed.
  EXPECT_EQ(libfabric.asked, std::vector<std::string>{"cxi"});
}

TEST(ProviderChoice, EfaIsPreferredOverVerbs) {
  FakeLibfabric libfabric{{"efa", "verbs;ofi_rxm"}, {}};
  EXPECT_EQ(choose({{"efa_0", 1, "InfiniBand"}}, libfabric).provider, "efa");
}

TEST(ProviderChoice, ActivePortWithoutAnRdmaProviderMeansTcpAndNamesThePort) {
  FakeLibfabric libfabric{{"tcp;ofi_rxm", "shm"}, {}};
  const auto choice = choose({kRocePort}, libfabric);
  EXPECT_EQ(choice.provider, "tcp;ofi_rxm");
  EXPECT_EQ(choice.reason,
            "active RDMA port mlx5_1:2 (Ethernet) but libfabric offers none of cxi, efa, verbs;ofi_rxm; "
            "using tcp;ofi_rxm");
  EXPECT_EQ(libfabric.asked, rdma_provider_preference());
}

TEST(ProviderChoice, ReasonNamesEveryActivePortOnOneLine) {
  FakeLibfabric libfabric{{"verbs;ofi_rxm"}, {}};
  const auto choice = choose({kInfiniBandPort, kRocePort}, libfabric);
  EXPECT_EQ(choice.provider, "verbs;ofi_rxm");
  EXPECT_NE(choice.reason.find("active RDMA ports mlx5_0:1 (InfiniBand), mlx5_1:2 (Ethernet)"), std::string::npos)
      << choice.reason;
  EXPECT_EQ(choice.reason.find('\n'), std::string::npos) << choice.reason;
}

// This machine, whatever it has: the answer must agree with what libibverbs and libfabric report.
TEST(ProviderChoice, ThisNodeIsConsistent) {
  const auto ports = active_rdma_ports();
  for (const auto& port : ports) {
    EXPECT_FALSE(port.device.empty());
    EXPECT_GE(port.port, 1u);
    EXPECT_TRUE(port.link_layer == "InfiniBand" || port.link_layer == "Ethernet") << port.link_layer;
  }
  const auto choice = choose_cross_node_provider();
  EXPECT_FALSE(choice.reason.empty());
  EXPECT_EQ(choice.reason.find('\n'), std::string::npos) << choice.reason;
  if (ports.empty()) {
    EXPECT_EQ(choice.provider, "tcp;ofi_rxm") << choice.reason;
  } else {
    EXPECT_NE(choice.reason.find(ports.front().device), std::string::npos) << choice.reason;
    EXPECT_TRUE(choice.provider == "tcp;ofi_rxm" || fabric::provider_available(choice.provider)) << choice.reason;
  }
}

TEST(ProviderChoice, LibfabricOffersShmAndTcpButNoInventedProvider) {
  EXPECT_TRUE(fabric::provider_available("tcp;ofi_rxm"));
  EXPECT_TRUE(fabric::provider_available("shm"));
  EXPECT_FALSE(fabric::provider_available("no-such-provider"));
  EXPECT_FALSE(fabric::provider_available(""));
}

}  // namespace
}  // namespace sidecore

// --- what the executor lets libfabric discover (FI_PROVIDER) ----------------------------------------

namespace sidecore {
namespace {

constexpr uint32_t kLibfabric117 = FI_VERSION(1, 17);
constexpr uint32_t kLibfabric121 = FI_VERSION(2, 1);

TEST(ProviderDiscovery, ExactlyTheProvidersInUse) {
  EXPECT_EQ(provider_discovery_filter("shm", "", kLibfabric117), "shm");
  EXPECT_EQ(provider_discovery_filter("shm", "tcp;ofi_rxm", kLibfabric117), "shm,tcp,ofi_rxm");
  EXPECT_EQ(provider_discovery_filter("tcp;ofi_rxm", "tcp;ofi_rxm", kLibfabric117), "tcp,ofi_rxm");
  EXPECT_EQ(provider_discovery_filter("shm", "verbs;ofi_rxm", kLibfabric117), "shm,verbs,ofi_rxm");
}

TEST(ProviderDiscovery, NetIsTcpFromLibfabric118) {
  EXPECT_EQ(provider_discovery_filter("net", "", kLibfabric117), "net");
  EXPECT_EQ(provider_discovery_filter("net", "", kLibfabric121), "tcp");
  EXPECT_EQ(provider_discovery_filter("net", "tcp;ofi_rxm", kLibfabric121), "tcp,ofi_rxm");
}

TEST(ProviderDiscovery, AutoAllowsEveryCandidate) {
  EXPECT_EQ(provider_discovery_filter("shm", "auto", kLibfabric117), "shm,cxi,efa,verbs,ofi_rxm,tcp");
}

// Sets or unsets FI_PROVIDER for one test, and puts the old value back.
class ProviderVariable : public ::testing::Test {
 protected:
  sidecore_test::ScopedEnvironment provider_{"FI_PROVIDER", std::nullopt};  // unset, then put back
};

TEST_F(ProviderVariable, SetWhenTheAdminSetNone) {
  const std::string expected = provider_discovery_filter("shm", "tcp;ofi_rxm", fabric::loaded_library_version());
  EXPECT_EQ(limit_provider_discovery("shm", "tcp;ofi_rxm"), expected);
  ASSERT_NE(std::getenv("FI_PROVIDER"), nullptr);
  EXPECT_EQ(std::string(std::getenv("FI_PROVIDER")), expected);
}

TEST_F(ProviderVariable, AnAdminsChoiceIsLeftAlone) {
  setenv("FI_PROVIDER", "^psm2", 1);
  EXPECT_EQ(limit_provider_discovery("shm", "tcp;ofi_rxm"), "^psm2");
  EXPECT_EQ(std::string(std::getenv("FI_PROVIDER")), "^psm2");
}

}  // namespace
}  // namespace sidecore
