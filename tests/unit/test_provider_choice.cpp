// provider=auto: which cross-node provider a node picks, and why, from its RDMA ports and what
// libfabric offers.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

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
