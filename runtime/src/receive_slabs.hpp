// Shared receive buffers for a worker whose provider offers FI_MULTI_RECV: a few large slabs, each
// posted once, into which the provider packs the messages of every caller one after the other.
// The memory a worker posts for receiving is then fixed, whatever the number of its callers,
// where one buffer per message of the largest size needs a reserve plus each caller's credits.
//
// A slab comes back (its completion carries FI_MULTI_RECV) once less than a largest message fits
// in what is left of it; its messages were handled as their completions came, in order, so it is
// posted again at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "fabric/domain.hpp"
#include "fabric/endpoint.hpp"
#include "fabric/memory_region.hpp"

namespace sidecore {

class ReceiveSlabs {
 public:
  static constexpr size_t kSlabs = 4;
  static constexpr size_t kSlabBytes = 64 * 1024;

  // Sets the endpoint's smallest useful room to `message_bytes`; throws FabricError where the
  // provider refuses (the caller then keeps one buffer per message).
  ReceiveSlabs(std::shared_ptr<fabric::Domain> domain, const fabric::Endpoint& endpoint, size_t message_bytes);

  size_t count() const noexcept { return slabs_.size(); }
  // Posts slab `index` for receiving; `context` comes back in its completions. Returns the
  // provider's code (0, -FI_EAGAIN, ...).
  ssize_t post(uint32_t index, void* context) noexcept;
  size_t bytes() const noexcept { return slabs_.size() * kSlabBytes; }

  // Whether this domain's provider packs messages into shared buffers.
  static bool supported(const fabric::Domain& domain) noexcept;

 private:
  struct FreeDeleter {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  struct Slab {
    std::unique_ptr<std::byte[], FreeDeleter> memory;
    fabric::MemoryRegion region;
  };
  std::shared_ptr<fabric::Domain> domain_;
  const fabric::Endpoint& endpoint_;
  std::vector<Slab> slabs_;
};

}  // namespace sidecore
