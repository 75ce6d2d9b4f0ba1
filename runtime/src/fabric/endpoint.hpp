// Owner of a reliable-datagram endpoint bound to its completion queue and address vector; keeps
// all three (and through them the domain) alive.
#pragma once

#include <rdma/fi_endpoint.h>
#include <rdma/fi_rma.h>

#include <memory>
#include <string>

#include "fabric/address_vector.hpp"
#include "fabric/completion_queue.hpp"
#include "fabric/domain.hpp"

namespace sidecore::fabric {

class Endpoint {
 public:
  Endpoint(std::shared_ptr<Domain> domain, std::shared_ptr<CompletionQueue> cq, std::shared_ptr<AddressVector> av);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  fid_ep* fid() const noexcept { return ep_; }
  const std::shared_ptr<Domain>& domain() const noexcept { return domain_; }
  CompletionQueue& cq() const noexcept { return *cq_; }
  AddressVector& av() const noexcept { return *av_; }
  // This endpoint's raw address, to hand to peers.
  const std::string& name() const noexcept { return name_; }

 private:
  std::shared_ptr<Domain> domain_;
  std::shared_ptr<CompletionQueue> cq_;
  std::shared_ptr<AddressVector> av_;
  fid_ep* ep_ = nullptr;
  std::string name_;
};

}  // namespace sidecore::fabric
