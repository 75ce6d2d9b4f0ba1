// Node-local rings: what a producer commits, the consumer hands out once, whole and in order,
// across wraps and pads; a corrupt ring is refused with an error that names the problem and no
// read outside the ring; a segment is attached only when it is the one named; the output guard
// keeps cross-memory writes out of a closed pair.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport/ring.hpp"

namespace sidecore::transport {
namespace {

using ::testing::HasSubstr;

// A ring whose data lies between two inaccessible pages: a read outside it faults at once, with
// or without AddressSanitizer.
class GuardedRing {
 public:
  GuardedRing() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    guard_ = page;
    mapped_ = kRingBytes + 2 * page;
    void* memory = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) throw std::runtime_error("mmap of a test ring failed");
    base_ = static_cast<std::byte*>(memory);
    if (mprotect(base_, page, PROT_NONE) != 0 || mprotect(base_ + page + kRingBytes, page, PROT_NONE) != 0) {
      throw std::runtime_error("mprotect of a test ring's guard pages failed");
    }
    control_.tail.store(0);
    control_.head.store(0);
  }
  ~GuardedRing() { munmap(base_, mapped_); }
  GuardedRing(const GuardedRing&) = delete;
  GuardedRing& operator=(const GuardedRing&) = delete;

  RingControl& control() { return control_; }
  std::byte* data() { return base_ + guard_; }
  // Places a record header at `offset`.
  void put_header(uint64_t offset, uint32_t bytes, RecordKind kind) {
    const RecordHeader header{bytes, kind};
    std::memcpy(data() + (offset & (kRingBytes - 1)), &header, sizeof header);
  }
  void set(uint64_t head, uint64_t tail) {
    control_.head.store(head);
    control_.tail.store(tail);
  }

 private:
  RingControl control_{};
  std::byte* base_ = nullptr;
  size_t guard_ = 0;
  size_t mapped_ = 0;
};

// The byte at `index` of message number `sequence`: differs between neighbouring messages and
// between positions, so a stale, shifted or mixed-up message does not pass.
std::byte pattern(uint64_t sequence, size_t index) {
  return static_cast<std::byte>((sequence * 131 + index * 7 + (index >> 8)) & 0xff);
}

void fill(std::span<std::byte> message, uint64_t sequence) {
  for (size_t i = 0; i < message.size(); ++i) message[i] = pattern(sequence, i);
}

// The first position where `message` is not message `sequence` of `bytes`, or -1.
long first_difference(std::span<const std::byte> message, uint64_t sequence, size_t bytes) {
  if (message.size() != bytes) return 0;
  for (size_t i = 0; i < bytes; ++i) {
    if (message[i] != pattern(sequence, i)) return static_cast<long>(i);
  }
  return -1;
}

// Data bytes in an inside-the-ring check.
bool inside(GuardedRing& ring, std::span<const std::byte> message) {
  const std::byte* begin = ring.data();
  return message.data() >= begin && message.data() + message.size() <= begin + kRingBytes;
}

// Sends `sizes` (cycled) through the ring for `count` messages, filling it before each drain, and
// checks every message arrives once, whole, in order. Returns the bytes of pad records written.
uint64_t round_trip(GuardedRing& ring, const std::vector<size_t>& sizes, uint64_t count) {
  RingProducer producer(&ring.control(), ring.data());
  RingConsumer consumer(&ring.control(), ring.data());
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t record_total = 0;
  std::string error;
  while (received < count) {
    // Fill until the ring refuses, so that every drain starts from a full ring.
    while (sent < count) {
      const size_t bytes = sizes[sent % sizes.size()];
      auto room = producer.reserve(bytes);
      if (room.data() == nullptr) break;
      EXPECT_EQ(room.size(), bytes);
      fill(room, sent);
      producer.commit(bytes);
      record_total += record_bytes(bytes);
      ++sent;
    }
    EXPECT_GT(sent, received) << "the producer found no room in an empty ring";
    if (sent == received) return 0;
    const size_t handled = consumer.consume(
        [&](std::span<const std::byte> message) {
          EXPECT_TRUE(inside(ring, message));
          const size_t bytes = sizes[received % sizes.size()];
          EXPECT_EQ(first_difference(message, received, bytes), -1) << "message " << received << " of " << bytes;
          ++received;
        },
        SIZE_MAX, &error);
    EXPECT_EQ(error, "");
    EXPECT_GT(handled, 0u);
    if (!error.empty() || handled == 0) return 0;
  }
  EXPECT_EQ(ring.control().head.load(), ring.control().tail.load());
  return ring.control().tail.load() - record_total;
}

