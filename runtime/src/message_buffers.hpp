// Fixed-size, cache-aligned message buffers, registered once where the provider wants local
// buffers registered. Handed out by index so completion contexts stay plain integers.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "fabric/domain.hpp"
#include "fabric/memory_region.hpp"

namespace sidecore {

class MessageBuffers {
 public:
  static constexpr size_t kChunk = 256;  // buffers allocated (and registered) together

  MessageBuffers(std::shared_ptr<fabric::Domain> domain, const fabric::Endpoint* endpoint, size_t buffer_bytes);

  // A free buffer's index, growing the pool when none is free.
  uint32_t acquire();
  void release(uint32_t index) noexcept { free_.push_back(index); }
  std::byte* data(uint32_t index) noexcept { return chunks_[index / kChunk].memory.get() + (index % kChunk) * stride_; }
  std::span<std::byte> span(uint32_t index) noexcept { return {data(index), buffer_bytes_}; }
  void* descriptor(uint32_t index) const noexcept { return chunks_[index / kChunk].region.descriptor(); }
  size_t buffer_bytes() const noexcept { return buffer_bytes_; }
  size_t capacity() const noexcept { return chunks_.size() * kChunk; }
  size_t free_count() const noexcept { return free_.size(); }

 private:
  struct FreeDeleter {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  struct Chunk {
    std::unique_ptr<std::byte[], FreeDeleter> memory;
    fabric::MemoryRegion region;
  };
  std::shared_ptr<fabric::Domain> domain_;
  const fabric::Endpoint* endpoint_;
  size_t buffer_bytes_;
  size_t stride_;
  std::vector<Chunk> chunks_;
  std::vector<uint32_t> free_;
};

}  // namespace sidecore
