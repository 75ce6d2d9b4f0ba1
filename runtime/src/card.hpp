// The executor's address card: one printable line that tells a caller how to reach every worker.
//
//   sidecore/1 id=<16 hex> host=<hostname> [pid=<executor pid>] provider=<libfabric provider>
//              workers=<n> doorbell=<shm name or -> addrs=<hex address>,<hex address>,...
//              [remote=<libfabric provider> raddrs=<hex address>,...]
//
// provider/addrs serve callers on the executor's own host (shm on a Slurm node). An executor of a
// step that spans several nodes also listens on a cross-node provider (remote/raddrs, one address
// per worker, in the same order): callers on other hosts use those (route_for_caller).
//
// pid (optional) lets callers on the same host notice the executor's death at once (pidfd);
// watch (optional, after pid) is the TCP port of its liveness listener, for callers on other hosts.
// wpids (optional) are the worker processes' pids, in worker order: a caller on the same host
// watches each, since a worker that crashed is replaced (a new process, a new address, a new card)
// while the executor lives on. max_task_s (optional) is the site's bound on any task: callers
// time tasks out after it at the latest. paths (optional) lists the ways callers on the executor's
// host may reach its workers: "rings,fabric" when the workers also serve node-local rings
// (transport/ring.hpp) besides libfabric; absent: libfabric only.
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
  long pid = 0;                               // the executor (its supervisor) on `host`; 0: not given
  unsigned watch = 0;                         // liveness port (liveness_listener.hpp); 0: none
  std::string provider;                       // libfabric provider of every address below
  std::string doorbell;                       // shared-memory doorbell name, empty when none
  std::vector<std::string> worker_addresses;  // raw libfabric endpoint names, one per worker
  std::string remote_provider;                // for callers on other hosts; empty: none
  std::vector<std::string> remote_addresses;  // on remote_provider, one per worker (same order)
  std::vector<long> worker_pids;              // one per worker, or empty: workers share `pid`
  unsigned max_task_s = 0;                    // 0: no bound
  bool rings = false;                         // callers on `host` may use node-local rings
};

// This host's name as cards carry it (gethostname, "localhost" when it has none).
std::string local_host_name();

std::string format_card(const ExecutorCard& card);
// Throws CardError with a message naming the malformed field.
ExecutorCard parse_card(std::string_view text);

// The card as a caller on `caller_host` must use it: on another host, an executor with a remote
// provider is reached through that provider and its addresses (no doorbell: that is shared memory
// on the executor's host). Otherwise the card unchanged, less its remote part.
ExecutorCard route_for_caller(ExecutorCard card, std::string_view caller_host);

}  // namespace sidecore
