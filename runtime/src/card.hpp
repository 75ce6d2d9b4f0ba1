// The executor's address card: one printable line that tells a caller how to reach every worker.
//
//   sidecore/1 id=<16 hex> host=<hostname> [pid=<executor pid>] provider=<libfabric provider>
//              workers=<n> doorbell=<shm name or -> addrs=<hex address>,<hex address>,...
//
// pid (optional) lets callers on the same host notice the executor's death at once (pidfd);
// watch (optional, after pid) is the TCP port of its liveness listener, for callers on other hosts.
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
  long pid = 0;                               // the serving process on `host`; 0: not given
  unsigned watch = 0;                         // liveness port (liveness_listener.hpp); 0: none
  std::string provider;                       // libfabric provider of every address below
  std::string doorbell;                       // shared-memory doorbell name, empty when none
  std::vector<std::string> worker_addresses;  // raw libfabric endpoint names, one per worker
};

// This host's name as cards carry it (gethostname, "localhost" when it has none).
std::string local_host_name();

std::string format_card(const ExecutorCard& card);
// Throws CardError with a message naming the malformed field.
ExecutorCard parse_card(std::string_view text);

}  // namespace sidecore
