#include "provider_choice.hpp"

#include <fmt/format.h>
#include <infiniband/verbs.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "fabric/compat.hpp"
#include "fabric/info.hpp"
#include "log.hpp"

namespace sidecore {
namespace {

// Every node has TCP; what `auto` falls back to.
constexpr const char kFallbackProvider[] = "tcp;ofi_rxm";

struct DeviceListDeleter {
  void operator()(ibv_device** list) const noexcept { ibv_free_device_list(list); }
};
using DeviceList = std::unique_ptr<ibv_device*, DeviceListDeleter>;

struct ContextDeleter {
  // Only a query was made on the device: a failed close loses nothing worth reporting.
  void operator()(ibv_context* context) const noexcept { static_cast<void>(ibv_close_device(context)); }
};
using DeviceContext = std::unique_ptr<ibv_context, ContextDeleter>;

// ibv_devinfo's wording, so that a log line reads the same as what an admin checks it against;
// drivers that predate the field leave it unspecified, and those are InfiniBand.
std::string link_layer_name(uint8_t link_layer) {
  switch (link_layer) {
    case IBV_LINK_LAYER_UNSPECIFIED:
    case IBV_LINK_LAYER_INFINIBAND:
      return "InfiniBand";
    case IBV_LINK_LAYER_ETHERNET:
      return "Ethernet";
    default:
      return "unknown";
  }
}

// The active ports of one device; a device that cannot be opened or queried has none.
void append_active_ports(ibv_device* device, std::vector<RdmaPort>& ports) {
  const std::string name = ibv_get_device_name(device);
  DeviceContext context(ibv_open_device(device));
  if (!context) {
    logger("sidecore.fabric")->debug("RDMA device {}: cannot open: {}", name, std::strerror(errno));
    return;
  }
  ibv_device_attr device_attr{};
  if (int rc = ibv_query_device(context.get(), &device_attr); rc != 0) {
    logger("sidecore.fabric")->debug("RDMA device {}: cannot query: {}", name, std::strerror(rc));
    return;
  }
  for (unsigned port = 1; port <= device_attr.phys_port_cnt; ++port) {
    ibv_port_attr port_attr{};
    if (int rc = ibv_query_port(context.get(), static_cast<uint8_t>(port), &port_attr); rc != 0) {
      logger("sidecore.fabric")->debug("RDMA device {} port {}: cannot query: {}", name, port, std::strerror(rc));
      continue;
    }
    if (port_attr.state != IBV_PORT_ACTIVE) continue;
    ports.push_back(RdmaPort{name, port, link_layer_name(port_attr.link_layer)});
  }
}

std::string describe(const RdmaPort& port) {
  return port.device + ":" + std::to_string(port.port) + " (" + port.link_layer + ")";
}

std::string describe(const std::vector<RdmaPort>& ports) {
  std::vector<std::string> described;
  for (const auto& port : ports) described.push_back(describe(port));
  return fmt::format("active RDMA port{} {}", ports.size() == 1 ? "" : "s", fmt::join(described, ", "));
}

}  // namespace

std::vector<RdmaPort> active_rdma_ports() {
  try {
    std::vector<RdmaPort> ports;
    int count = 0;
    // NULL (errno ENOSYS) where the kernel has no RDMA support at all; an empty list where it has
    // no device.
    DeviceList devices(ibv_get_device_list(&count));
    if (!devices) {
      logger("sidecore.fabric")->debug("libibverbs lists no RDMA devices: {}", std::strerror(errno));
      return ports;
    }
    for (int i = 0; i < count; ++i) append_active_ports(devices.get()[i], ports);
    return ports;
  } catch (...) {
    // Only allocation can throw here; without an answer the node counts as one without RDMA.
    return {};
  }
}

const std::vector<std::string>& rdma_provider_preference() {
  // Vendor providers first: where cxi or efa exist, they are the fabric's native interface, and
  // verbs on the same device (EFA also shows up as a verbs device) would be slower or not work.
  static const std::vector<std::string> providers{"cxi", "efa", "verbs;ofi_rxm"};
  return providers;
}

ProviderChoice choose_cross_node_provider(const std::vector<RdmaPort>& ports,
                                          const std::function<bool(const std::string&)>& available) {
  const std::string fallback_note = std::string("; using ") + kFallbackProvider;
  if (ports.empty()) return {kFallbackProvider, "no active RDMA port" + fallback_note};
  for (const auto& provider : rdma_provider_preference()) {
    if (available(provider)) return {provider, describe(ports) + "; libfabric offers " + provider};
  }
  return {kFallbackProvider,
          fmt::format("{} but libfabric offers none of {}{}", describe(ports), fmt::join(rdma_provider_preference(), ", "),
                      fallback_note)};
}

ProviderChoice choose_cross_node_provider() {
  const auto ports = active_rdma_ports();
  return choose_cross_node_provider(ports, [](const std::string& provider) {
    // The executor's own hints: "offered" means Fabric::open would succeed.
    const bool offered = fabric::provider_available(provider);
    logger("sidecore.fabric")->debug("libfabric {} {}", offered ? "offers" : "does not offer", provider);
    return offered;
  });
}

std::string provider_discovery_filter(std::string_view provider, std::string_view remote_provider,
                                      uint32_t library_version) {
  std::vector<std::string_view> providers{provider};
  if (remote_provider == "auto") {
    for (const auto& candidate : rdma_provider_preference()) providers.emplace_back(candidate);
    providers.emplace_back(kFallbackProvider);
  } else if (!remote_provider.empty()) {
    providers.push_back(remote_provider);
  }
  std::vector<std::string> names;
  for (std::string_view layered : providers) {
    while (!layered.empty()) {  // "verbs;ofi_rxm": the core provider and the utility one above it
      const size_t semicolon = layered.find(';');
      const std::string name = fabric::libfabric_provider_name(layered.substr(0, semicolon), library_version);
      if (!name.empty() && std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
      layered = semicolon == std::string_view::npos ? std::string_view() : layered.substr(semicolon + 1);
    }
  }
  return fmt::format("{}", fmt::join(names, ","));
}

std::string limit_provider_discovery(std::string_view provider, std::string_view remote_provider) {
  if (const char* admin = std::getenv("FI_PROVIDER"); admin != nullptr && *admin != '\0') return admin;
  const std::string filter =
      provider_discovery_filter(provider, remote_provider, fabric::loaded_library_version());
  if (setenv("FI_PROVIDER", filter.c_str(), 1) != 0) {
    logger("sidecore.fabric")->warn("cannot set FI_PROVIDER={}: {}", filter, std::strerror(errno));
  }
  return filter;
}

}  // namespace sidecore
