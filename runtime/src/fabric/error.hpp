// Errors of the libfabric layer: exceptions while setting up, return codes on the data path.
#pragma once

#include <stdexcept>
#include <string>

namespace sidecore::fabric {

// Thrown while opening fabric objects; carries libfabric's (negative) return code.
class FabricError : public std::runtime_error {
 public:
  FabricError(const std::string& what, int code);
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// Throws FabricError("<what>: <fi_strerror>") when rc is negative.
void check(long rc, const char* what);

}  // namespace sidecore::fabric
