#include "raw_fabric.hpp"

#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <new>
#include <stdexcept>

#include "fabric/error.hpp"

namespace sidecore::bench {

RegisteredBuffer::RegisteredBuffer(const std::shared_ptr<fabric::Domain>& domain, const fabric::Endpoint* endpoint,
                                   size_t slots, size_t slot_bytes, uint64_t access)
    : slots_(slots), slot_bytes_(slot_bytes), stride_((std::max<size_t>(slot_bytes, 1) + 63) & ~size_t{63}) {
  const size_t bytes = (slots * stride_ + 4095) & ~size_t{4095};
  memory_.reset(static_cast<std::byte*>(std::aligned_alloc(4096, bytes)));
  if (!memory_) throw std::bad_alloc();
  if (access != 0) region_ = fabric::MemoryRegion(domain, endpoint, memory_.get(), bytes, access);
}

RawEndpoint::RawEndpoint(const std::string& provider) {
  auto fabric = fabric::Fabric::open(provider);
  domain_ = std::make_shared<fabric::Domain>(std::move(fabric));
  // No wait object: both sides of the baseline busy-poll while a round runs, and block on the
  // control pipe (not on the queue) between rounds.
  auto cq = std::make_shared<fabric::CompletionQueue>(domain_, kQueueSize, false);
  auto av = std::make_shared<fabric::AddressVector>(domain_);
  endpoint_ = std::make_shared<fabric::Endpoint>(domain_, std::move(cq), std::move(av));
  inject_size_ = domain_->inject_size();
}

void RawEndpoint::set_peer(std::string_view raw_address) {
  peer_ = endpoint_->av().insert(raw_address);
  if (peer_ == FI_ADDR_NOTAVAIL) throw std::runtime_error("the raw peer's address is not valid for this provider");
}

uint64_t RawEndpoint::message_access() const noexcept {
  return fabric::MemoryRegion::needs_local(*domain_) ? (FI_SEND | FI_RECV) : 0;
}

void RawEndpoint::progress() noexcept { fi_cq_read(endpoint_->cq().fid(), nullptr, 0); }

size_t RawEndpoint::poll(fi_cq_data_entry* entries, size_t count) {
  const ssize_t n = endpoint_->cq().read(entries, count);
  if (n >= 0) return static_cast<size_t>(n);
  if (n == -FI_EAGAIN) return 0;
  if (n == -FI_EAVAIL) {
    fi_cq_err_entry error{};
    const std::string why = endpoint_->cq().read_error(error);
    throw std::runtime_error("raw baseline: operation failed: " + why);
  }
  throw std::runtime_error(std::string("raw baseline: fi_cq_read: ") + fi_strerror(static_cast<int>(-n)));
}

void RawEndpoint::post_receive(void* buffer, size_t bytes, void* descriptor, void* context) {
  ssize_t rc;
  while ((rc = fi_recv(endpoint_->fid(), buffer, bytes, descriptor, FI_ADDR_UNSPEC, context)) == -FI_EAGAIN) progress();
  fabric::check(rc, "raw baseline: fi_recv");
}

bool RawEndpoint::send(const void* buffer, size_t bytes, void* descriptor, void* context) {
  ssize_t rc;
  if (bytes <= inject_size_) {
    while ((rc = fi_inject(endpoint_->fid(), buffer, bytes, peer_)) == -FI_EAGAIN) progress();
    fabric::check(rc, "raw baseline: fi_inject");
    return false;
  }
  while ((rc = fi_send(endpoint_->fid(), buffer, bytes, descriptor, peer_, context)) == -FI_EAGAIN) progress();
  fabric::check(rc, "raw baseline: fi_send");
  return true;
}

void RawEndpoint::read(void* buffer, size_t bytes, void* descriptor, uint64_t address, uint64_t key, void* context) {
  ssize_t rc;
  while ((rc = fi_read(endpoint_->fid(), buffer, bytes, descriptor, peer_, address, key, context)) == -FI_EAGAIN) {
    progress();
  }
  fabric::check(rc, "raw baseline: fi_read");
}

}  // namespace sidecore::bench
