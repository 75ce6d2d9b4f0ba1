#include "core_set.hpp"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <string>

namespace sidecore {
namespace {

int parse_cpu(std::string_view text, std::string_view whole) {
  int value = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < 0) {
    throw CoreSetError(fmt::format("core list '{}': '{}' is not a CPU number", whole, text));
  }
  if (value > CoreSet::kMaxCpu) {
    throw CoreSetError(fmt::format("core list '{}': CPU {} is out of range", whole, value));
  }
  return value;
}

}  // namespace

CoreSet::CoreSet(std::vector<int> cores) : cores_(std::move(cores)) {
  std::sort(cores_.begin(), cores_.end());
  cores_.erase(std::unique(cores_.begin(), cores_.end()), cores_.end());
}

CoreSet CoreSet::parse(std::string_view text) {
  if (text.empty()) throw CoreSetError("core list is empty");
  // A bitmap, not a list: "0-65535" repeated many times must cost bits, not millions of entries.
  std::vector<bool> present(static_cast<size_t>(kMaxCpu) + 1, false);
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    auto part = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (part.empty()) throw CoreSetError(fmt::format("core list '{}' has an empty element", text));
    auto dash = part.find('-');
    if (dash == std::string_view::npos) {
      present[static_cast<size_t>(parse_cpu(part, text))] = true;
    } else {
      int first = parse_cpu(part.substr(0, dash), text);
      int last = parse_cpu(part.substr(dash + 1), text);
      if (last < first) throw CoreSetError(fmt::format("core list '{}': range {} runs backwards", text, part));
      std::fill(present.begin() + first, present.begin() + last + 1, true);
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  std::vector<int> cores;
  for (size_t cpu = 0; cpu < present.size(); ++cpu) {
    if (present[cpu]) cores.push_back(static_cast<int>(cpu));
  }
  return CoreSet(std::move(cores));
}

CoreSet CoreSet::allowed() {
  // Sized for kMaxCpu, not the 1024 CPUs a plain cpu_set_t holds.
  constexpr int kCount = kMaxCpu + 1;
  cpu_set_t* mask = CPU_ALLOC(kCount);
  const size_t bytes = CPU_ALLOC_SIZE(kCount);
  CPU_ZERO_S(bytes, mask);
  std::vector<int> cores;
  if (sched_getaffinity(0, bytes, mask) == 0) {
    for (int cpu = 0; cpu < kCount; ++cpu) {
      if (CPU_ISSET_S(cpu, bytes, mask)) cores.push_back(cpu);
    }
  }
  CPU_FREE(mask);
  return CoreSet(std::move(cores));
}

CoreSet CoreSet::online() {
  std::ifstream in("/sys/devices/system/cpu/online");
  std::string text;
  if (in && std::getline(in, text) && !text.empty()) {
    try {
      return parse(text);
    } catch (const CoreSetError&) {
    }
  }
  return allowed();
}

bool CoreSet::contains(int core) const noexcept { return std::binary_search(cores_.begin(), cores_.end(), core); }

CoreSet CoreSet::minus(const CoreSet& other) const {
  std::vector<int> rest;
  std::set_difference(cores_.begin(), cores_.end(), other.cores_.begin(), other.cores_.end(), std::back_inserter(rest));
  return CoreSet(std::move(rest));
}

std::string CoreSet::to_string() const {
  std::string out;
  for (size_t i = 0; i < cores_.size();) {
    size_t j = i;
    while (j + 1 < cores_.size() && cores_[j + 1] == cores_[j] + 1) ++j;
    if (!out.empty()) out.push_back(',');
    out += j == i ? fmt::format("{}", cores_[i]) : fmt::format("{}-{}", cores_[i], cores_[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace sidecore
