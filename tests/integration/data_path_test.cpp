// Executor and client over each provider: payloads from 0 B to 64 MiB in and out, both sides of
// the 4096-byte inline limit, 10 000 tasks in flight, and several clients at once.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "card.hpp"
#include "executor_process.hpp"
#include "provider_test.hpp"

namespace sidecore_test {
namespace {

using sidecore::Completion;
using sidecore::ErrorKind;

constexpr size_t KiB = 1024, MiB = 1024 * KiB;
constexpr uint8_t kGuard = 0xA5;  // bytes past out_capacity, which nobody may touch

// Input bytes that differ at every position (a byte counter would hide misplaced blocks).
std::vector<uint8_t> pattern_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> bytes(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    bytes[i] = static_cast<uint8_t>(x);
  }
  return bytes;
}

// What tests/functions fill_pattern writes at position i.
uint8_t fill_pattern_byte(size_t i, uint64_t seed) { return static_cast<uint8_t>(((i * 31 + seed) >> 3) ^ (i >> 12)); }

// What tests/functions checksum computes.
std::array<uint64_t, 2> checksum_of(const uint8_t* bytes, size_t n) {
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  return {hash, n};
}

// Index of the first byte where `actual` differs from `expected`, or -1.
template <typename Expected>
long first_mismatch(const uint8_t* actual, size_t n, Expected expected) {
  for (size_t i = 0; i < n; ++i) {
    if (actual[i] != expected(i)) return static_cast<long>(i);
  }
  return -1;
}

class DataPath : public ProviderTest {
 protected:
  // Echoes `in_bytes` of pattern into an output of `out_capacity` and checks every byte.
  void check_echo(const sidecore::Function& echo, size_t in_bytes, size_t out_capacity) {
    SCOPED_TRACE(testing::Message() << "echo in=" << in_bytes << " out_capacity=" << out_capacity);
    const auto in = pattern_bytes(in_bytes, in_bytes * 7 + out_capacity);
    std::vector<uint8_t> out(out_capacity + 64, kGuard);
    const auto id = client().submit(echo, in.data(), in.size(), out.data(), out_capacity);
    ASSERT_NE(id, sidecore::kNoTask);
    auto done = wait_for(client(), id);
    ASSERT_TRUE(done) << "no completion within the deadline";
    EXPECT_EQ(done->error, ErrorKind::none) << to_string(done->error);
    EXPECT_EQ(done->function_return, 0);
    const size_t expected = std::min(in_bytes, out_capacity);
    ASSERT_EQ(done->out_bytes, expected);
    EXPECT_EQ(first_mismatch(out.data(), expected, [&](size_t i) { return in[i]; }), -1) << "output differs from input";
    EXPECT_EQ(first_mismatch(out.data() + out_capacity, 64, [](size_t) { return kGuard; }), -1)
        << "bytes past out_capacity were written";
  }

  // fill_pattern: 8 input bytes, `out_capacity` output bytes, all checked.
  void check_fill(const sidecore::Function& fill, size_t out_capacity, uint64_t seed) {
    SCOPED_TRACE(testing::Message() << "fill_pattern out_capacity=" << out_capacity);
    std::vector<uint8_t> out(out_capacity + 64, kGuard);
    const auto id = client().submit(fill, &seed, sizeof seed, out.data(), out_capacity);
    auto done = wait_for(client(), id);
    ASSERT_TRUE(done) << "no completion within the deadline";
    EXPECT_EQ(done->error, ErrorKind::none) << to_string(done->error);
    ASSERT_EQ(done->out_bytes, out_capacity);
    EXPECT_EQ(first_mismatch(out.data(), out_capacity, [&](size_t i) { return fill_pattern_byte(i, seed); }), -1);
    EXPECT_EQ(first_mismatch(out.data() + out_capacity, 64, [](size_t) { return kGuard; }), -1)
        << "bytes past out_capacity were written";
  }

