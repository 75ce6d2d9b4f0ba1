// Failure injection for tests: named points in the code that, once armed, throw as a real failure
// would (std::bad_alloc, or a fabric-like std::runtime_error), so tests can show that no failure at
// those points escapes into the rank.
//
// Armed in-process with arm(), or for processes started by mpirun with the environment, read once
// when the library loads:  SIDECORE_FAULT=point[:n[:fabric]][,point...]  fires `point` once, on its
// (n+1)-th call (n defaults to 0), throwing bad_alloc, or runtime_error with ":fabric".
//
// Unarmed, a point costs one relaxed atomic load and a predictable branch.
#pragma once

#include <atomic>
#include <optional>
#include <string_view>

namespace sidecore::fault {

enum class Point : int {
  // The C ABI (offload/src/mpi/mpix_offload.cpp): each PMPIX_* call's main work.
  pool_create,
  pool_free,
  pool_size,
  function_lookup,
  function_free,
  submit,
  error_kind,
  // Progress (offload/src/mpi/progress_engine.cpp): a client's progress made on the application's
  // thread (the opal_progress hook and MPIX calls), and on the progress thread.
  progress_hook,
  progress_thread,
  // The generalized-request callbacks (offload/src/mpi/pool.cpp).
  grequest_query,
  grequest_free,
  grequest_cancel,
  // The C++ client (offload/src/client.cpp): Client::progress, its receive reposting, ~Impl.
  client_progress,
  client_repost,
  client_destroy,
  count_
};

enum class Failure { bad_alloc, fabric };

// Fires `point` once, on its (after_n_calls + 1)-th call from now.
void arm(Point point, int after_n_calls = 0, Failure failure = Failure::bad_alloc) noexcept;
void disarm_all() noexcept;

// The point called `name` ("submit", "progress_thread", ...).
std::optional<Point> parse_point(std::string_view name) noexcept;
std::string_view name(Point point) noexcept;
// Arms the points of a SIDECORE_FAULT value; false (arming nothing) when it does not parse.
bool arm_from_spec(std::string_view spec) noexcept;

namespace detail {
inline std::atomic<int> armed_points{0};
bool fire_armed(Point point) noexcept;
[[noreturn]] void throw_failure(Point point);
}  // namespace detail

// True once, when `point` is armed and its turn has come.
inline bool fire(Point point) noexcept {
  if (detail::armed_points.load(std::memory_order_relaxed) == 0) [[likely]] return false;
  return detail::fire_armed(point);
}

// Throws the armed failure when `point` fires.
inline void inject(Point point) {
  if (fire(point)) [[unlikely]] detail::throw_failure(point);
}

}  // namespace sidecore::fault
