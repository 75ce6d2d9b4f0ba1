// Faults cost only their own worker: sidecore-executor runs each worker in a process of its own,
// and the process that the Slurm plugin, sidecore-run or a user started stays behind as their
// supervisor. It owns what outlives a worker: the card (and its file), the doorbell segment, the
// liveness port for callers on other hosts, and the shared state (function names, deadlines and
// counters, shared_state.hpp).
//
// - A worker that dies while serving (a function segfaulted, aborted or called exit(), or the
//   worker was killed) is replaced: the supervisor removes the shared memory it left, starts a new
//   process on the same core, and publishes the new card (rewritten card file; a "card ..." line to
//   every liveness connection). Callers fail only that worker's tasks with EXECUTOR_LOST and connect
//   to the new worker by themselves; function ids stay valid.
// - A worker whose function runs past its task's deadline (the caller's timeout, bounded by
//   max_task_s) is killed and replaced the same way; that does not count as a crash.
// - More than `max_restarts` crashes within `window`: a clear message, every worker stopped, no
//   executor (exit status 1). A worker that fails before it first served fails the executor's start.
// - Stop signals (TERM, INT, HUP) go to every worker; the supervisor exits once they have stopped,
//   killing those that take longer than a few seconds (a function that never returns).
#pragma once

#include <chrono>
#include <string>

#include "executor.hpp"

namespace sidecore {

struct SupervisorOptions {
  unsigned max_restarts = 5;
  std::chrono::seconds window{60};
  std::string card_file;      // written once every worker serves, rewritten on each replacement
  bool print_stats = false;   // the --stats summary at exit
  std::string printed_token;  // a token the executor generated: printed after the card
};

// Serves `config` as described above until a stop signal; returns the exit status for main. Call it
// before any thread starts, with SIGTERM, SIGINT and SIGHUP blocked.
int supervise(const ExecutorConfig& config, const SupervisorOptions& options);

// Writes `text` and a newline to `path` through a temporary file and a rename, so a reader never
// sees half a card. Throws std::runtime_error.
void write_card_file(const std::string& path, const std::string& text);

}  // namespace sidecore
