// The one place that builds libfabric hints: what Sidecore asks of every provider.
#pragma once

#include <rdma/fabric.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sidecore::fabric {

struct InfoDeleter {
  void operator()(fi_info* info) const noexcept { fi_freeinfo(info); }
};
using InfoPtr = std::unique_ptr<fi_info, InfoDeleter>;

inline constexpr uint32_t kApiVersion = FI_VERSION(1, 17);

// Providers Sidecore knows how to use, in order of preference for cross-node traffic.
const std::vector<std::string>& supported_providers();

// The first fi_info of `provider` ("shm", "tcp;ofi_rxm", "net", ...) that offers reliable datagram
// endpoints with messages, tagged messages and RMA. Throws FabricError naming the provider when the
// provider is unknown or absent on this machine.
InfoPtr find_provider(std::string_view provider);

// True when `provider` resolves on this machine (no exception).
bool provider_available(std::string_view provider);

}  // namespace sidecore::fabric
