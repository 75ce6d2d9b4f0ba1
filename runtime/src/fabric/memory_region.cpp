#include "fabric/memory_region.hpp"

#include <rdma/fi_errno.h>

#include <atomic>
#include <utility>

#include "fabric/endpoint.hpp"
#include "fabric/error.hpp"
#include "log.hpp"

namespace sidecore::fabric {
namespace {
// Keys for providers that let the application choose them (no FI_MR_PROV_KEY); unique per process.
std::atomic<uint64_t> next_requested_key{1};
}  // namespace

MemoryRegion::MemoryRegion(std::shared_ptr<Domain> domain, const Endpoint* endpoint, void* buffer,
                           size_t length, uint64_t access)
    : domain_(std::move(domain)), buffer_(buffer) {
  const uint64_t mode = domain_->mr_mode();
  virt_addr_ = (mode & FI_MR_VIRT_ADDR) != 0;
  // A zero-length registration is legal in libfabric but some providers reject a null address.
  static char empty_region;
  void* base = (length == 0 || buffer == nullptr) ? &empty_region : buffer;
  if (length == 0) length = 1;
  buffer_ = base;
  const uint64_t requested_key = next_requested_key.fetch_add(1, std::memory_order_relaxed);
  check(fi_mr_reg(domain_->fid(), base, length, access, 0, requested_key, 0, &mr_, nullptr), "fi_mr_reg");
  if (mode & FI_MR_ENDPOINT) {
    if (endpoint == nullptr) {
      reset();
      throw FabricError("fi_mr_reg: provider binds memory to endpoints but none was given", -FI_EINVAL);
    }
    int rc = fi_mr_bind(mr_, &endpoint->fid()->fid, 0);
    if (rc == 0) rc = fi_mr_enable(mr_);
    if (rc != 0) {
      reset();
      check(rc, "fi_mr_bind/enable");
    }
  }
}

MemoryRegion::~MemoryRegion() { reset(); }

MemoryRegion::MemoryRegion(MemoryRegion&& other) noexcept
    : domain_(std::move(other.domain_)),
      mr_(std::exchange(other.mr_, nullptr)),
      buffer_(other.buffer_),
      virt_addr_(other.virt_addr_) {}

MemoryRegion& MemoryRegion::operator=(MemoryRegion&& other) noexcept {
  if (this != &other) {
    reset();
    domain_ = std::move(other.domain_);
    mr_ = std::exchange(other.mr_, nullptr);
    buffer_ = other.buffer_;
    virt_addr_ = other.virt_addr_;
  }
  return *this;
}

void MemoryRegion::reset() noexcept {
  if (mr_ != nullptr) {
    if (int rc = fi_close(&mr_->fid); rc != 0) {
      logger("sidecore.fabric")->warn("closing memory region: {}", fi_strerror(-rc));
    }
    mr_ = nullptr;
  }
}

}  // namespace sidecore::fabric
