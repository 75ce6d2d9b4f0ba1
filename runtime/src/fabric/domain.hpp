// Owner of a libfabric domain; keeps its fabric alive.
#pragma once

#include <rdma/fi_domain.h>

#include <memory>

#include "fabric/fabric.hpp"

namespace sidecore::fabric {

class Domain {
 public:
  explicit Domain(std::shared_ptr<Fabric> fabric);
  ~Domain();
  Domain(const Domain&) = delete;
  Domain& operator=(const Domain&) = delete;

  fid_domain* fid() const noexcept { return domain_; }
  const std::shared_ptr<Fabric>& fabric() const noexcept { return fabric_; }
  const fi_info* info() const noexcept { return fabric_->info(); }
  uint64_t mr_mode() const noexcept { return fabric_->info()->domain_attr->mr_mode; }
  // Largest message the provider sends without a completion (fi_inject).
  size_t inject_size() const noexcept { return fabric_->info()->tx_attr->inject_size; }

 private:
  std::shared_ptr<Fabric> fabric_;
  fid_domain* domain_ = nullptr;
};

}  // namespace sidecore::fabric
