#include "message_buffers.hpp"

#include <rdma/fi_domain.h>

#include <new>

namespace sidecore {

MessageBuffers::MessageBuffers(std::shared_ptr<fabric::Domain> domain, const fabric::Endpoint* endpoint,
                               size_t buffer_bytes)
    : domain_(std::move(domain)), endpoint_(endpoint), buffer_bytes_(buffer_bytes), stride_((buffer_bytes + 63) & ~size_t{63}) {}

uint32_t MessageBuffers::acquire() {
  if (free_.empty()) {
    const size_t bytes = stride_ * kChunk;
    Chunk chunk;
    chunk.memory.reset(static_cast<std::byte*>(std::aligned_alloc(4096, (bytes + 4095) & ~size_t{4095})));
    if (!chunk.memory) throw std::bad_alloc();
    if (fabric::MemoryRegion::needs_local(*domain_)) {
      chunk.region = fabric::MemoryRegion(domain_, endpoint_, chunk.memory.get(), bytes, FI_SEND | FI_RECV);
    }
    const auto first = static_cast<uint32_t>(chunks_.size() * kChunk);
    chunks_.push_back(std::move(chunk));
    for (uint32_t i = kChunk; i-- > 0;) free_.push_back(first + i);
  }
  const uint32_t index = free_.back();
  free_.pop_back();
  return index;
}

}  // namespace sidecore
