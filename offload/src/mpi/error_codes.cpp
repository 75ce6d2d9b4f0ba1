#include "mpi/error_codes.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <mutex>
#include <string_view>

namespace sidecore::mpi {
namespace {

std::once_flag registered;
std::array<int, kErrorKindCount> codes{};  // codes[kind]; codes[none] stays MPI_SUCCESS

constexpr std::array<const char*, kErrorKindCount> kDescriptions{
    "Sidecore: no error",
    "Sidecore NO_EXECUTOR: no executor is available to run the task (fallback=error)",
    "Sidecore NOT_FOUND: the function library or symbol does not exist on the executor",
    "Sidecore FUNCTION: the offloaded function returned non-zero (its value is in MPI_TAG)",
    "Sidecore EXECUTOR_LOST: the executor went away before the task completed",
    "Sidecore TIMEOUT: the task did not complete within sidecore_timeout_ms",
    "Sidecore AUTH: the executor refused this job's token",
    "Sidecore BAD_ARG: invalid argument to an MPIX_Offload call",
};

}  // namespace

void register_error_codes() {
  std::call_once(registered, [] {
    int error_class = MPI_ERR_OTHER;
    if (MPI_Add_error_class(&error_class) != MPI_SUCCESS) return;
    MPI_Add_error_string(error_class, "Sidecore offload error");
    codes[0] = MPI_SUCCESS;
    for (uint32_t kind = 1; kind < kErrorKindCount; ++kind) {
      int code = error_class;
      if (MPI_Add_error_code(error_class, &code) != MPI_SUCCESS) code = error_class;
      MPI_Add_error_string(code, kDescriptions[kind]);
      codes[kind] = code;
    }
  });
}

int error_code(ErrorKind kind) {
  const auto index = static_cast<uint32_t>(kind);
  if (index == 0) return MPI_SUCCESS;
  return index < kErrorKindCount && codes[index] != 0 ? codes[index] : MPI_ERR_OTHER;
}

std::optional<ErrorKind> error_kind(int code) {
  if (code == MPI_SUCCESS) return ErrorKind::none;
  for (uint32_t kind = 1; kind < kErrorKindCount; ++kind) {
    if (codes[kind] != 0 && codes[kind] == code) return static_cast<ErrorKind>(kind);
  }
  // MPICH reports a failed request in a multiple-completion status (MPI_Waitall, ...) with a code
  // of its own, class MPI_ERR_OTHER, whose message ends "query function returned error code N":
  // N is ours.
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return std::nullopt;
  const std::string_view message(text, static_cast<size_t>(std::max(length, 0)));
  constexpr std::string_view kWrapped = "returned error code ";
  const size_t at = message.rfind(kWrapped);
  if (at == std::string_view::npos) return std::nullopt;
  int inner = 0;
  const char* first = message.data() + at + kWrapped.size();
  const auto [end, error] = std::from_chars(first, message.data() + message.size(), inner);
  if (error != std::errc() || end == first || inner == code) return std::nullopt;
  for (uint32_t kind = 1; kind < kErrorKindCount; ++kind) {
    if (codes[kind] != 0 && codes[kind] == inner) return static_cast<ErrorKind>(kind);
  }
  return std::nullopt;
}

}  // namespace sidecore::mpi
