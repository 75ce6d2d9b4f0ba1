// Owner of a libfabric fabric object and the fi_info it was opened from.
#pragma once

#include <rdma/fabric.h>

#include <memory>
#include <string>

#include "fabric/info.hpp"

namespace sidecore::fabric {

class Fabric : public std::enable_shared_from_this<Fabric> {
 public:
  // Opens the fabric of `provider`; throws FabricError.
  static std::shared_ptr<Fabric> open(std::string_view provider);
  ~Fabric();
  Fabric(const Fabric&) = delete;
  Fabric& operator=(const Fabric&) = delete;

  fid_fabric* fid() const noexcept { return fabric_; }
  const fi_info* info() const noexcept { return info_.get(); }
  // The provider as named by fi_info ("shm", "tcp;ofi_rxm", "net", ...).
  const std::string& provider() const noexcept { return provider_; }

 private:
  Fabric(InfoPtr info, std::string provider);
  InfoPtr info_;
  std::string provider_;
  fid_fabric* fabric_ = nullptr;
};

}  // namespace sidecore::fabric
