// What one sidecore-bench run measures, and the parsing of its byte counts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "poll_mode.hpp"

namespace sidecore::bench {

enum class BenchKind { latency, throughput, bandwidth, wake };

constexpr std::string_view to_string(BenchKind kind) noexcept {
  switch (kind) {
    case BenchKind::latency: return "latency";
    case BenchKind::throughput: return "throughput";
    case BenchKind::bandwidth: return "bandwidth";
    case BenchKind::wake:
      return "wake";
  }
  return "?";
}

inline constexpr size_t kMaxBytes = size_t{1} << 30;  // 1 GiB: larger sizes only measure the page cache

struct BenchOptions {
  BenchKind kind = BenchKind::latency;
  std::string provider = "shm";        // libfabric provider of both the executor and the baseline
  std::vector<size_t> bytes;           // message or input sizes, one JSON line each
  unsigned rounds = 20;                // rounds of each side, alternated
  uint64_t iterations = 0;             // operations per round; 0: the subcommand's default
  unsigned window = 64;                // throughput: tasks (and raw messages) in flight
  unsigned idle_ms = 200;              // wake: the caller's sleep before each first task
  unsigned idle_window_s = 3;          // wake: seconds over which the idle executor's CPU time is taken
  PollMode poll = PollMode::adaptive;  // how the executor worker waits when idle
  long spin_us = 1000;                 // adaptive: the worker's spin window
  int client_cpu = 0;                  // this process
  int server_cpu = 1;                  // the server child: executor worker and raw echo
  std::string library;                 // bench function library; empty: found next to the binary
  std::string server_netns;            // network namespace (ip netns name) of the server child; empty: ours
  // The client's on the server's host: auto (node-local rings where offered), rings (the same, and an
  // error where the client does not take them) or fabric.
  std::string transport = "auto";
  bool verbose = false;                // per-size details on stderr
};

// Operations per round when --iterations is 0.
uint64_t default_iterations(BenchKind kind, size_t bytes) noexcept;

// "64", "4K", "4KiB", "64M", "1G" (binary multiples, case-insensitive). nullopt and a one-line
// reason in `error` for anything else, including sizes above kMaxBytes.
std::optional<size_t> parse_byte_count(std::string_view text, std::string& error);

}  // namespace sidecore::bench
