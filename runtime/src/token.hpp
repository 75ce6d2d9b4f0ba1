// Step secrets: random tokens and their constant-time comparison.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sidecore {

// 32 lowercase hex digits (128 bits) from the kernel's random source.
std::string generate_token();
// 16 lowercase hex digits, for executor ids.
std::string generate_id();
uint64_t random_u64();
// Compares without leaking where the first difference is.
bool tokens_equal(std::string_view a, std::string_view b) noexcept;

}  // namespace sidecore
