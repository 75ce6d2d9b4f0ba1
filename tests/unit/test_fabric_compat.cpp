// The names Sidecore's providers have in each libfabric release it runs on.
#include <gtest/gtest.h>
#include <rdma/fabric.h>

#include "fabric/compat.hpp"
#include "fabric/info.hpp"

namespace sidecore::fabric {
namespace {

TEST(FabricCompat, NetIsItsOwnNameIn117AndTcpFrom118On) {
  EXPECT_EQ(libfabric_provider_name("net", FI_VERSION(1, 17)), "net");
  EXPECT_EQ(libfabric_provider_name("net", FI_VERSION(1, 18)), "tcp");
  EXPECT_EQ(libfabric_provider_name("net", FI_VERSION(2, 1)), "tcp");
}

TEST(FabricCompat, EveryOtherProviderKeepsItsName) {
  for (const auto& provider : supported_providers()) {
    if (provider == "net") continue;
    for (uint32_t version : {FI_VERSION(1, 17), FI_VERSION(2, 1)}) {
      EXPECT_EQ(libfabric_provider_name(provider, version), provider);
    }
  }
}

}  // namespace
}  // namespace sidecore::fabric
