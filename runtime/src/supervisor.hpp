// Crash isolation for sidecore-executor: the serving part runs in a child process, and the
// process that the Slurm plugin, sidecore-run or a user started stays behind as its supervisor.
// When a function kills the server (a segfault, abort(), exit(), ...), the supervisor cleans up
// the shared memory it left, removes its stale card and starts a fresh server, which writes a new
// card; callers see EXECUTOR_LOST for the tasks that were on the dead one (they watch its pid) and
// connect again through the card. Stop signals (TERM, INT, HUP) are passed on to the server, and
// the supervisor exits with its status. A server that fails before it is ready is not restarted
// (the failure would repeat), and neither is one that dies more than `max_restarts` times within
// `window`.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace sidecore {

struct SupervisorOptions {
  unsigned max_restarts = 5;
  std::chrono::seconds window{60};
  std::string card_file;  // removed when the server dies (the next one writes it again)
};

// Runs serve(card_fd) in a child process, restarted as described above; returns the exit status
// for main. The child must write its card, one line, to card_fd once it serves. Call it before any
// thread starts, with SIGTERM, SIGINT and SIGHUP blocked.
int supervise(const std::function<int(int card_fd)>& serve, const SupervisorOptions& options);

}  // namespace sidecore
