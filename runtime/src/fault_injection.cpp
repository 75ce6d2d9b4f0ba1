#include "fault_injection.hpp"

#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

namespace sidecore::fault {
namespace {

constexpr auto kPoints = static_cast<size_t>(Point::count_);

constexpr std::array<std::string_view, kPoints> kNames{
    "pool_create",    "pool_free",       "pool_size",      "function_lookup", "function_free",
    "submit",         "error_kind",      "progress_hook",  "progress_thread", "grequest_query",
    "grequest_free",  "grequest_cancel", "client_progress", "client_repost",  "client_destroy"};

// Per point, the call that fires it, counted from 1 (0 while it is not armed).
std::array<std::atomic<int>, kPoints> countdown{};
std::array<std::atomic<Failure>, kPoints> failures{};

// SIDECORE_FAULT is read once, when the library holding this file loads, so that ranks started by
// mpirun are armed before their first MPI call.
const bool armed_from_environment = [] {
  const char* spec = std::getenv("SIDECORE_FAULT");
  if (spec == nullptr || *spec == '\0') return false;
  if (!arm_from_spec(spec)) {
    std::fprintf(stderr, "sidecore: ignoring SIDECORE_FAULT='%s': expected point[:n[:fabric]][,...]\n", spec);
    return false;
  }
  return true;
}();

}  // namespace

void arm(Point point, int after_n_calls, Failure failure) noexcept {
  const auto index = static_cast<size_t>(point);
  if (index >= kPoints || after_n_calls < 0 || after_n_calls == std::numeric_limits<int>::max()) return;
  failures[index].store(failure, std::memory_order_relaxed);
  if (countdown[index].exchange(after_n_calls + 1, std::memory_order_acq_rel) == 0) {
    detail::armed_points.fetch_add(1, std::memory_order_release);
  }
}

void disarm_all() noexcept {
  for (auto& left : countdown) {
    if (left.exchange(0, std::memory_order_acq_rel) != 0) detail::armed_points.fetch_sub(1, std::memory_order_release);
  }
}

std::optional<Point> parse_point(std::string_view text) noexcept {
  for (size_t i = 0; i < kPoints; ++i) {
    if (kNames[i] == text) return static_cast<Point>(i);
  }
  return std::nullopt;
}

std::string_view name(Point point) noexcept {
  const auto index = static_cast<size_t>(point);
  return index < kPoints ? kNames[index] : "unknown";
}

bool arm_from_spec(std::string_view spec) noexcept {
  struct Armed {
    Point point;
    int after;
    Failure failure;
  };
  std::array<Armed, kPoints> parsed{};
  size_t count = 0;
  while (!spec.empty()) {
    const size_t comma = spec.find(',');
    std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    const size_t colon = item.find(':');
    const auto point = parse_point(item.substr(0, colon));
    if (!point || count == kPoints) return false;
    Armed armed{*point, 0, Failure::bad_alloc};
    if (colon != std::string_view::npos) {
      std::string_view rest = item.substr(colon + 1);
      const size_t second = rest.find(':');
      const std::string_view number = rest.substr(0, second);
      const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), armed.after);
      if (error != std::errc() || end != number.data() + number.size() || armed.after < 0) return false;
      if (second != std::string_view::npos) {
        if (rest.substr(second + 1) != "fabric") return false;
        armed.failure = Failure::fabric;
      }
    }
    parsed[count++] = armed;
  }
  for (size_t i = 0; i < count; ++i) arm(parsed[i].point, parsed[i].after, parsed[i].failure);
  return count > 0;
}

namespace detail {

bool fire_armed(Point point) noexcept {
  const auto index = static_cast<size_t>(point);
  if (index >= kPoints) return false;
  int left = countdown[index].load(std::memory_order_acquire);
  while (left > 0) {
    // The call that takes the count from 1 to 0 fires, and leaves the point disarmed.
    if (countdown[index].compare_exchange_weak(left, left - 1, std::memory_order_acq_rel)) {
      if (left > 1) return false;
      armed_points.fetch_sub(1, std::memory_order_release);
      return true;
    }
  }
  return false;
}

void throw_failure(Point point) {
  const auto index = static_cast<size_t>(point);
  if (index < kPoints && failures[index].load(std::memory_order_relaxed) == Failure::fabric) {
    throw std::runtime_error("injected fabric failure at " + std::string(name(point)) + ": Input/output error");
  }
  throw std::bad_alloc();
}

}  // namespace detail
}  // namespace sidecore::fault
