#include "fabric/endpoint.hpp"

#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>

#include "fabric/error.hpp"
#include "log.hpp"

namespace sidecore::fabric {

Endpoint::Endpoint(std::shared_ptr<Domain> domain, std::shared_ptr<CompletionQueue> cq,
                   std::shared_ptr<AddressVector> av)
    : domain_(std::move(domain)), cq_(std::move(cq)), av_(std::move(av)) {
  check(fi_endpoint(domain_->fid(), const_cast<fi_info*>(domain_->info()), &ep_, nullptr), "fi_endpoint");
  try {
    check(fi_ep_bind(ep_, &cq_->fid()->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind(cq)");
    check(fi_ep_bind(ep_, &av_->fid()->fid, 0), "fi_ep_bind(av)");
    check(fi_enable(ep_), "fi_enable");
    size_t length = 0;
    int rc = fi_getname(&ep_->fid, nullptr, &length);
    if (rc != -FI_ETOOSMALL && rc != 0) check(rc, "fi_getname");
    name_.resize(length);
    check(fi_getname(&ep_->fid, name_.data(), &length), "fi_getname");
    name_.resize(length);
  } catch (...) {
    fi_close(&ep_->fid);
    throw;
  }
}

Endpoint::~Endpoint() {
  if (int rc = fi_close(&ep_->fid); rc != 0) {
    logger("sidecore.fabric")->warn("closing endpoint: {}", fi_strerror(-rc));
  }
}

}  // namespace sidecore::fabric
