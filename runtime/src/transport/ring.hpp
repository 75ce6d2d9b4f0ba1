// Node-local rings: the path between a caller and a worker on the same host.
//
// A caller makes one segment per executor (a memfd: no name in /dev/shm, gone with its last
// mapping) holding one pair of rings per worker: requests (caller -> worker) and replies (worker ->
// caller). Each ring has one producer and one consumer, so it needs no lock and no atomic
// read-modify-write: the producer writes a record and publishes it by storing its new tail with
// release order; the consumer loads the tail with acquire order, handles every record up to it and
// hands the space back by storing its new head with release order. The producer loads the head
// with acquire order before it reuses space. docs/design.md ("Node-local rings") says why that is
// enough.
//
// A ring is kRingBytes of 64-byte cells. A record starts on a cell: an 8-byte RecordHeader, then
// the message (the wire protocol's task or result, unchanged), padded to whole cells. A record
// never wraps: where it would not fit before the end, the producer writes a pad record that covers
// the rest of the ring and starts again at its beginning. Indices count bytes and only grow (64-bit:
// they never wrap in practice).
//
// The worker maps the caller's segment through /proc/<pid>/fd/<fd> after the caller presented the
// token over libfabric; the segment's random key, checked there, shows it opened the right file.
// Everything the worker reads from a ring is checked before use (RingConsumer): a caller can corrupt
// only its own rings, and a corrupt ring is dropped, never followed.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace sidecore::transport {

inline constexpr size_t kCellBytes = 64;
inline constexpr size_t kRingBytes = size_t{64} << 10;         // per direction and worker
inline constexpr size_t kRingInlineLimit = size_t{16} << 10;   // payload bytes a ring record carries inline
inline constexpr uint64_t kSegmentMagic = 0x53474e4952524453;  // "SDRRINGS"
inline constexpr uint32_t kSegmentVersion = 1;
inline constexpr uint32_t kMaxPairs = 4096;

enum class RecordKind : uint32_t { message = 1, pad = 2 };

struct RecordHeader {
  uint32_t bytes;  // of the message that follows (pad: 0)
  RecordKind kind;
};
static_assert(sizeof(RecordHeader) == 8);

// Cells a record of `message_bytes` occupies.
constexpr size_t record_bytes(size_t message_bytes) noexcept {
  return (sizeof(RecordHeader) + message_bytes + kCellBytes - 1) & ~(kCellBytes - 1);
}

// The indices of one ring, each on a cache line of its own so that producer and consumer do not
// write the same line.
struct RingControl {
  alignas(64) std::atomic<uint64_t> tail;  // written by the producer only
  alignas(64) std::atomic<uint64_t> head;  // written by the consumer only
};
static_assert(sizeof(RingControl) == 128);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// The guard around writes into the caller's memory by cross-memory attach (outputs of large ring
// tasks). The worker announces a write, then looks whether the caller has closed the pair; the
// caller closes it, then waits until no write is announced. Both sides use sequentially
// consistent order, so at least one of them sees the other's store: either the worker skips the
// write, or the caller waits for it to end. After close_for_writes returns, no byte lands.
struct OutputGuard {
  alignas(64) std::atomic<uint32_t> closed;
  std::atomic<uint32_t> writing;
};

struct RingPair {
  RingControl request;
  RingControl reply;
  OutputGuard guard;
  alignas(64) std::byte request_data[kRingBytes];
  alignas(64) std::byte reply_data[kRingBytes];
};

struct alignas(64) SegmentHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t pairs;
  uint64_t key;         // random, also sent in the hello: shows the worker mapped the right file
  uint64_t bytes;       // the whole segment
  uint32_t ring_bytes;  // kRingBytes of the creator
  uint32_t reserved;
};

constexpr size_t segment_bytes(uint32_t pairs) noexcept {
  return sizeof(SegmentHeader) + size_t{pairs} * sizeof(RingPair);
}

// The producer's side of a ring. Not thread-safe: one producer.
class RingProducer {
 public:
  RingProducer() = default;
  RingProducer(RingControl* control, std::byte* data) noexcept;

  explicit operator bool() const noexcept { return control_ != nullptr; }
  // Room for a message of up to `message_bytes` (at most kRingBytes / 2), or an empty span when the
  // ring is full. Nothing is visible to the consumer until commit().
  std::span<std::byte> reserve(size_t message_bytes) noexcept;
  // Publishes the reserved record, shortened to `message_bytes` (at most what was reserved).
  void commit(size_t message_bytes) noexcept;
  // Whether a message of `message_bytes` would fit now.
  bool fits(size_t message_bytes) noexcept;

