// Move-only owner of a registered memory region; keeps its domain alive. Hides the provider's
// registration mode: whether local buffers need a descriptor, whether remote peers address the
// region by virtual address or by offset, and whether it must be bound to an endpoint.
#pragma once

#include <rdma/fi_domain.h>

#include <cstdint>
#include <memory>

#include "fabric/domain.hpp"

namespace sidecore::fabric {

class Endpoint;

class MemoryRegion {
 public:
  MemoryRegion() = default;
  // `access`: FI_READ, FI_WRITE, FI_REMOTE_READ, FI_REMOTE_WRITE bits. `endpoint` is needed
  // where the provider asks for FI_MR_ENDPOINT. Throws FabricError.
  MemoryRegion(std::shared_ptr<Domain> domain, const Endpoint* endpoint, void* buffer, size_t length,
               uint64_t access);
  ~MemoryRegion();
  MemoryRegion(MemoryRegion&& other) noexcept;
  MemoryRegion& operator=(MemoryRegion&& other) noexcept;
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  explicit operator bool() const noexcept { return mr_ != nullptr; }
  // Descriptor for local operations (nullptr where the provider needs none).
  void* descriptor() const noexcept { return mr_ ? fi_mr_desc(mr_) : nullptr; }
  // What a remote peer needs to reach this region.
  uint64_t key() const noexcept { return mr_ ? fi_mr_key(mr_) : 0; }
  // The address a peer passes to fi_read/fi_write for byte `offset` of the buffer.
  uint64_t remote_address(size_t offset = 0) const noexcept {
    return (virt_addr_ ? reinterpret_cast<uint64_t>(buffer_) : 0) + offset;
  }
  // True when the provider wants local buffers registered (FI_MR_LOCAL).
  static bool needs_local(const Domain& domain) noexcept { return domain.mr_mode() & FI_MR_LOCAL; }

 private:
  void reset() noexcept;
  std::shared_ptr<Domain> domain_;
  fid_mr* mr_ = nullptr;
  void* buffer_ = nullptr;
  bool virt_addr_ = true;
};

}  // namespace sidecore::fabric
