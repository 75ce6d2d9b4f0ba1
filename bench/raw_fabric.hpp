// The raw libfabric baseline: an endpoint built from the same fabric classes as Sidecore
// (Fabric, Domain, CompletionQueue, AddressVector, Endpoint, MemoryRegion) and the same hints, but
// with none of Sidecore's logic: no protocol header, no handshake, no function call. Both bench
// processes use it, the client to send and the server to echo or to read by RMA.
#pragma once

#include <rdma/fi_eq.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "fabric/endpoint.hpp"
#include "fabric/memory_region.hpp"
#include "hex.hpp"  // raw addresses cross the control pipe in hex

namespace sidecore::bench {

using Clock = std::chrono::steady_clock;

// What an operation was, carried in its completion context together with a buffer index (as the
// worker does), so completions need no lookup table.
enum class RawOp : uint8_t { receive = 1, send = 2, read = 3 };

inline void* raw_context(RawOp op, uint32_t index) noexcept {
  return reinterpret_cast<void*>((static_cast<uintptr_t>(op) << 32) | index);
}
inline RawOp raw_op(const void* context) noexcept {
  return static_cast<RawOp>(reinterpret_cast<uintptr_t>(context) >> 32);
}
inline uint32_t raw_index(const void* context) noexcept {
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(context) & 0xffffffffu);
}

// The request of a raw bandwidth transfer: "read `bytes` from my buffer at `address` with `key`".
struct ReadRequest {
  uint64_t address;
  uint64_t key;
  uint64_t bytes;
};
static_assert(sizeof(ReadRequest) == 24);

// Page-aligned memory registered with a domain for the given access; `slots` equal parts of
// `slot_bytes` each.
class RegisteredBuffer {
 public:
  RegisteredBuffer() = default;
  RegisteredBuffer(const std::shared_ptr<fabric::Domain>& domain, const fabric::Endpoint* endpoint, size_t slots,
                   size_t slot_bytes, uint64_t access);

  std::byte* slot(uint32_t index) const noexcept { return memory_.get() + index * stride_; }
  size_t slots() const noexcept { return slots_; }
  size_t slot_bytes() const noexcept { return slot_bytes_; }
  void* descriptor() const noexcept { return region_.descriptor(); }
  const fabric::MemoryRegion& region() const noexcept { return region_; }
  bool fits(size_t slots, size_t slot_bytes) const noexcept { return slots <= slots_ && slot_bytes <= slot_bytes_; }

 private:
  struct FreeDeleter {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte, FreeDeleter> memory_;
  size_t slots_ = 0, slot_bytes_ = 0, stride_ = 0;
  fabric::MemoryRegion region_;
};

class RawEndpoint {
 public:
  static constexpr size_t kQueueSize = 4096;
  static constexpr size_t kBatch = 64;  // completions read at once, as the worker does

  // Opens the provider with Sidecore's hints (fabric::find_provider); throws fabric::FabricError.
  explicit RawEndpoint(const std::string& provider);

  const std::string& address() const noexcept { return endpoint_->name(); }
  // Inserts the peer's raw address; throws std::runtime_error when the provider rejects it.
  void set_peer(std::string_view raw_address);
  fi_addr_t peer() const noexcept { return peer_; }

  const std::shared_ptr<fabric::Domain>& domain() const noexcept { return domain_; }
  const fabric::Endpoint* endpoint() const noexcept { return endpoint_.get(); }
  size_t inject_size() const noexcept { return inject_size_; }
  // Access flags for message buffers: FI_SEND | FI_RECV where the provider wants local buffers
  // registered, else 0 (then no registration is made, as in MessageBuffers).
  uint64_t message_access() const noexcept;

  // Reads up to `count` completions; 0 when none. Throws std::runtime_error for an error entry.
  size_t poll(fi_cq_data_entry* entries, size_t count);
  // Posts a receive, driving progress while the provider says "try again". Throws on failure.
  void post_receive(void* buffer, size_t bytes, void* descriptor, void* context);
  // Sends to the peer: fi_inject when the message fits (returns false: no completion will come),
  // else fi_send with `context` (returns true). Throws on failure.
  bool send(const void* buffer, size_t bytes, void* descriptor, void* context);
  // fi_read of `bytes` from the peer's (address, key) into `buffer`. Throws on failure.
  void read(void* buffer, size_t bytes, void* descriptor, uint64_t address, uint64_t key, void* context);

 private:
  void progress() noexcept;
  std::shared_ptr<fabric::Domain> domain_;
  std::shared_ptr<fabric::Endpoint> endpoint_;
  fi_addr_t peer_ = FI_ADDR_NOTAVAIL;
  size_t inject_size_ = 0;
};

}  // namespace sidecore::bench