// --- producer and consumer ---------------------------------------------------------------------------

TEST(Ring, RecordsAreWholeCells) {
  EXPECT_EQ(record_bytes(0), kCellBytes);
  EXPECT_EQ(record_bytes(56), kCellBytes);
  EXPECT_EQ(record_bytes(57), 2 * kCellBytes);
  EXPECT_EQ(record_bytes(kRingInlineLimit), kRingInlineLimit + kCellBytes);
}

TEST(Ring, EachSizeRoundTripsAcrossManyWraps) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{56}, size_t{57}, size_t{4096}, kRingInlineLimit, kRingBytes / 2}) {
    GuardedRing ring;
    // At least ten trips round the ring.
    const uint64_t count = std::max<uint64_t>(64, 10 * kRingBytes / record_bytes(bytes) + 3);
    round_trip(ring, {bytes}, count);
    EXPECT_GE(ring.control().tail.load(), 10 * kRingBytes) << bytes << " bytes";
  }
}

TEST(Ring, MixedSizesWrapWithPadRecords) {
  GuardedRing ring;
  const std::vector<size_t> sizes{57, 4096, 0, kRingInlineLimit, 1, kRingBytes / 2, 56, 3000, 777};
  const uint64_t pads = round_trip(ring, sizes, 2000);
  EXPECT_GT(pads, 0u) << "no message needed a pad record: the test does not cover wrapping";
  EXPECT_GE(ring.control().tail.load(), 50 * kRingBytes);
}

TEST(Ring, MessagesLargerThanHalfTheRingAreRefused) {
  GuardedRing ring;
  RingProducer producer(&ring.control(), ring.data());
  EXPECT_EQ(producer.reserve(kRingBytes / 2 + 1).data(), nullptr);
  EXPECT_NE(producer.reserve(kRingBytes / 2).data(), nullptr);
}

TEST(Ring, AFullRingTakesMoreOnlyAfterTheConsumerConsumes) {
  GuardedRing ring;
  RingProducer producer(&ring.control(), ring.data());
  RingConsumer consumer(&ring.control(), ring.data());
  constexpr size_t kBytes = 1000;
  size_t sent = 0;
  for (auto room = producer.reserve(kBytes); room.data() != nullptr; room = producer.reserve(kBytes)) {
    fill(room, sent++);
    producer.commit(kBytes);
  }
  ASSERT_EQ(sent, kRingBytes / record_bytes(kBytes));
  EXPECT_FALSE(producer.fits(kBytes));
  EXPECT_FALSE(producer.fits(0));
  EXPECT_EQ(producer.reserve(0).data(), nullptr);
  EXPECT_EQ(producer.reserve(kBytes).data(), nullptr) << "asking again must not make room";

  std::string error;
  size_t seen = 0;
  EXPECT_EQ(consumer.consume([&](std::span<const std::byte> m) { EXPECT_EQ(first_difference(m, seen++, kBytes), -1); },
                             1, &error),
            1u);
  EXPECT_EQ(error, "");
  EXPECT_TRUE(producer.fits(kBytes));
  auto room = producer.reserve(kBytes);
  ASSERT_NE(room.data(), nullptr);
  fill(room, sent++);
  producer.commit(kBytes);

  EXPECT_EQ(consumer.consume([&](std::span<const std::byte> m) { EXPECT_EQ(first_difference(m, seen++, kBytes), -1); },
                             SIZE_MAX, &error),
            sent - 1);
  EXPECT_EQ(error, "");
  EXPECT_EQ(seen, sent);
}

