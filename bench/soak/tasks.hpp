// The tasks of sidecore-bench soak: the byte streams a caller writes and the function checks (and
// back), the random input and output sizes, and what a caller counts. Shared by the caller
// process (caller.cpp) and the bench process (soak.cpp).
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include "protocol.hpp"

namespace sidecore::bench::soak {

// --- The tasks ------------------------------------------------------------------------------------
//
// The byte streams below must match bench_functions.c's soak_mix, soak_key and soak_word: the
// function checks the inputs the callers write, the callers check the outputs it writes. A
// mismatch between the two copies fails every task, so they cannot drift apart unnoticed.

constexpr uint64_t kSoakMagic = 0x4b414f5345524f43;  // "CORESOAK"
// The input's header: magic, task id, seed, output bytes wanted. Inputs are never shorter.
constexpr size_t kHeaderBytes = 4 * sizeof(uint64_t);
// Bytes of output capacity beyond the size the task asks for. The caller fills them before the
// task and checks them after it: the client and the worker must never write past the output the
// function reported (whatever the function wrote there stays in the worker). Up to the inline
// limit the guard shrinks instead, so the capacity, which picks the output's path, stays inline.
constexpr size_t kGuardBytes = 64;
constexpr std::byte kGuardByte{0xa7};
// Streams of soak_key: 0 the input payload, 1 the output (the function's), 2 the sizes (ours).
constexpr uint64_t kInputStream = 0, kOutputStream = 1, kSizeStream = 2;

constexpr uint64_t soak_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  return z ^ (z >> 31);
}
constexpr uint64_t soak_key(uint64_t seed, uint64_t task, uint64_t stream) {
  return soak_mix(seed ^ soak_mix(task * 4 + stream));
}
constexpr uint64_t soak_word(uint64_t key, uint64_t index) { return soak_mix(key + (index + 1) * 0x9e3779b97f4a7c15); }

// Writes `bytes` of the stream `key` to `data`.
void fill_pattern(std::byte* data, size_t bytes, uint64_t key);

// The offset of the first byte that differs from the stream, or `bytes` when none does.
size_t first_difference(const std::byte* data, size_t bytes, uint64_t key);

// Task sizes: most small, some up to --max-bytes, so a million tasks finish in minutes on two CPUs
// while every path of the data plane is taken many times: 90 % travel inside the messages (up to
// 4 KiB, the protocol's inline limit), 9 % by RMA up to 64 KiB, 1 % by RMA up to --max-bytes.
// Input and output sizes are drawn on their own, from (seed, task id) alone, so a run is
// reproducible from its seed whatever the callers' timing.
struct SizeClass {
  const char* name;
  size_t high;       // largest size of the class (the previous class's high + 1 is its lowest)
  unsigned percent;  // share of the draws
};
constexpr size_t kInlineLimit = protocol::kInlineLimit;  // larger inputs and outputs move by RMA
constexpr SizeClass kSizeClasses[] = {{"small", kInlineLimit, 90}, {"medium", 65536, 9}, {"large", SIZE_MAX, 1}};
constexpr size_t kClasses = std::size(kSizeClasses);

struct TaskSizes {
  size_t in_bytes;   // header included
  size_t out_bytes;  // what the task asks the function to write
};

// The size class of a size (an index into kSizeClasses).
size_t class_of(size_t bytes);

// The output capacity a task is submitted with: its output, then the guard.
size_t output_capacity(size_t out_bytes);

// A task's input and output sizes, from (seed, task id) alone.
TaskSizes task_sizes(uint64_t seed, uint64_t task, size_t max_bytes);

// "512 B", "4 KiB", "10.3 KiB", "1 MiB": one decimal at most.
std::string format_bytes(double bytes);

// The distribution in words, with the mean size it gives.
std::string describe_sizes(size_t max_bytes);

// --- What a caller counts, and how it reports it to the bench -------------------------------------

struct Tally {
  uint64_t completed = 0;          // distinct tasks that completed (well or not)
  uint64_t lost = 0;               // tasks that never completed
  uint64_t duplicated = 0;         // completions beyond the first for a task, or for no task in flight
  uint64_t corrupted_inputs = 0;   // the function found its input changed (it returned 2)
  uint64_t corrupted_outputs = 0;  // wrong output size or bytes, a guard byte written, a result for another task
  uint64_t failed = 0;             // any other error
  uint64_t bytes_verified = 0;     // input bytes the function checked plus output bytes the caller checked
  uint64_t in_bytes = 0, out_bytes = 0;
  uint64_t max_in = 0, max_out = 0;
  uint64_t in_classes[kClasses] = {}, out_classes[kClasses] = {};
  uint64_t milliseconds = 0;

  bool clean() const {
    return lost == 0 && duplicated == 0 && corrupted_inputs == 0 && corrupted_outputs == 0 && failed == 0;
  }

  // Every field by name, for the result line.
  template <typename F>
  void each(F&& f) {
    f("completed", completed);
    f("lost", lost);
    f("duplicated", duplicated);
    f("corrupted_inputs", corrupted_inputs);
    f("corrupted_outputs", corrupted_outputs);
    f("failed", failed);
    f("bytes_verified", bytes_verified);
    f("in_bytes", in_bytes);
    f("out_bytes", out_bytes);
    f("max_in", max_in);
    f("max_out", max_out);
    for (size_t i = 0; i < kClasses; ++i) {
      f(fmt::format("in_{}", kSizeClasses[i].name), in_classes[i]);
      f(fmt::format("out_{}", kSizeClasses[i].name), out_classes[i]);
    }
    f("milliseconds", milliseconds);
  }

  std::string to_line() {
    std::string line;
    each([&](const std::string& name, uint64_t& value) {
      line += fmt::format("{}{}={}", line.empty() ? "" : " ", name, value);
    });
    return line;
  }

  static Tally from_line(const std::string& line) {
    std::map<std::string, uint64_t> values;
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
      const auto equals = word.find('=');
      if (equals == std::string::npos) throw std::runtime_error("malformed result '" + line + "'");
      values[word.substr(0, equals)] = std::stoull(word.substr(equals + 1));
    }
    Tally tally;
    tally.each([&](const std::string& name, uint64_t& value) {
      const auto found = values.find(name);
      if (found == values.end()) throw std::runtime_error("result without " + name + ": '" + line + "'");
      value = found->second;
    });
    return tally;
  }

  void add(const Tally& other) {
    completed += other.completed;
    lost += other.lost;
    duplicated += other.duplicated;
    corrupted_inputs += other.corrupted_inputs;
    corrupted_outputs += other.corrupted_outputs;
    failed += other.failed;
    bytes_verified += other.bytes_verified;
    in_bytes += other.in_bytes;
    out_bytes += other.out_bytes;
    max_in = std::max(max_in, other.max_in);
    max_out = std::max(max_out, other.max_out);
    for (size_t i = 0; i < kClasses; ++i) {
      in_classes[i] += other.in_classes[i];
      out_classes[i] += other.out_classes[i];
    }
    milliseconds = std::max(milliseconds, other.milliseconds);
  }
};

}  // namespace sidecore::bench::soak
