#include "transport/ring.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "token.hpp"

namespace sidecore::transport {
namespace {

constexpr uint64_t kMask = kRingBytes - 1;
static_assert((kRingBytes & kMask) == 0, "the ring's size must be a power of two");
static_assert(record_bytes(kRingInlineLimit + 256) <= kRingBytes / 2);

RecordHeader load_header(const std::byte* at) noexcept {
  RecordHeader header;
  std::memcpy(&header, at, sizeof header);
  return header;
}

}  // namespace

// --- producer ------------------------------------------------------------------------------------

RingProducer::RingProducer(RingControl* control, std::byte* data) noexcept
    : control_(control),
      data_(data),
      tail_(control->tail.load(std::memory_order_relaxed)),
      head_seen_(control->head.load(std::memory_order_acquire)) {}

bool RingProducer::fits(size_t message_bytes) noexcept {
  const size_t need = record_bytes(message_bytes);
  const uint64_t offset = tail_ & kMask;
  const size_t pad = offset + need > kRingBytes ? kRingBytes - offset : 0;
  if (tail_ + pad + need - head_seen_ <= kRingBytes) return true;
  head_seen_ = control_->head.load(std::memory_order_acquire);
  return tail_ + pad + need - head_seen_ <= kRingBytes;
}

std::span<std::byte> RingProducer::reserve(size_t message_bytes) noexcept {
  if (message_bytes > kRingBytes / 2 || !fits(message_bytes)) return {};
  const size_t need = record_bytes(message_bytes);
  const uint64_t offset = tail_ & kMask;
  if (offset + need > kRingBytes) {
    // The record would cross the end: a pad covers the rest, published with the record itself.
    const RecordHeader pad{0, RecordKind::pad};
    std::memcpy(data_ + offset, &pad, sizeof pad);
    tail_ += kRingBytes - offset;
  }
  reserved_at_ = tail_;
  reserved_bytes_ = message_bytes;
  return {data_ + (tail_ & kMask) + sizeof(RecordHeader), message_bytes};
}

void RingProducer::commit(size_t message_bytes) noexcept {
  if (message_bytes > reserved_bytes_) message_bytes = reserved_bytes_;
  const RecordHeader header{static_cast<uint32_t>(message_bytes), RecordKind::message};
  std::memcpy(data_ + (reserved_at_ & kMask), &header, sizeof header);
  tail_ = reserved_at_ + record_bytes(message_bytes);
  reserved_bytes_ = 0;
  // Release: the record's bytes are visible before the consumer can see the new tail.
  control_->tail.store(tail_, std::memory_order_release);
}

// --- consumer ------------------------------------------------------------------------------------

RingConsumer::RingConsumer(RingControl* control, const std::byte* data) noexcept
    : control_(control), data_(data), head_(control->head.load(std::memory_order_relaxed)) {}

bool RingConsumer::next(uint64_t tail, std::span<const std::byte>& message, std::string* error) noexcept {
  auto corrupt = [&](const char* what) {
    if (error != nullptr) *error = fmt::format("ring corrupt at {} (tail {}): {}", head_, tail, what);
    return false;
  };
  if (tail - head_ > kRingBytes) return corrupt("the tail is not within one ring of the head");
  if ((tail - head_) % kCellBytes != 0 || head_ % kCellBytes != 0) return corrupt("an index not on a cell boundary");
  const uint64_t offset = head_ & kMask;
  const RecordHeader header = load_header(data_ + offset);
  if (header.kind == RecordKind::pad) {
    if (offset == 0) return corrupt("a pad record at the start of the ring");
    if (tail - head_ < kRingBytes - offset) return corrupt("a pad record past the tail");
    head_ += kRingBytes - offset;
    message = {};
    return true;
  }
  if (header.kind != RecordKind::message) return corrupt("an unknown record kind");
  if (header.bytes > kRingBytes - offset - sizeof(RecordHeader)) return corrupt("a record that crosses the end");
  const size_t span = record_bytes(header.bytes);
  if (span > tail - head_) return corrupt("a record past the tail");
  message = {data_ + offset + sizeof(RecordHeader), header.bytes};
  head_ += span;
  return true;
}

// --- segment -------------------------------------------------------------------------------------

RingSegment RingSegment::create(uint32_t pairs) {
  if (pairs == 0 || pairs > kMaxPairs) throw std::invalid_argument(fmt::format("{} ring pairs", pairs));
  RingSegment segment;
  segment.fd_ = memfd_create("sidecore-rings", MFD_CLOEXEC);
  if (segment.fd_ < 0) throw std::system_error(errno, std::generic_category(), "memfd_create");
  segment.bytes_ = segment_bytes(pairs);
  if (ftruncate(segment.fd_, static_cast<off_t>(segment.bytes_)) != 0) {
    throw std::system_error(errno, std::generic_category(), "ftruncate of the ring segment");
  }
  void* memory = mmap(nullptr, segment.bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, segment.fd_, 0);
  if (memory == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap of the ring segment");
  segment.header_ = static_cast<SegmentHeader*>(memory);
  segment.pairs_ = pairs;
  // A new memfd reads as zeros: every index starts at 0.
  *segment.header_ = SegmentHeader{
      kSegmentMagic, kSegmentVersion, pairs, random_u64() | 1, segment.bytes_, static_cast<uint32_t>(kRingBytes), 0};
  return segment;
}

RingSegment RingSegment::attach(pid_t pid, int fd, uint64_t key, uint32_t pair) {
  if (pid <= 0 || fd < 0) throw std::runtime_error(fmt::format("no segment at pid {} descriptor {}", pid, fd));
  const std::string path = fmt::format("/proc/{}/fd/{}", pid, fd);
  const int opened = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (opened < 0) throw std::runtime_error(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  struct stat status {};
  const bool stat_ok = fstat(opened, &status) == 0;
  const int stat_errno = errno;
  RingSegment segment;
  if (!stat_ok) {
    close(opened);
    throw std::runtime_error(fmt::format("cannot stat {}: {}", path, std::strerror(stat_errno)));
  }
  const auto bytes = static_cast<uint64_t>(status.st_size);
  if (!S_ISREG(status.st_mode) || bytes < segment_bytes(1) || bytes > segment_bytes(kMaxPairs)) {
    close(opened);
    throw std::runtime_error(fmt::format("{} is not a ring segment ({} bytes)", path, bytes));
  }
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, opened, 0);
  const int map_errno = errno;
  close(opened);  // the mapping keeps the file
  if (memory == MAP_FAILED) throw std::runtime_error(fmt::format("cannot map {}: {}", path, std::strerror(map_errno)));
  segment.header_ = static_cast<SegmentHeader*>(memory);
  segment.bytes_ = bytes;
  // Copy the header once: the caller could change it while it is checked.
  const SegmentHeader header = *segment.header_;
  if (header.magic != kSegmentMagic || header.version != kSegmentVersion || header.key != key ||
      header.ring_bytes != kRingBytes || header.pairs == 0 || header.pairs > kMaxPairs || header.bytes != bytes ||
      segment_bytes(header.pairs) != bytes || pair >= header.pairs) {
    throw std::runtime_error(
        fmt::format("{} is not the segment the hello named (or pair {} is not in it)", path, pair));
  }
  segment.pairs_ = header.pairs;
  return segment;
}

RingSegment::~RingSegment() { release(); }

RingSegment::RingSegment(RingSegment&& other) noexcept
    : header_(other.header_), bytes_(other.bytes_), pairs_(other.pairs_), fd_(other.fd_) {
  other.header_ = nullptr;
  other.fd_ = -1;
}

RingSegment& RingSegment::operator=(RingSegment&& other) noexcept {
  if (this != &other) {
    release();
    header_ = other.header_;
    bytes_ = other.bytes_;
    pairs_ = other.pairs_;
    fd_ = other.fd_;
    other.header_ = nullptr;
    other.fd_ = -1;
  }
  return *this;
}

void RingSegment::release() noexcept {
  if (header_ != nullptr) munmap(header_, bytes_);
  if (fd_ >= 0) close(fd_);
  header_ = nullptr;
  fd_ = -1;
}

RingPair& RingSegment::pair(uint32_t index) noexcept {
  auto* first = reinterpret_cast<RingPair*>(reinterpret_cast<std::byte*>(header_) + sizeof(SegmentHeader));
  return first[index];
}

// --- cross-memory attach -------------------------------------------------------------------------

bool begin_output_write(OutputGuard& guard) noexcept {
  guard.writing.store(1, std::memory_order_seq_cst);
  if (guard.closed.load(std::memory_order_seq_cst) == 0) return true;
  guard.writing.store(0, std::memory_order_release);
  return false;
}

void end_output_write(OutputGuard& guard) noexcept { guard.writing.store(0, std::memory_order_release); }

void reopen_for_writes(OutputGuard& guard) noexcept {
  guard.writing.store(0, std::memory_order_relaxed);
  guard.closed.store(0, std::memory_order_relaxed);
}

namespace {

// Moves `bytes` between `local` here and `remote` in `pid`, in as many calls as the kernel needs
// (it may move less than asked at page boundaries).
template <typename Call>
bool cma_move(pid_t pid, std::byte* local, uintptr_t remote, size_t bytes, Call call) noexcept {
  while (bytes > 0) {
    iovec mine{local, bytes};
    iovec theirs{reinterpret_cast<void*>(remote), bytes};
    const ssize_t moved = call(pid, &mine, 1, &theirs, 1, 0);
    if (moved < 0 && errno == EINTR) continue;
    if (moved <= 0) {
      if (moved == 0) errno = EFAULT;
      return false;
    }
    local += moved;
    remote += static_cast<uintptr_t>(moved);
    bytes -= static_cast<size_t>(moved);
  }
  return true;
}

}  // namespace

bool cma_read(pid_t pid, void* local, const void* remote, size_t bytes) noexcept {
  return cma_move(pid, static_cast<std::byte*>(local), reinterpret_cast<uintptr_t>(remote), bytes, process_vm_readv);
}

bool cma_write(pid_t pid, const void* local, void* remote, size_t bytes) noexcept {
  return cma_move(pid, const_cast<std::byte*>(static_cast<const std::byte*>(local)),
                  reinterpret_cast<uintptr_t>(remote), bytes, process_vm_writev);
}

bool cma_works(pid_t pid, const void* address, uint64_t expected) noexcept {
  uint64_t seen = 0;
  return cma_read(pid, &seen, address, sizeof seen) && seen == expected;
}

}  // namespace sidecore::transport