TEST(Ring, CommitShorterThanReservedPublishesOnlyThatMuch) {
  GuardedRing ring;
  RingProducer producer(&ring.control(), ring.data());
  RingConsumer consumer(&ring.control(), ring.data());
  auto room = producer.reserve(1000);
  ASSERT_EQ(room.size(), 1000u);
  fill(room.first(10), 1);
  producer.commit(10);
  EXPECT_EQ(ring.control().tail.load(), record_bytes(10));
  room = producer.reserve(20);
  ASSERT_EQ(room.size(), 20u);
  fill(room, 2);
  producer.commit(500);  // more than reserved: only the 20 reserved bytes
  EXPECT_EQ(ring.control().tail.load(), record_bytes(10) + record_bytes(20));

  std::vector<size_t> sizes;
  std::string error;
  EXPECT_EQ(consumer.consume(
                [&](std::span<const std::byte> m) {
                  EXPECT_EQ(first_difference(m, sizes.size() + 1, m.size()), -1);
                  sizes.push_back(m.size());
                },
                SIZE_MAX, &error),
            2u);
  EXPECT_EQ(error, "");
  EXPECT_EQ(sizes, (std::vector<size_t>{10, 20}));
}

TEST(Ring, NothingIsVisibleBeforeCommit) {
  GuardedRing ring;
  RingProducer producer(&ring.control(), ring.data());
  RingConsumer consumer(&ring.control(), ring.data());
  fill(producer.reserve(8), 0);
  EXPECT_FALSE(consumer.ready());
  producer.commit(8);
  EXPECT_TRUE(consumer.ready());
}

TEST(Ring, ConsumeHandlesAtMostItsLimitAndGivesThatSpaceBack) {
  GuardedRing ring;
  RingProducer producer(&ring.control(), ring.data());
  RingConsumer consumer(&ring.control(), ring.data());
  for (uint64_t i = 0; i < 5; ++i) {
    fill(producer.reserve(100), i);
    producer.commit(100);
  }
  uint64_t next = 0;
  auto check = [&](std::span<const std::byte> m) { EXPECT_EQ(first_difference(m, next++, 100), -1); };
  std::string error;
  EXPECT_EQ(consumer.consume(check, 2, &error), 2u);
  EXPECT_EQ(ring.control().head.load(), 2 * record_bytes(100)) << "the consumed space is handed back";
  EXPECT_TRUE(consumer.ready());
  EXPECT_EQ(consumer.consume(check, 0, &error), 0u);
  EXPECT_EQ(consumer.consume(check, SIZE_MAX, &error), 3u);
  EXPECT_EQ(next, 5u);
  EXPECT_FALSE(consumer.ready());
  EXPECT_EQ(consumer.consume(check, SIZE_MAX, &error), 0u);
  EXPECT_EQ(error, "");
}

// One producer thread, one consumer thread: every message arrives once, in order, intact. Under
// TSan this also checks that the release/acquire pairs on tail and head order the data.
TEST(Ring, TwoThreadsKeepOrderAndContent) {
  GuardedRing ring;
  constexpr uint64_t kMessages = 300'000;
  auto size_of = [](uint64_t sequence) -> size_t {
    if (sequence % 997 == 0) return kRingInlineLimit;
    return 8 + (sequence * 37) % 300;
  };
  std::atomic<bool> stop{false};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);

  std::thread producer_thread([&] {
    RingProducer producer(&ring.control(), ring.data());
    for (uint64_t sequence = 0; sequence < kMessages && !stop.load(std::memory_order_relaxed);) {
      const size_t bytes = size_of(sequence);
      auto room = producer.reserve(bytes);
      if (room.data() == nullptr) {
        std::this_thread::yield();
        continue;
      }
      std::memcpy(room.data(), &sequence, sizeof sequence);  // the sequence number first
      fill(room.subspan(sizeof sequence), sequence);
      producer.commit(bytes);
      ++sequence;
    }
  });

  RingConsumer consumer(&ring.control(), ring.data());
  uint64_t expected = 0;
  std::string failure;
  std::string error;
  while (expected < kMessages && failure.empty()) {
    if (std::chrono::steady_clock::now() > deadline) {
      failure = "timed out after " + std::to_string(expected) + " messages";
      break;
    }
    const size_t handled = consumer.consume(
        [&](std::span<const std::byte> message) {
          if (!failure.empty()) return;
          uint64_t sequence = 0;
          if (message.size() >= sizeof sequence) std::memcpy(&sequence, message.data(), sizeof sequence);
          if (message.size() != size_of(expected) || sequence != expected ||
              first_difference(message.subspan(sizeof sequence), expected, size_of(expected) - sizeof sequence) != -1) {
            failure = "message " + std::to_string(expected) + " arrived as sequence " + std::to_string(sequence) +
                      " of " + std::to_string(message.size()) + " bytes, or with other content";
          }
          ++expected;
        },
        64, &error);
    if (!error.empty()) failure = "consumer: " + error;
    if (handled == 0) std::this_thread::yield();
  }
  stop.store(true);
  producer_thread.join();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(expected, kMessages);
  EXPECT_EQ(ring.control().head.load(), ring.control().tail.load());
}

