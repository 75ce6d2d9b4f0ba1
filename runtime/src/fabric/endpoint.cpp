#include "fabric/endpoint.hpp"

#include <fmt/format.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_errno.h>
#include <unistd.h>

#include <cstring>

#include "fabric/error.hpp"
#include "log.hpp"
#include "token.hpp"

namespace sidecore::fabric {
namespace {

// shm names its segment in /dev/shm after the process id. A process killed with SIGKILL leaves its
// segment behind, and a later process that gets the same id then fails fi_enable with EBUSY (shm
// sees the stale segment's owner, its own id, alive). A random name cannot collide that way.
void name_shm_endpoint(fid_ep* ep, const fi_info* info) {
  if (info->fabric_attr == nullptr || info->fabric_attr->prov_name == nullptr ||
      std::strcmp(info->fabric_attr->prov_name, "shm") != 0) {
    return;
  }
  const std::string name = fmt::format("fi_shm://sidecore-{}-{:016x}", ::getpid(), random_u64());
  check(fi_setname(&ep->fid, const_cast<char*>(name.c_str()), name.size() + 1), "fi_setname");
}

}  // namespace

Endpoint::Endpoint(std::shared_ptr<Domain> domain, std::shared_ptr<CompletionQueue> cq,
                   std::shared_ptr<AddressVector> av)
    : domain_(std::move(domain)), cq_(std::move(cq)), av_(std::move(av)) {
  check(fi_endpoint(domain_->fid(), const_cast<fi_info*>(domain_->info()), &ep_, nullptr), "fi_endpoint");
  try {
    check(fi_ep_bind(ep_, &cq_->fid()->fid, FI_TRANSMIT | FI_RECV), "fi_ep_bind(cq)");
    check(fi_ep_bind(ep_, &av_->fid()->fid, 0), "fi_ep_bind(av)");
    name_shm_endpoint(ep_, domain_->info());
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
