// Sidecore's MPI error class and codes, registered with MPI_Add_error_class/code/string so
// MPI_Error_string explains them.
#pragma once

#include <mpi.h>

#include <optional>

#include "sidecore/error_kind.hpp"

namespace sidecore::mpi {

// Registers the codes once per process (after MPI_Init); safe to call repeatedly.
void register_error_codes();
// MPI_SUCCESS for ErrorKind::none, else the registered code.
int error_code(ErrorKind kind);
// The kind of a registered code (none for MPI_SUCCESS); nullopt for any other code.
std::optional<ErrorKind> error_kind(int code);

}  // namespace sidecore::mpi
