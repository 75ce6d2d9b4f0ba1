#include "mpi/error_codes.hpp"

#include <array>
#include <mutex>

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
  return std::nullopt;
}

}  // namespace sidecore::mpi