// --- corrupt rings -------------------------------------------------------------------------------------

// Consumes everything from a ring set up by the test; returns the error, and the messages handled.
std::string consume_error(GuardedRing& ring, size_t* handled = nullptr) {
  RingConsumer consumer(&ring.control(), ring.data());
  std::string error;
  size_t count = consumer.consume(
      [&](std::span<const std::byte> message) { EXPECT_TRUE(inside(ring, message)) << "a message outside the ring"; },
      SIZE_MAX, &error);
  if (handled != nullptr) *handled = count;
  return error;
}

TEST(RingCorrupt, TailMoreThanOneRingAheadOfTheHead) {
  GuardedRing ring;
  ring.put_header(0, 8, RecordKind::message);
  ring.set(0, kRingBytes + kCellBytes);
  EXPECT_THAT(consume_error(ring), HasSubstr("not within one ring of the head"));
  ring.set(4 * kCellBytes, 0);  // a tail behind the head
  EXPECT_THAT(consume_error(ring), HasSubstr("not within one ring of the head"));
}

TEST(RingCorrupt, TailNotOnACell) {
  GuardedRing ring;
  ring.put_header(0, 8, RecordKind::message);
  ring.set(0, kCellBytes + 8);
  EXPECT_THAT(consume_error(ring), HasSubstr("not on a cell"));
  ring.set(8, 8 + kCellBytes);  // a head off the cells, which the producer never writes
  EXPECT_THAT(consume_error(ring), HasSubstr("not on a cell"));
}

TEST(RingCorrupt, UnknownRecordKind) {
  GuardedRing ring;
  ring.put_header(0, 8, static_cast<RecordKind>(7));
  ring.set(0, kCellBytes);
  EXPECT_THAT(consume_error(ring), HasSubstr("unknown record kind"));
}

TEST(RingCorrupt, RecordLengthCrossingTheRingEnd) {
  GuardedRing ring;
  const uint64_t head = 3 * kRingBytes - kCellBytes;       // the last cell, after a few wraps
  ring.put_header(head, kCellBytes, RecordKind::message);  // 8 bytes more than the cell holds
  ring.set(head, head + kRingBytes);
  EXPECT_THAT(consume_error(ring), HasSubstr("crosses the end"));
  ring.put_header(head, UINT32_MAX, RecordKind::message);
  EXPECT_THAT(consume_error(ring), HasSubstr("crosses the end"));
  // Exactly what the last cell holds is a valid message.
  ring.put_header(head, kCellBytes - sizeof(RecordHeader), RecordKind::message);
  ring.set(head, head + kCellBytes);
  size_t handled = 0;
  EXPECT_EQ(consume_error(ring, &handled), "");
  EXPECT_EQ(handled, 1u);
}

TEST(RingCorrupt, RecordPastTheTail) {
  GuardedRing ring;
  ring.put_header(0, 100, RecordKind::message);  // two cells, one published
  ring.set(0, kCellBytes);
  EXPECT_THAT(consume_error(ring), HasSubstr("past the tail"));
}

TEST(RingCorrupt, PadAtTheStartOfTheRing) {
  GuardedRing ring;
  ring.put_header(0, 0, RecordKind::pad);
  ring.set(kRingBytes, 2 * kRingBytes);  // a whole published ring after a wrap
  EXPECT_THAT(consume_error(ring), HasSubstr("pad record at the start"));
}

