// How an idle worker (or a waiting caller) waits for the next message.
#pragma once

#include <optional>
#include <string_view>

namespace sidecore {

enum class PollMode {
  hot,       // busy-poll the completion queue forever: lowest latency, one full core
  warm,      // sleep as soon as the queue is empty: no CPU while idle, a wake-up per burst
  adaptive,  // busy-poll for a spin window after the last message, then sleep
};

constexpr std::string_view to_string(PollMode mode) noexcept {
  switch (mode) {
    case PollMode::hot: return "hot";
    case PollMode::warm: return "warm";
    case PollMode::adaptive: return "adaptive";
  }
  return "?";
}

constexpr std::optional<PollMode> parse_poll_mode(std::string_view text) noexcept {
  if (text == "hot") return PollMode::hot;
  if (text == "warm") return PollMode::warm;
  if (text == "adaptive") return PollMode::adaptive;
  return std::nullopt;
}

}  // namespace sidecore
