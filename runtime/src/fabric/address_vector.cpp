#include "fabric/address_vector.hpp"

#include <rdma/fi_errno.h>

#include "fabric/error.hpp"
#include "log.hpp"

namespace sidecore::fabric {

AddressVector::AddressVector(std::shared_ptr<Domain> domain) : domain_(std::move(domain)) {
  fi_av_attr attr{};
  attr.type = FI_AV_TABLE;
  check(fi_av_open(domain_->fid(), &attr, &av_, nullptr), "fi_av_open");
}

AddressVector::~AddressVector() {
  if (int rc = fi_close(&av_->fid); rc != 0) {
    logger("sidecore.fabric")->warn("closing address vector: {}", fi_strerror(-rc));
  }
}

fi_addr_t AddressVector::insert(std::string_view raw_address) noexcept {
  fi_addr_t address = FI_ADDR_NOTAVAIL;
  if (raw_address.empty()) return address;
  if (fi_av_insert(av_, raw_address.data(), 1, &address, 0, nullptr) != 1) return FI_ADDR_NOTAVAIL;
  return address;
}

void AddressVector::remove(fi_addr_t address) noexcept {
  if (address == FI_ADDR_NOTAVAIL) return;
  if (int rc = fi_av_remove(av_, &address, 1, 0); rc != 0) {
    logger("sidecore.fabric")->debug("fi_av_remove: {}", fi_strerror(-rc));
  }
}

}  // namespace sidecore::fabric
