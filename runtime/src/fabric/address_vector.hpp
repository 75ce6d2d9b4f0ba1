// Owner of an address vector (table of peer addresses); keeps its domain alive.
#pragma once

#include <rdma/fi_domain.h>

#include <memory>
#include <string>
#include <string_view>

#include "fabric/domain.hpp"

namespace sidecore::fabric {

class AddressVector {
 public:
  explicit AddressVector(std::shared_ptr<Domain> domain);
  ~AddressVector();
  AddressVector(const AddressVector&) = delete;
  AddressVector& operator=(const AddressVector&) = delete;

  fid_av* fid() const noexcept { return av_; }
  // Inserts a raw endpoint name (as fi_getname gives it); FI_ADDR_NOTAVAIL when the provider rejects it.
  fi_addr_t insert(std::string_view raw_address) noexcept;
  void remove(fi_addr_t address) noexcept;

 private:
  std::shared_ptr<Domain> domain_;
  fid_av* av_ = nullptr;
};

}  // namespace sidecore::fabric
