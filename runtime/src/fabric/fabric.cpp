#include "fabric/fabric.hpp"

#include <rdma/fi_errno.h>

#include "fabric/error.hpp"
#include "log.hpp"

namespace sidecore::fabric {

std::shared_ptr<Fabric> Fabric::open(std::string_view provider) {
  return std::shared_ptr<Fabric>(new Fabric(find_provider(provider), std::string(provider)));
}

Fabric::Fabric(InfoPtr info, std::string provider) : info_(std::move(info)), provider_(std::move(provider)) {
  check(fi_fabric(info_->fabric_attr, &fabric_, nullptr), "fi_fabric");
}

Fabric::~Fabric() {
  if (int rc = fi_close(&fabric_->fid); rc != 0) {
    logger("sidecore.fabric")->warn("closing fabric: {}", fi_strerror(-rc));
  }
}

}  // namespace sidecore::fabric