TEST(RingCorrupt, PadPastTheTail) {
  GuardedRing ring;
  ring.put_header(kRingBytes - 4 * kCellBytes, 0, RecordKind::pad);
  ring.set(kRingBytes - 4 * kCellBytes, kRingBytes - kCellBytes);
  EXPECT_THAT(consume_error(ring), HasSubstr("pad record past the tail"));
}

TEST(RingCorrupt, MessagesBeforeTheDamageAreHandledAndTheirSpaceGivenBack) {
  GuardedRing ring;
  ring.put_header(0, 8, RecordKind::message);
  ring.put_header(kCellBytes, 8, RecordKind::message);
  ring.put_header(2 * kCellBytes, 8, static_cast<RecordKind>(0));
  ring.set(0, 3 * kCellBytes);
  size_t handled = 0;
  EXPECT_THAT(consume_error(ring, &handled), HasSubstr("ring corrupt at 128 (tail 192): an unknown record kind"));
  EXPECT_EQ(handled, 2u);
  EXPECT_EQ(ring.control().head.load(), 2 * kCellBytes);
}

// --- segments ------------------------------------------------------------------------------------------

// The message of the std::runtime_error that attach throws, or a note that none was thrown.
std::string attach_error(pid_t pid, int fd, uint64_t key, uint32_t pair) {
  try {
    RingSegment::attach(pid, fd, key, pair);
  } catch (const std::runtime_error& error) {
    return error.what();
  }
  return "<attach succeeded>";
}

TEST(RingSegments, AttachFromTheSameProcessSeesTheSameMemory) {
  RingSegment segment = RingSegment::create(3);
  ASSERT_TRUE(segment);
  ASSERT_GE(segment.fd(), 0);
  EXPECT_EQ(segment.pairs(), 3u);
  EXPECT_NE(segment.key(), 0u);
  RingSegment attached = RingSegment::attach(getpid(), segment.fd(), segment.key(), 2);
  ASSERT_TRUE(attached);
  EXPECT_EQ(attached.pairs(), 3u);
  EXPECT_EQ(attached.key(), segment.key());
  EXPECT_NE(&attached.pair(2), &segment.pair(2)) << "a second mapping, not the same pointer";

  segment.pair(2).request_data[100] = std::byte{0x5a};
  EXPECT_EQ(attached.pair(2).request_data[100], std::byte{0x5a});
  attached.pair(1).reply.tail.store(4242);
  EXPECT_EQ(segment.pair(1).reply.tail.load(), 4242u);

  // A message produced through one mapping is consumed through the other.
  RingProducer producer(&segment.pair(0).request, segment.pair(0).request_data);
  RingConsumer consumer(&attached.pair(0).request, attached.pair(0).request_data);
  fill(producer.reserve(300), 9);
  producer.commit(300);
  std::string error;
  EXPECT_EQ(consumer.consume([](std::span<const std::byte> m) { EXPECT_EQ(first_difference(m, 9, 300), -1); }, SIZE_MAX,
                             &error),
            1u);
  EXPECT_EQ(error, "");
}

TEST(RingSegments, CreateRefusesZeroOrTooManyPairs) {
  EXPECT_THROW(RingSegment::create(0), std::invalid_argument);
  EXPECT_THROW(RingSegment::create(kMaxPairs + 1), std::invalid_argument);
}

TEST(RingSegments, AttachWithAnotherKeyIsRefused) {
  RingSegment segment = RingSegment::create(1);
  EXPECT_THAT(attach_error(getpid(), segment.fd(), segment.key() ^ 0x10, 0), HasSubstr("not the segment"));
}

TEST(RingSegments, AttachToAPairBeyondTheSegmentIsRefused) {
  RingSegment segment = RingSegment::create(2);
  EXPECT_THAT(attach_error(getpid(), segment.fd(), segment.key(), 2), HasSubstr("pair 2"));
  EXPECT_THAT(attach_error(getpid(), segment.fd(), segment.key(), UINT32_MAX), HasSubstr("pair 4294967295"));
  EXPECT_EQ(attach_error(getpid(), segment.fd(), segment.key(), 1), "<attach succeeded>");
}