  // checksum: `in_bytes` of input, 16 output bytes.
  void check_checksum(const sidecore::Function& checksum, size_t in_bytes) {
    SCOPED_TRACE(testing::Message() << "checksum in=" << in_bytes);
    const auto in = pattern_bytes(in_bytes, in_bytes + 3);
    std::array<uint64_t, 2> out{~0ull, ~0ull};
    const auto id = client().submit(checksum, in.data(), in.size(), out.data(), sizeof out);
    auto done = wait_for(client(), id);
    ASSERT_TRUE(done) << "no completion within the deadline";
    EXPECT_EQ(done->error, ErrorKind::none) << to_string(done->error);
    ASSERT_EQ(done->out_bytes, sizeof out);
    const auto expected = checksum_of(in.data(), in.size());
    EXPECT_EQ(out[1], in_bytes) << "the executor saw a different input size";
    EXPECT_EQ(out[0], expected[0]) << "the executor saw different input bytes";
  }
};

TEST_P(DataPath, ConnectsToOneWorkerOfTheRightProvider) {
  EXPECT_EQ(client().workers(), 1u);
  EXPECT_EQ(client().provider(), provider_of(GetParam()));
  EXPECT_EQ(client().in_flight(), 0u);
  // shm executors offer node-local rings, and a client takes them unless told to keep to libfabric.
  EXPECT_EQ(executor_->card().find(" paths=rings,fabric") != std::string::npos, provider_of(GetParam()) == "shm");
  EXPECT_EQ(client().on_rings(), GetParam() == "shm");
}

TEST_P(DataPath, EchoRoundTripsEveryPayloadSize) {
  const auto echo = lookup("echo");
  ASSERT_TRUE(echo.valid());
  for (size_t size : {size_t{0}, size_t{1}, 4 * KiB, 1 * MiB, 64 * MiB}) check_echo(echo, size, size);
  EXPECT_EQ(client().in_flight(), 0u);
}

TEST_P(DataPath, LargeOutputFromSmallInput) {
  const auto fill = lookup("fill_pattern");
  uint64_t seed = 11;
  for (size_t size : {size_t{0}, size_t{1}, 4 * KiB, 1 * MiB}) check_fill(fill, size, seed++);
}

TEST_P(DataPath, LargeInputToSmallOutput) {
  const auto checksum = lookup("checksum");
  for (size_t size : {size_t{0}, size_t{1}, 4 * KiB, 1 * MiB}) check_checksum(checksum, size);
}

TEST_P(DataPath, SizesAroundTheInlineLimit) {
  const auto echo = lookup("echo");
  const auto fill = lookup("fill_pattern");
  const auto checksum = lookup("checksum");
  // libfabric's inline limit, then the rings' (16 KiB): past it, rings move data by cross-memory attach.
  const size_t around[] = {4095, 4096, 4097, 16383, 16384, 16385};
  // Inputs on each side of the limit with a small output, and the reverse.
  for (size_t n : around) check_checksum(checksum, n);
  for (size_t n : around) check_fill(fill, n, n);
  for (size_t n : around) {
    check_echo(echo, n, 8);
    check_echo(echo, 8, n);
  }
  // Every mix of inline and RMA on the two sides.
  for (size_t in : around) {
    for (size_t out : around) check_echo(echo, in, out);
  }
}

TEST_P(DataPath, TenThousandTasksInFlight) {
  constexpr size_t kTasks = 10'000;
  const auto echo = lookup("echo");
  std::vector<uint64_t> in(kTasks), out(kTasks, 0);
  std::vector<sidecore::TaskId> ids(kTasks);
  for (size_t i = 0; i < kTasks; ++i) {
    in[i] = 0x5157'0000'0000'0000ull ^ (i * 0x9E3779B97F4A7C15ull);
    ids[i] = client().submit(echo, &in[i], sizeof in[i], &out[i], sizeof out[i]);
    ASSERT_NE(ids[i], sidecore::kNoTask) << "submit " << i << " was refused";
  }
  EXPECT_GT(client().in_flight(), 0u);
  size_t wrong = 0;
  for (size_t i = 0; i < kTasks; ++i) {
    auto done = wait_for(client(), ids[i]);
    ASSERT_TRUE(done) << "task " << i << " did not complete";
    if (done->error != ErrorKind::none || done->out_bytes != sizeof(uint64_t) || out[i] != in[i]) {
      if (++wrong <= 5) {
        ADD_FAILURE() << "task " << i << ": error " << to_string(done->error) << ", out_bytes " << done->out_bytes
                      << ", value " << std::hex << out[i] << " instead of " << in[i];
      }
    }
  }
  EXPECT_EQ(wrong, 0u) << "tasks with a wrong result";
  EXPECT_EQ(client().in_flight(), 0u);
}

TEST_P(DataPath, HundredsOfRmaTasksInFlight) {
  // Inputs and outputs of different sizes on both sides of the inline limit, all in flight at once,
  // so registrations and the worker's scratch buffers are shared between many tasks.
  constexpr size_t kTasks = 300;
  const auto echo = lookup("echo");
  std::vector<std::vector<uint8_t>> in(kTasks), out(kTasks);
  std::vector<sidecore::TaskId> ids(kTasks);
  for (size_t i = 0; i < kTasks; ++i) {
    in[i] = pattern_bytes(i % 3 == 0 ? 100 + i : 60'000 + i * 37, i);
    out[i].assign(in[i].size() + (i % 2 ? 5000 : 0), 0);
    ids[i] = client().submit(echo, in[i].data(), in[i].size(), out[i].data(), out[i].size());
  }
  size_t wrong = 0;
  for (size_t i = 0; i < kTasks; ++i) {
    auto done = wait_for(client(), ids[i]);
    ASSERT_TRUE(done) << "task " << i << " did not complete";
    const bool good = done->error == ErrorKind::none && done->out_bytes == in[i].size() &&
                      std::memcmp(out[i].data(), in[i].data(), in[i].size()) == 0;
    if (!good && ++wrong <= 5) {
      ADD_FAILURE() << "task " << i << " (" << in[i].size() << " bytes): error " << to_string(done->error)
                    << ", out_bytes " << done->out_bytes;
    }
  }
  EXPECT_EQ(wrong, 0u);
}

TEST_P(DataPath, TasksBeyondWhatTheRingsHoldWaitInTheClient) {
  // 16 KiB in and out is the largest inline task on rings: a 64 KiB request ring holds three, so
  // most of these wait in the client (back-pressure, like a missing credit) and go as results return.
  constexpr size_t kTasks = 400, kBytes = 16 * KiB;
  const auto echo = lookup("echo");
  std::vector<std::vector<uint8_t>> in(kTasks), out(kTasks);
  std::vector<sidecore::TaskId> ids(kTasks);
  for (size_t i = 0; i < kTasks; ++i) {
    in[i] = pattern_bytes(kBytes, i + 1);
    out[i].assign(kBytes, 0);
    ids[i] = client().submit(echo, in[i].data(), kBytes, out[i].data(), kBytes);
    ASSERT_NE(ids[i], sidecore::kNoTask);
  }
  EXPECT_EQ(client().in_flight(), kTasks) << "submit waited for the executor";
  size_t wrong = 0;
  for (size_t i = 0; i < kTasks; ++i) {
    auto done = wait_for(client(), ids[i]);
    ASSERT_TRUE(done) << "task " << i << " did not complete";
    if (done->error != ErrorKind::none || done->out_bytes != kBytes || out[i] != in[i]) {
      if (++wrong <= 5) ADD_FAILURE() << "task " << i << ": " << to_string(done->error) << ", " << done->out_bytes;
    }
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(client().in_flight(), 0u);
}

struct CallbackTally {
  std::atomic<size_t> calls{0};
  std::atomic<size_t> good{0};
};

void count_completion(void* user, sidecore::TaskId, const sidecore::Completion& completion) {
  auto* tally = static_cast<CallbackTally*>(user);
  ++tally->calls;
  if (completion.error == ErrorKind::none && completion.out_bytes == sizeof(uint64_t)) ++tally->good;
}

TEST_P(DataPath, CallbacksDeliverEveryCompletion) {
  constexpr size_t kTasks = 500;
  const auto echo = lookup("echo");
  std::vector<uint64_t> in(kTasks), out(kTasks, 0);
  CallbackTally tally;
  for (size_t i = 0; i < kTasks; ++i) {
    in[i] = i * 977 + 1;
    ASSERT_NE(client().submit(echo, &in[i], sizeof in[i], &out[i], sizeof out[i], count_completion, &tally),
              sidecore::kNoTask);
  }
  const auto deadline = Clock::now() + 30s;
  while (tally.calls < kTasks && Clock::now() < deadline) client().progress();
  ASSERT_EQ(tally.calls.load(), kTasks);
  EXPECT_EQ(tally.good.load(), kTasks);
  EXPECT_EQ(out, in);
  EXPECT_EQ(client().in_flight(), 0u);
}

// submit_handed_back: progress(completed) hands every completion back once, with its user pointer
// and id, whether it completed on the wire or inside submit (a bad argument); test() refuses them.
TEST_P(DataPath, ProgressHandsBackEveryCompletion) {
  constexpr size_t kTasks = 500;
  const auto echo = lookup("echo");
  std::vector<uint64_t> in(kTasks), out(kTasks, 0);
  std::vector<sidecore::TaskId> ids(kTasks);
  for (size_t i = 0; i < kTasks; ++i) {
    in[i] = i * 977 + 1;
    ids[i] = client().submit_handed_back(echo, &in[i], sizeof in[i], &out[i], sizeof out[i], &in[i]);
    ASSERT_NE(ids[i], sidecore::kNoTask);
  }
  const auto bad = client().submit_handed_back(echo, nullptr, 8, nullptr, 0, &ids);
  EXPECT_EQ(client().test(ids[0])->error, ErrorKind::bad_arg);  // not test()'s to collect
  std::vector<sidecore::TaskCompletion> completed;
  std::vector<int> seen(kTasks, 0);
  size_t good = 0, bad_args = 0;
  const auto deadline = Clock::now() + 30s;
  while (good + bad_args < kTasks + 1 && Clock::now() < deadline) {
    client().progress(completed);
    for (const auto& done : completed) {
      if (done.user == &ids) {
        EXPECT_EQ(done.id, bad);
        EXPECT_EQ(done.completion.error, ErrorKind::bad_arg);
        ++bad_args;
        continue;
      }
      const auto i = static_cast<size_t>(static_cast<uint64_t*>(done.user) - in.data());
      ASSERT_LT(i, kTasks);
      EXPECT_EQ(done.id, ids[i]);
      ++seen[i];
      if (done.completion.error == ErrorKind::none && done.completion.out_bytes == sizeof(uint64_t)) ++good;
    }
    completed.clear();
  }
  EXPECT_EQ(good, kTasks);
  EXPECT_EQ(bad_args, 1u);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(kTasks));
  EXPECT_EQ(out, in);
  EXPECT_EQ(client().in_flight(), 0u);
  client().progress(completed);
  EXPECT_TRUE(completed.empty());
}

// Each client echoes `tasks` values tagged with `tag` and one 1 MiB fill_pattern; returns failures.
std::string run_client_workload(const std::string& card, const std::string& token, uint64_t tag, size_t tasks,
                                const sidecore::ClientOptions& options) {
  try {
    auto client = sidecore::Client::connect(card, token, options);
    const auto echo = client.lookup(functions_library(), "echo");
    const auto fill = client.lookup(functions_library(), "fill_pattern");
    std::vector<uint64_t> in(tasks), out(tasks, 0);
    std::vector<sidecore::TaskId> ids(tasks);
    std::vector<uint8_t> big(1 * MiB, 0);
    const uint64_t seed = tag;
    const auto big_id = client.submit(fill, &seed, sizeof seed, big.data(), big.size());
    for (size_t i = 0; i < tasks; ++i) {
      in[i] = tag << 32 | i;
      ids[i] = client.submit(echo, &in[i], sizeof in[i], &out[i], sizeof out[i]);
    }
    for (size_t i = 0; i < tasks; ++i) {
      auto done = wait_for(client, ids[i]);
      if (!done) return "client " + std::to_string(tag) + ": task " + std::to_string(i) + " did not complete";
      if (done->error != ErrorKind::none || done->out_bytes != 8 || out[i] != in[i]) {
        return "client " + std::to_string(tag) + ": task " + std::to_string(i) + " came back wrong (" +
               std::string(to_string(done->error)) + ")";
      }
    }
    auto done = wait_for(client, big_id);
    if (!done || done->error != ErrorKind::none || done->out_bytes != big.size()) {
      return "client " + std::to_string(tag) + ": the 1 MiB fill_pattern failed";
    }
    if (first_mismatch(big.data(), big.size(), [&](size_t i) { return fill_pattern_byte(i, seed); }) != -1) {
      return "client " + std::to_string(tag) + ": the 1 MiB fill_pattern output is wrong";
    }
  } catch (const std::exception& e) {
    return "client " + std::to_string(tag) + ": " + e.what();
  }
  return {};
}

// Many callers' messages of every size up to the inline limit at once: over tcp;ofi_rxm and shm
// they are packed one after the other into the worker's shared receive buffers (FI_MULTI_RECV),
// which turn over many times; over net each has a buffer of its own (ReceiveSlabs::supported).
// Every byte comes back, and a function's input starts on 8 bytes, as it does in a buffer of its
// own.
TEST_P(DataPath, ManyCallersPackedMessagesKeepTheirBytesAndAlignment) {
  client_.reset();
  constexpr int kCallers = 6;
  constexpr size_t kTasks = 400;
  std::vector<std::string> failures(static_cast<size_t>(kCallers));
  auto body = [&](int which) {
    try {
      auto client = sidecore::Client::connect(executor_->card(), token_, options());
      const auto echo = client.lookup(functions_library(), "echo");
      const auto alignment = client.lookup(functions_library(), "input_alignment");
      std::vector<std::vector<uint8_t>> in(kTasks), out(kTasks);
      std::vector<uint64_t> offsets(kTasks, ~0ull);
      std::vector<sidecore::TaskId> ids(kTasks);
      for (size_t i = 0; i < kTasks; ++i) {
        const size_t bytes = (i * 613 + static_cast<size_t>(which) * 101) % 4097;  // 0 to 4096, odd ones too
        in[i] = pattern_bytes(bytes, i * 31 + static_cast<size_t>(which));
        if (i % 3 == 2) {
          ids[i] = client.submit(alignment, in[i].data(), in[i].size(), &offsets[i], sizeof offsets[i]);
        } else {
          out[i].assign(bytes, kGuard);
          ids[i] = client.submit(echo, in[i].data(), in[i].size(), out[i].data(), out[i].size());
        }
      }
      for (size_t i = 0; i < kTasks; ++i) {
        auto done = wait_for(client, ids[i]);
        const std::string task = "caller " + std::to_string(which) + ", task " + std::to_string(i);
        if (!done || done->error != ErrorKind::none) {
          failures[which] = task + ": " + (done ? std::string(to_string(done->error)) : "no completion");
          return;
        }
        if (i % 3 == 2 && in[i].size() > 0 && offsets[i] % 8 != 0) {
          failures[which] = task + ": the input lay at " + std::to_string(offsets[i]) + " modulo 64";
          return;
        }
        if (i % 3 != 2 && (done->out_bytes != in[i].size() || out[i] != in[i])) {
          failures[which] = task + ": the echo came back wrong";
          return;
        }
      }
    } catch (const std::exception& e) {
      failures[which] = "caller " + std::to_string(which) + ": " + e.what();
    }
  };
  std::vector<std::thread> threads;
  for (int c = 0; c < kCallers; ++c) threads.emplace_back(body, c);
  for (auto& thread : threads) thread.join();
  for (const auto& failure : failures) EXPECT_EQ(failure, "");
  // A task without a completion was seen twice in CI on net (under ASan, then TSan), never here;
  // the executor's log then showed a packed message overwritten ("bad magic"), which is why net
  // no longer packs. Should it come back, what the executor said is the first clue.
  if (std::any_of(failures.begin(), failures.end(), [](const std::string& f) { return !f.empty(); })) {
    ADD_FAILURE() << "the executor's log:\n" << executor_->stderr_text();
  }
}

TEST_P(DataPath, TwoClientsInTwoThreadsAtOnce) {
  client_.reset();  // the fixture's client stays out of this
  std::string failures[2];
  std::atomic<int> ready{0};
  auto body = [&](int which) {
    ++ready;
    while (ready < 2) std::this_thread::yield();  // start both workloads together
    failures[which] = run_client_workload(executor_->card(), token_, 0xC1 + which, 3000, options());
  };
  std::thread first(body, 0), second(body, 1);
  first.join();
  second.join();
  EXPECT_EQ(failures[0], "");
  EXPECT_EQ(failures[1], "");
}

TEST_P(DataPath, TwoClientsInTwoProcessesAtOnce) {
  // Another process connects through the environment, as a rank would, while this one works.
  TempDir dir;
  auto other = spawn({env_client_binary(), functions_library(), "5000"},
                            {"SIDECORE_EXECUTOR=" + executor_->card(), "SIDECORE_TOKEN=" + token_},
                            dir.path() / "stdout", dir.path() / "stderr");
  const std::string mine = run_client_workload(executor_->card(), token_, 0xAB, 5000, options());
  auto status = wait_until(other, Clock::now() + 60s);
  if (!status) other.stop(0ms);
  EXPECT_EQ(mine, "");
  ASSERT_TRUE(status) << "the other client process did not finish";
  EXPECT_EQ(*status, 0) << "the other client process failed:\n" << read_file(dir.path() / "stderr");
  EXPECT_NE(read_file(dir.path() / "stdout").find("ok 5000"), std::string::npos);
}

// A caller that goes away while its tasks run (here: a task whose output the worker must write
// by RMA into memory that no longer exists) must not disturb the executor's other callers.
TEST_P(DataPath, ACallerLeavingMidTaskDoesNotBlockOtherCallers) {
  const auto echo = lookup("echo");
  auto echo_works = [&](sidecore::Client& client, const sidecore::Function& function, uint64_t value) {
    uint64_t out = 0;
    auto done = wait_for(client, client.submit(function, &value, sizeof value, &out, sizeof out), 5s);
    return done && done->error == ErrorKind::none && done->out_bytes == sizeof out && out == value;
  };
  ASSERT_TRUE(echo_works(client(), echo, 1));
  {
    auto leaving = sidecore::Client::connect(executor_->card(), token_, options());
    const auto sleep = leaving.lookup(functions_library(), "sleep_us");
    const auto fill = leaving.lookup(functions_library(), "fill_pattern");
    const uint32_t sleep_us = 100'000;  // the fill runs after this caller is gone
    const uint64_t seed = 3;
    std::vector<uint8_t> out(64 * KiB);
    leaving.submit(sleep, &sleep_us, sizeof sleep_us, nullptr, 0);
    leaving.submit(fill, &seed, sizeof seed, out.data(), out.size());
    leaving.progress();
  }  // the caller leaves with both tasks in flight
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(echo_works(client(), echo, 2)) << "a caller that stayed connected gets no more results";
  try {
    auto late_options = options();
    late_options.connect_timeout = 3000ms;
    auto late = sidecore::Client::connect(executor_->card(), token_, late_options);
    EXPECT_TRUE(echo_works(late, late.lookup(functions_library(), "echo"), 3)) << "a new caller gets no results";
  } catch (const sidecore::Error& e) {
    ADD_FAILURE() << "a new caller cannot connect: " << to_string(e.kind()) << ": " << e.what()
                  << "\nexecutor stderr:\n"
                  << executor_->stderr_text();
  }
}

// The worker maps the segment of each caller on rings; one killed in the middle of its tasks
// (likely in the middle of writing a cell) must leave nothing wedged: the worker notices through
// its pidfd, unmaps the segment, and serves everyone else.
TEST_P(DataPath, ACallerKilledMidStreamLeavesNoRingBehind) {
  const auto card = sidecore::parse_card(executor_->card());
  ASSERT_EQ(card.worker_pids.size(), 1u);
  const std::string maps = "/proc/" + std::to_string(card.worker_pids[0]) + "/maps";
  auto segments_mapped = [&] {
    const std::string text = read_file(maps);
    size_t count = 0;
    for (size_t at = 0; (at = text.find("sidecore-rings", at)) != std::string::npos; ++at) ++count;
    return count;
  };
  const size_t mine = GetParam() == "shm" ? 1 : 0;                 // the fixture's client's segment
  const size_t theirs = provider_of(GetParam()) == "shm" ? 1 : 0;  // the other's (transport automatic)
  EXPECT_EQ(segments_mapped(), mine);
  TempDir dir;
  auto other = spawn({env_client_binary(), functions_library(), "2000000"},
                     {"SIDECORE_EXECUTOR=" + executor_->card(), "SIDECORE_TOKEN=" + token_}, dir.path() / "stdout",
                     dir.path() / "stderr");
  // Until it streams tasks: then its segment is mapped too.
  const auto streaming = Clock::now() + 10s;
  while (segments_mapped() < mine + theirs && Clock::now() < streaming) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(segments_mapped(), mine + theirs) << "the other caller's segment is not mapped";
  std::this_thread::sleep_for(200ms);
  other.stop(0ms);  // SIGKILL in the middle of its tasks
  const auto freed = Clock::now() + 5s;
  while (segments_mapped() > mine && Clock::now() < freed) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(segments_mapped(), mine) << "the killed caller's rings are still mapped by the worker";
  const auto echo = lookup("echo");
  uint64_t in = 77, out = 0;
  auto done = wait_for(client(), client().submit(echo, &in, sizeof in, &out, sizeof out), 5s);
  ASSERT_TRUE(done) << "the caller that stayed gets no result";
  EXPECT_EQ(done->error, ErrorKind::none);
  EXPECT_EQ(out, in);
}

INSTANTIATE_TEST_SUITE_P(Providers, DataPath, ::testing::ValuesIn(providers()), provider_name);

// Every poll mode serves tasks that arrive after the worker has gone idle (asleep, for warm and
// adaptive). No timing is asserted: this VM's scheduling makes latencies meaningless.
class PollModes : public ::testing::TestWithParam<std::string> {};

TEST_P(PollModes, EveryModeAnswersAfterIdleGaps) {
  const std::vector<std::vector<std::string>> modes{
      {"--poll", "hot"}, {"--poll", "warm"}, {"--poll", "adaptive", "--spin-us", "0"}, {"--poll", "adaptive"}};
  for (const auto& mode : modes) {
    SCOPED_TRACE(testing::Message() << "mode " << mode[1] << (mode.size() > 2 ? " spin 0" : ""));
    const std::string token = fresh_token();
    ExecutorProcess executor(ExecutorOptions{.provider = provider_of(GetParam()), .token = token, .extra_args = mode});
    {
      auto client = sidecore::Client::connect(executor.card(), token, {.transport = transport_of(GetParam())});
      const auto echo = client.lookup(functions_library(), "echo");
      for (uint64_t i = 0; i < 20; ++i) {
        std::this_thread::sleep_for(i % 2 ? 3ms : 0ms);  // past the 1 ms spin window, so workers sleep
        const uint64_t in = i * 0x10001 + 7;
        uint64_t out = 0;
        auto done = wait_for(client, client.submit(echo, &in, sizeof in, &out, sizeof out), 10s);
        ASSERT_TRUE(done) << "task " << i << " did not complete";
        EXPECT_EQ(done->error, ErrorKind::none) << to_string(done->error);
        EXPECT_EQ(out, in);
      }
    }
    EXPECT_EQ(executor.stop(), 0) << executor.stderr_text();
  }
}

INSTANTIATE_TEST_SUITE_P(Providers, PollModes, ::testing::ValuesIn(providers()), provider_name);

}  // namespace
}  // namespace sidecore_test
