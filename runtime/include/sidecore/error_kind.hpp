// The kinds of error a Sidecore task can complete with. The numbering is part of the wire protocol
// and matches MPIX_OFFLOAD_ERR_* in <mpix_offload.h>.
#pragma once

#include <cstdint>
#include <string_view>

namespace sidecore {

enum class ErrorKind : uint32_t {
  none = 0,           // the function ran and returned 0
  no_executor = 1,    // no executor could be reached
  not_found = 2,      // the library or symbol does not exist on the executor
  function = 3,       // the function returned non-zero (its value is reported) or broke the ABI
  executor_lost = 4,  // the executor went away before answering
  timeout = 5,        // the task did not finish in time
  auth = 6,           // the executor refused this caller's token
  bad_arg = 7,        // the call itself was malformed
};

inline constexpr uint32_t kErrorKindCount = 8;

constexpr std::string_view to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::none: return "NONE";
    case ErrorKind::no_executor: return "NO_EXECUTOR";
    case ErrorKind::not_found: return "NOT_FOUND";
    case ErrorKind::function: return "FUNCTION";
    case ErrorKind::executor_lost: return "EXECUTOR_LOST";
    case ErrorKind::timeout: return "TIMEOUT";
    case ErrorKind::auth: return "AUTH";
    case ErrorKind::bad_arg: return "BAD_ARG";
  }
  return "UNKNOWN";
}

}  // namespace sidecore
