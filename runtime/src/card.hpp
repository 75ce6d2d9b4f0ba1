// The executor's address card: one printable line that tells a caller how to reach every worker.
//
//   sidecore/1 id=<16 hex> host=<hostname> provider=<libfabric provider> workers=<n>
//              doorbell=<shm name or -> addrs=<hex address>,<hex address>,...
//
// Fields are separated by single spaces (provider names such as "tcp;ofi_rxm" contain ';').
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sidecore {

class CardError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ExecutorCard {
  static constexpr int kVersion = 1;
  static constexpr size_t kMaxWorkers = 1024;
  std::string executor_id;                    // 16 hex digits, random per executor
  std::string host;                           // the executor's hostname
  std::string provider;                       // libfabric provider of every address below
  std::string doorbell;                       // shared-memory doorbell name, empty when none
  std::vector<std::string> worker_addresses;  // raw libfabric endpoint names, one per worker
};

std::string format_card(const ExecutorCard& card);
// Throws CardError with a message naming the malformed field.
ExecutorCard parse_card(std::string_view text);

}  // namespace sidecore