 private:
  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  uint64_t tail_ = 0;
  uint64_t head_seen_ = 0;
  uint64_t reserved_at_ = 0;   // index of the reserved record's header
  size_t reserved_bytes_ = 0;  // message bytes reserved
};

// The consumer's side of a ring: checks every index and length it reads. Not thread-safe.
class RingConsumer {
 public:
  RingConsumer() = default;
  RingConsumer(RingControl* control, const std::byte* data) noexcept;

  explicit operator bool() const noexcept { return control_ != nullptr; }
  // Whether a record may be waiting (one acquire load).
  bool ready() const noexcept { return control_->tail.load(std::memory_order_acquire) != head_; }
  // Hands each published message to `handle(std::span<const std::byte>)`, at most `limit` of them,
  // then gives their space back. Returns the messages handled; sets `error` and returns what it
  // handled before when the ring is corrupt (the caller must then stop using it).
  template <typename Handle>
  size_t consume(Handle&& handle, size_t limit, std::string* error);

 private:
  // Steps over the record at head_: `message` is its bytes, or empty with a null data pointer for
  // a pad. False (with `error`) when the record or the tail is impossible.
  bool next(uint64_t tail, std::span<const std::byte>& message, std::string* error) noexcept;

  RingControl* control_ = nullptr;
  const std::byte* data_ = nullptr;
  uint64_t head_ = 0;
};

template <typename Handle>
size_t RingConsumer::consume(Handle&& handle, size_t limit, std::string* error) {
  const uint64_t tail = control_->tail.load(std::memory_order_acquire);
  size_t handled = 0;
  std::span<const std::byte> message;
  while (handled < limit && head_ != tail) {
    if (!next(tail, message, error)) break;
    if (message.data() == nullptr) continue;  // a pad
    handle(message);
    ++handled;
  }
  control_->head.store(head_, std::memory_order_release);
  return handled;
}

// The caller's segment: made and owned by the caller, mapped by workers.
class RingSegment {
 public:
  RingSegment() = default;
  // Caller side: a new segment with `pairs` ring pairs. Throws std::system_error.
  static RingSegment create(uint32_t pairs);
  // Worker side: maps the segment the caller `pid` holds open as descriptor `fd`, and checks it is
  // the one with `key` and at least `pair` + 1 pairs. Throws std::runtime_error naming the problem.
  static RingSegment attach(pid_t pid, int fd, uint64_t key, uint32_t pair);
  ~RingSegment();
  RingSegment(RingSegment&& other) noexcept;
  RingSegment& operator=(RingSegment&& other) noexcept;
  RingSegment(const RingSegment&) = delete;
  RingSegment& operator=(const RingSegment&) = delete;

  explicit operator bool() const noexcept { return header_ != nullptr; }
  int fd() const noexcept { return fd_; }
  uint64_t key() const noexcept { return header_->key; }
  uint32_t pairs() const noexcept { return pairs_; }
  // Where the key lies in this process: a worker reads it with process_vm_readv to learn whether
  // cross-memory attach works between the two processes.
  const void* key_address() const noexcept { return &header_->key; }
  RingPair& pair(uint32_t index) noexcept;

 private:
  void release() noexcept;

  SegmentHeader* header_ = nullptr;
  size_t bytes_ = 0;
  uint32_t pairs_ = 0;
  int fd_ = -1;  // caller side: kept open for workers to reach through /proc
};

// Worker side: true when the caller still takes writes (then end_output_write() must follow).
bool begin_output_write(OutputGuard& guard) noexcept;
void end_output_write(OutputGuard& guard) noexcept;
// Caller side: no write into its memory starts after this, and none is under way when it returns
// true. False when a write was still announced after `give_up` returned true (the worker is gone).
template <typename GiveUp>
bool close_for_writes(OutputGuard& guard, GiveUp&& give_up) {
  guard.closed.store(1, std::memory_order_seq_cst);
  while (guard.writing.load(std::memory_order_seq_cst) != 0) {
    if (give_up()) return false;
  }
  return true;
}
void reopen_for_writes(OutputGuard& guard) noexcept;

// Whether this process may read the memory of `pid` with process_vm_readv (ptrace access: same
// user, and Yama or a container not in the way): reads the 8 bytes at `address` there and compares
// them with `expected`.
bool cma_works(pid_t pid, const void* address, uint64_t expected) noexcept;

// One copy between this process and `pid`, by process_vm_readv/process_vm_writev; false (errno
// set) when the kernel refused or the range is not mapped there.
bool cma_read(pid_t pid, void* local, const void* remote, size_t bytes) noexcept;
bool cma_write(pid_t pid, const void* local, void* remote, size_t bytes) noexcept;

}  // namespace sidecore::transport
