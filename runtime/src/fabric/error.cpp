#include "fabric/error.hpp"

#include <rdma/fi_errno.h>

namespace sidecore::fabric {

FabricError::FabricError(const std::string& what, int code) : std::runtime_error(what), code_(code) {}

void check(long rc, const char* what) {
  if (rc < 0) {
    throw FabricError(std::string(what) + ": " + fi_strerror(static_cast<int>(-rc)), static_cast<int>(rc));
  }
}

}  // namespace sidecore::fabric
