#include "fabric/compat.hpp"

#include <rdma/fabric.h>

namespace sidecore::fabric {

uint32_t loaded_library_version() noexcept { return fi_version(); }

std::string libfabric_provider_name(std::string_view provider, uint32_t library_version) {
  // libfabric 1.18 replaced the tcp provider by the net provider's code under the name "tcp".
  if (provider == "net" && library_version >= FI_VERSION(1, 18)) return "tcp";
  return std::string(provider);
}

std::string libfabric_provider_name(std::string_view provider) {
  return libfabric_provider_name(provider, loaded_library_version());
}

}  // namespace sidecore::fabric
