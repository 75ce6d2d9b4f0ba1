// An environment variable set, or unset, for the life of one object, then put back as it was:
// what a test that changes the process's environment needs so that the next test does not see it.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace sidecore_test {

class ScopedEnvironment {
 public:
  // `value`: what the variable holds meanwhile; nullopt unsets it.
  ScopedEnvironment(std::string name, const std::optional<std::string>& value) : name_(std::move(name)) {
    if (const char* before = std::getenv(name_.c_str())) before_ = before;
    put(value);
  }
  ~ScopedEnvironment() { put(before_); }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  void put(const std::optional<std::string>& value) const {
    if (value) {
      setenv(name_.c_str(), value->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

  std::string name_;
  std::optional<std::string> before_;
};

}  // namespace sidecore_test
