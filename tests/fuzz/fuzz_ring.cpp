// Fuzzes RingConsumer, which reads rings a caller on the same host writes into its own shared
// memory: a worker must survive any bytes there. The input is the ring as the worker finds it:
//   8 bytes   head (little-endian), the consumer's index when it attaches
//   8 bytes   tail minus head (any value: a tail behind the head, or far ahead, is corruption too)
//   1 byte    the most messages one consume() call may hand out (0: no limit)
//   the rest  the ring's data, laid from the head's offset onwards (wrapping), zeros elsewhere
// consume() then runs until the ring is drained or refused. Checked besides the sanitizers (the ring
// data is a heap block of exactly kRingBytes, so a read outside it is reported):
//   - every message handed out lies inside the ring data, after its record header;
//   - one call hands out at most its limit, and the head only moves forward, on whole cells, never
//     past the tail;
//   - a call that stops before the tail without reaching its limit sets the error string, and a call
//     that sets it handed out only what came before the damage (the head stays at the bad record);
//   - it ends: at most one message per cell of the ring in all, and a bounded number of calls.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "fuzz_check.hpp"
#include "transport/ring.hpp"

namespace {

using namespace sidecore::transport;

uint64_t load_u64(const uint8_t* data) {
  uint64_t value;
  std::memcpy(&value, data, sizeof value);
  return value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kPrefix = 17;
  if (size < kPrefix) return 0;
  // Allocated once, exactly kRingBytes: AddressSanitizer's redzones sit right before and after it.
  static const std::unique_ptr<std::byte[]> ring_data(new std::byte[kRingBytes]);
  static RingControl control;

  const uint64_t head = load_u64(data);
  const uint64_t tail = head + load_u64(data + 8);
  const size_t limit = data[16] == 0 ? SIZE_MAX : data[16];
  std::memset(ring_data.get(), 0, kRingBytes);
  const size_t body = std::min(size - kPrefix, kRingBytes);
  for (size_t i = 0; i < body; ++i) {
    ring_data[(head + i) & (kRingBytes - 1)] = static_cast<std::byte>(data[kPrefix + i]);
  }
  control.head.store(head, std::memory_order_relaxed);
  control.tail.store(tail, std::memory_order_relaxed);

  RingConsumer consumer(&control, ring_data.get());
  const std::byte* begin = ring_data.get();
  const std::byte* end = begin + kRingBytes;
  const bool tail_plausible = tail - head <= kRingBytes;
  size_t total = 0;
  // Each handled message covers at least one cell, so a ring holds at most kRingBytes / kCellBytes;
  // a call that hands out nothing ends the loop below.
  for (size_t calls = 0;; ++calls) {
    SIDECORE_FUZZ_CHECK(calls <= kRingBytes / kCellBytes + 1);
    const uint64_t before = control.head.load(std::memory_order_relaxed);
    std::string error;
    size_t seen = 0;
    const size_t handled = consumer.consume(
        [&](std::span<const std::byte> message) {
          ++seen;
          SIDECORE_FUZZ_CHECK(message.data() != nullptr);
          SIDECORE_FUZZ_CHECK(message.data() >= begin + sizeof(RecordHeader) && message.data() <= end);
          SIDECORE_FUZZ_CHECK(message.size() <= static_cast<size_t>(end - message.data()));
          SIDECORE_FUZZ_CHECK((static_cast<size_t>(message.data() - begin) - sizeof(RecordHeader)) % kCellBytes == 0);
          // Touch every byte: ASan reports any outside the block.
          volatile std::byte sink{};
          for (std::byte b : message) sink = sink ^ b;
        },
        limit, &error);
    const uint64_t after = control.head.load(std::memory_order_relaxed);
    SIDECORE_FUZZ_CHECK(handled == seen && handled <= limit);
    total += handled;
    SIDECORE_FUZZ_CHECK(total <= kRingBytes / kCellBytes);
    if (tail_plausible && before % kCellBytes == 0 && (tail - before) % kCellBytes == 0) {
      // The head moves forward on whole cells and never past the tail.
      SIDECORE_FUZZ_CHECK(after - before <= tail - before && (after - before) % kCellBytes == 0);
    } else {
      // An impossible tail or head: refused before anything is handed out.
      SIDECORE_FUZZ_CHECK(handled == 0 && after == before && (after == tail || !error.empty()));
    }
    if (after != tail && handled < limit) SIDECORE_FUZZ_CHECK(!error.empty());
    if (!error.empty()) {
      SIDECORE_FUZZ_CHECK(error.find("ring corrupt at ") == 0);
      // Refused again, and nothing more handed out: a corrupt ring stays refused.
      std::string again;
      SIDECORE_FUZZ_CHECK(
          consumer.consume([](std::span<const std::byte>) { SIDECORE_FUZZ_CHECK(false); }, limit, &again) == 0);
      SIDECORE_FUZZ_CHECK(!again.empty());
      break;
    }
    if (after == tail || handled == 0) break;
  }
  return 0;
}
