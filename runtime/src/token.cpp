#include "token.hpp"

#include <fmt/format.h>
#include <sys/random.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace sidecore {

uint64_t random_u64() {
  uint64_t value = 0;
  ssize_t got;
  do {
    got = getrandom(&value, sizeof value, 0);
  } while (got < 0 && errno == EINTR);
  if (got != static_cast<ssize_t>(sizeof value)) throw std::system_error(errno, std::generic_category(), "getrandom");
  return value;
}

std::string generate_token() { return fmt::format("{:016x}{:016x}", random_u64(), random_u64()); }

std::string generate_id() { return fmt::format("{:016x}", random_u64()); }

bool tokens_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  return difference == 0;
}

}  // namespace sidecore
