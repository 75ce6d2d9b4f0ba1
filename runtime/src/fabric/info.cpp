#include "fabric/info.hpp"

#include <rdma/fi_errno.h>

#include <cstring>

#include "fabric/compat.hpp"
#include "fabric/error.hpp"

namespace sidecore::fabric {

const std::vector<std::string>& supported_providers() {
  static const std::vector<std::string> providers{"shm", "tcp;ofi_rxm", "net", "verbs;ofi_rxm", "cxi", "efa"};
  return providers;
}

InfoPtr find_provider(std::string_view provider) {
  if (provider.empty()) throw FabricError("empty provider name", -FI_EINVAL);
  InfoPtr hints(fi_allocinfo());
  if (!hints) throw FabricError("fi_allocinfo: out of memory", -FI_ENOMEM);
  hints->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
  hints->ep_attr->type = FI_EP_RDM;
  // Every worker and every client owns its domain and uses it from one thread.
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  hints->domain_attr->resource_mgmt = FI_RM_ENABLED;
  // Everything the memory-registration code below copes with, so each provider picks its own mode.
  hints->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  hints->tx_attr->msg_order = FI_ORDER_SAS;
  // The name the loaded libfabric uses ("net" is "tcp" from 1.18 on); errors name the user's.
  const std::string prov_name = libfabric_provider_name(provider);
  hints->fabric_attr->prov_name = strdup(prov_name.c_str());

  // Shared receive buffers where the provider has them (executor workers use them); the same
  // provider without them otherwise.
  hints->caps |= FI_MULTI_RECV;
  fi_info* found = nullptr;
  int rc = fi_getinfo(kApiVersion, nullptr, nullptr, 0, hints.get(), &found);
  if (rc == -FI_ENODATA || (rc == 0 && found == nullptr)) {
    hints->caps &= ~FI_MULTI_RECV;
    rc = fi_getinfo(kApiVersion, nullptr, nullptr, 0, hints.get(), &found);
  }
  if (rc != 0 || found == nullptr) {
    throw FabricError("libfabric provider '" + std::string(provider) +
                          "' is not available here: " + fi_strerror(-rc),
                      rc != 0 ? rc : -FI_ENODATA);
  }
  // fi_getinfo may return several entries (one per interface, and for a core provider's name also
  // utility providers layered over it, such as "tcp;ofi_rxm" for "tcp" in libfabric 2.x): the
  // first of exactly the provider asked for is its pick.
  const fi_info* chosen = found;
  for (const fi_info* entry = found; entry != nullptr; entry = entry->next) {
    if (entry->fabric_attr->prov_name != nullptr && prov_name == entry->fabric_attr->prov_name) {
      chosen = entry;
      break;
    }
  }
  InfoPtr first(fi_dupinfo(chosen));
  fi_freeinfo(found);
  if (!first) throw FabricError("fi_dupinfo: out of memory", -FI_ENOMEM);
  return first;
}

bool provider_available(std::string_view provider) {
  try {
    find_provider(provider);
    return true;
  } catch (const FabricError&) {
    return false;
  }
}

}  // namespace sidecore::fabric
