// What `provider=auto` means for traffic between nodes: an RDMA provider when this node has an
// active RDMA port and libfabric offers one for it, else TCP. Node-local traffic is always shm and
// is not decided here.
#pragma once

#include <functional>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sidecore {

// One port of an RDMA device as libibverbs reports it.
struct RdmaPort {
  std::string device;      // "mlx5_0", "efa_0", "rxe0", ...
  unsigned port = 0;       // 1-based, as in ibv_devinfo
  std::string link_layer;  // "InfiniBand" or "Ethernet" (RoCE, iWARP), worded as ibv_devinfo does
};

// Ports in state ACTIVE on this node's RDMA devices (ibv_get_device_list, ibv_open_device,
// ibv_query_device for the port count, ibv_query_port). Empty when the node has no RDMA device
// or libibverbs finds none; never throws.
std::vector<RdmaPort> active_rdma_ports();

struct ProviderChoice {
  std::string provider;  // a libfabric provider name for --provider / Fabric::open
  std::string reason;    // one line for logs: why this provider
};

// RDMA providers that `auto` tries on a node with an active RDMA port, best first.
const std::vector<std::string>& rdma_provider_preference();

// The provider `auto` picks for cross-node traffic: with at least one active port, the first of
// rdma_provider_preference() that `available` accepts; otherwise, or when it accepts none of them,
// "tcp;ofi_rxm". `available` is not called without an active port. Pure, for tests.
ProviderChoice choose_cross_node_provider(const std::vector<RdmaPort>& ports,
                                          const std::function<bool(const std::string&)>& available);

// The same, asking this node's libibverbs and libfabric (loads libfabric if it is not loaded yet).
ProviderChoice choose_cross_node_provider();

// The FI_PROVIDER value that limits libfabric's provider discovery to what an executor serving on
// `provider` and `remote_provider` (empty: none; "auto": every provider `auto` may pick) uses:
// the names of layered providers split ("tcp;ofi_rxm" -> "tcp,ofi_rxm"), each as the library of
// `library_version` knows it (fabric/compat.hpp), without repeats. Pure, for tests.
std::string provider_discovery_filter(std::string_view provider, std::string_view remote_provider,
                                      uint32_t library_version);

// Sets FI_PROVIDER to provider_discovery_filter() for the loaded libfabric, so that discovery
// initializes no provider the executor does not use, unless the environment sets FI_PROVIDER
// already (an admin's choice, left as it is). Call before the first libfabric call that discovers
// providers (fi_getinfo, and so choose_cross_node_provider()). Returns the value in effect.
std::string limit_provider_discovery(std::string_view provider, std::string_view remote_provider);

}  // namespace sidecore