TEST(RingSegments, AttachToADescriptorThatIsNotASegmentIsRefused) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  EXPECT_THAT(attach_error(getpid(), pipe_fds[0], 1, 0), HasSubstr("is not a ring segment"));
  close(pipe_fds[0]);
  close(pipe_fds[1]);

  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  std::fputs("not a ring segment", file);
  std::fflush(file);
  EXPECT_THAT(attach_error(getpid(), fileno(file), 1, 0), HasSubstr("is not a ring segment (18 bytes)"));
  std::fclose(file);
}

TEST(RingSegments, AttachToAClosedDescriptorOrADeadProcessIsRefused) {
  RingSegment segment = RingSegment::create(1);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_THAT(attach_error(child, segment.fd(), segment.key(), 0),
              HasSubstr("cannot open /proc/" + std::to_string(child) + "/fd/"));
  EXPECT_THAT(attach_error(getpid(), 1 << 20, segment.key(), 0), HasSubstr("cannot open"));
  EXPECT_THAT(attach_error(0, segment.fd(), segment.key(), 0), HasSubstr("no segment at pid 0"));
  EXPECT_THAT(attach_error(getpid(), -1, segment.key(), 0), HasSubstr("descriptor -1"));
}

// --- cross-memory attach and its guard -----------------------------------------------------------------

TEST(RingCma, WorksOnThisProcessAndComparesTheKey) {
  RingSegment segment = RingSegment::create(1);
  EXPECT_TRUE(cma_works(getpid(), segment.key_address(), segment.key()));
  EXPECT_FALSE(cma_works(getpid(), segment.key_address(), segment.key() + 1));
  EXPECT_FALSE(cma_works(getpid(), nullptr, 0)) << "an unmapped address";
}

TEST(RingCma, ReadAndWriteCopyWithinThisProcess) {
  std::vector<std::byte> source(100'000);
  fill(source, 3);
  std::vector<std::byte> target(source.size());
  ASSERT_TRUE(cma_read(getpid(), target.data(), source.data(), source.size()));
  EXPECT_EQ(target, source);
  std::vector<std::byte> written(source.size());
  ASSERT_TRUE(cma_write(getpid(), source.data(), written.data(), source.size()));
  EXPECT_EQ(written, source);
  EXPECT_FALSE(cma_read(getpid(), target.data(), nullptr, 8));
}

TEST(RingOutputGuard, NoWriteBeginsAfterCloseAndReopenAllowsThemAgain) {
  OutputGuard guard{};
  ASSERT_TRUE(begin_output_write(guard));
  end_output_write(guard);
  EXPECT_TRUE(close_for_writes(guard, [] { return false; }));
  EXPECT_FALSE(begin_output_write(guard));
  EXPECT_EQ(guard.writing.load(), 0u) << "a refused write leaves no announcement behind";
  reopen_for_writes(guard);
  EXPECT_TRUE(begin_output_write(guard));
  end_output_write(guard);
}

TEST(RingOutputGuard, CloseWaitsForAnAnnouncedWrite) {
  OutputGuard guard{};
  std::atomic<bool> announced{false};
  std::atomic<int> landed{0};
  std::thread writer([&] {
    ASSERT_TRUE(begin_output_write(guard));
    announced.store(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    landed.store(1, std::memory_order_relaxed);
    end_output_write(guard);
  });
  while (!announced.load()) std::this_thread::yield();
  size_t waits = 0;
  const auto started = std::chrono::steady_clock::now();
  const bool closed = close_for_writes(guard, [&] {
    ++waits;
    std::this_thread::yield();
    return std::chrono::steady_clock::now() - started > std::chrono::seconds(20);  // a watchdog only
  });
  EXPECT_TRUE(closed);
  EXPECT_EQ(landed.load(std::memory_order_relaxed), 1) << "close_for_writes returned while a write was under way";
  EXPECT_GT(waits, 0u);
  writer.join();
  EXPECT_FALSE(begin_output_write(guard));
}

TEST(RingOutputGuard, CloseGivesUpOnAWriterThatNeverEnds) {
  OutputGuard guard{};
  ASSERT_TRUE(begin_output_write(guard));  // a worker that died in the middle of a write
  int asked = 0;
  EXPECT_FALSE(close_for_writes(guard, [&] { return ++asked == 3; }));
  EXPECT_EQ(asked, 3);
}

}  // namespace
}  // namespace sidecore::transport
