#include "soak/tasks.hpp"

#include <cstring>
#include <vector>

namespace sidecore::bench::soak {
namespace {

size_t class_low(size_t index) { return index == 0 ? 0 : kSizeClasses[index - 1].high + 1; }
size_t class_high(size_t index, size_t max_bytes) { return std::min(kSizeClasses[index].high, max_bytes); }

// The class a draw lands in: a class entirely above --max-bytes gives its share to the largest
// class that exists.
size_t effective_class(size_t index, size_t max_bytes) {
  while (index > 0 && class_low(index) > max_bytes) --index;
  return index;
}

size_t draw_size(uint64_t pick, uint64_t value, size_t max_bytes) {
  size_t index = 0;
  unsigned cumulative = 0;
  for (; index + 1 < kClasses; ++index) {
    cumulative += kSizeClasses[index].percent;
    if (pick % 100 < cumulative) break;
  }
  index = effective_class(index, max_bytes);
  const size_t low = class_low(index), high = class_high(index, max_bytes);
  return low + static_cast<size_t>(value % (high - low + 1));
}

}  // namespace

void fill_pattern(std::byte* data, size_t bytes, uint64_t key) {
  const size_t words = bytes / 8;
  for (size_t i = 0; i < words; ++i) {
    const uint64_t word = soak_word(key, i);
    std::memcpy(data + 8 * i, &word, sizeof word);
  }
  if (bytes % 8 != 0) {
    const uint64_t word = soak_word(key, words);
    std::memcpy(data + 8 * words, &word, bytes % 8);
  }
}

// The offset of the first byte that differs from the stream, or `bytes` when none does. The
// common case (all equal) runs as one pass that only ORs differences together.
size_t first_difference(const std::byte* data, size_t bytes, uint64_t key) {
  const size_t words = bytes / 8;
  uint64_t differ = 0;
  for (size_t i = 0; i < words; ++i) {
    uint64_t word;
    std::memcpy(&word, data + 8 * i, sizeof word);
    differ |= word ^ soak_word(key, i);
  }
  uint64_t tail = 0, expected_tail = 0;
  if (bytes % 8 != 0) {
    const uint64_t word = soak_word(key, words);
    std::memcpy(&tail, data + 8 * words, bytes % 8);
    std::memcpy(&expected_tail, &word, bytes % 8);
  }
  if (differ == 0 && tail == expected_tail) return bytes;
  std::vector<std::byte> expected(bytes);
  fill_pattern(expected.data(), bytes, key);
  return static_cast<size_t>(std::mismatch(data, data + bytes, expected.data()).first - data);
}

size_t class_of(size_t bytes) {
  size_t index = 0;
  while (index + 1 < kClasses && bytes > kSizeClasses[index].high) ++index;
  return index;
}

// The output capacity a task is submitted with: its output, then the guard.
size_t output_capacity(size_t out_bytes) {
  if (out_bytes <= kInlineLimit) return std::min(out_bytes + kGuardBytes, kInlineLimit);
  return out_bytes + kGuardBytes;
}

TaskSizes task_sizes(uint64_t seed, uint64_t task, size_t max_bytes) {
  const uint64_t key = soak_key(seed, task, kSizeStream);
  const size_t in = draw_size(soak_word(key, 0), soak_word(key, 1), max_bytes);
  const size_t out = draw_size(soak_word(key, 2), soak_word(key, 3), max_bytes);
  return {std::max(in, kHeaderBytes), out};
}

// "512 B", "4 KiB", "10.3 KiB", "1 MiB": one decimal at most.
std::string format_bytes(double bytes) {
  const char* unit = "B";
  if (bytes >= 1 << 20) {
    bytes /= 1 << 20;
    unit = "MiB";
  } else if (bytes >= 1 << 10) {
    bytes /= 1 << 10;
    unit = "KiB";
  }
  std::string number = fmt::format("{:.1f}", bytes);
  if (number.ends_with(".0")) number.resize(number.size() - 2);
  return number + " " + unit;
}

// The distribution in words, with the mean size it gives.
std::string describe_sizes(size_t max_bytes) {
  double percent[kClasses] = {};
  for (size_t i = 0; i < kClasses; ++i) percent[effective_class(i, max_bytes)] += kSizeClasses[i].percent;
  std::string text;
  double mean = 0;
  for (size_t i = 0; i < kClasses; ++i) {
    if (percent[i] == 0) continue;
    const double low = static_cast<double>(class_low(i)), high = static_cast<double>(class_high(i, max_bytes));
    mean += percent[i] / 100 * (low + high) / 2;
    // Classes after the first start one byte above the previous one's largest size.
    text += fmt::format("{}{:g} % in {}{}, {}]", text.empty() ? "" : ", ", percent[i], i == 0 ? "[" : "(",
                        format_bytes(i == 0 ? low : low - 1), format_bytes(high));
  }
  return fmt::format("{} (uniform within each; mean about {} per direction; inputs at least {} B, the header)", text,
                     format_bytes(mean), kHeaderBytes);
}

}  // namespace sidecore::bench::soak
