#include "fabric/domain.hpp"

#include <rdma/fi_errno.h>

#include "fabric/error.hpp"
#include "log.hpp"

namespace sidecore::fabric {

Domain::Domain(std::shared_ptr<Fabric> fabric) : fabric_(std::move(fabric)) {
  // fi_domain wants a non-const info; it does not modify it.
  check(fi_domain(fabric_->fid(), const_cast<fi_info*>(fabric_->info()), &domain_, nullptr), "fi_domain");
}

Domain::~Domain() {
  if (int rc = fi_close(&domain_->fid); rc != 0) {
    logger("sidecore.fabric")->warn("closing domain: {}", fi_strerror(-rc));
  }
}

}  // namespace sidecore::fabric
