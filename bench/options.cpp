#include "options.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace sidecore::bench {

uint64_t default_iterations(BenchKind kind, size_t bytes) noexcept {
  switch (kind) {
    case BenchKind::latency: return 2000;
    case BenchKind::throughput: return 20000;
    case BenchKind::bandwidth: {
      // About 256 MiB per round and side: a few transfers of 64 MiB, many of small inputs.
      const uint64_t per_round = (uint64_t{256} << 20) / std::max<size_t>(bytes, 1);
      return std::clamp<uint64_t>(per_round, 2, 1000);
    }
    case BenchKind::wake:
      return 20;  // warm round trips, after the rounds
  }
  return 1000;
}

std::optional<size_t> parse_byte_count(std::string_view text, std::string& error) {
  const std::string quoted = "'" + std::string(text) + "'";
  size_t value = 0;
  const auto [end, rc] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (rc == std::errc::result_out_of_range) {
    error = quoted + " is too large";
    return std::nullopt;
  }
  if (rc != std::errc() || text.empty() || text.front() == '-' || text.front() == '+') {
    error = quoted + " is not a byte count (use e.g. 64, 4K, 64M)";
    return std::nullopt;
  }
  std::string suffix(end, text.data() + text.size());
  std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return std::tolower(c); });
  unsigned shift = 0;
  if (suffix.empty() || suffix == "b") {
    shift = 0;
  } else if (suffix == "k" || suffix == "kib") {
    shift = 10;
  } else if (suffix == "m" || suffix == "mib") {
    shift = 20;
  } else if (suffix == "g" || suffix == "gib") {
    shift = 30;
  } else {
    error = quoted + " has an unknown unit (use K, M or G, binary multiples)";
    return std::nullopt;
  }
  if (value > (kMaxBytes >> shift)) {
    error = quoted + " is larger than the 1 GiB the bench allows";
    return std::nullopt;
  }
  return value << shift;
}

}  // namespace sidecore::bench
