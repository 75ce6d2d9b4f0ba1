// The server side of sidecore-bench: a child process (the hidden `serve` subcommand) pinned to one
// CPU that hosts both the real executor engine and the raw libfabric baseline, so that both
// measurements run between the same two processes.
#pragma once

#include <string>

#include "poll_mode.hpp"

namespace sidecore::bench {

struct ServerOptions {
  std::string provider = "shm";
  int cpu = 1;                        // the whole process, executor worker included, runs here
  std::string library;                // function library the executor preloads
  PollMode poll = PollMode::adaptive;
  long spin_us = 1000;                // adaptive: the worker's spin window
  unsigned credits = 64;              // tasks the caller may have outstanding at the worker
  std::string netns;                  // enter this network namespace (ip netns name) first; empty: stay
};

// Serves control commands from stdin until "quit" or end of input. Returns the exit status.
//
// Control protocol (one line each way, over stdin and a private copy of stdout; fd 1 itself is
// pointed at stderr so nothing else can corrupt the channel):
//   child:  card <executor card> / token <hex> / raw <hex address> / ready
//   parent: peer <hex address>                 -> ok
//   parent: echo <count> <bytes> <window>      -> go (receives posted), then done
//   parent: read <count> <bytes>               -> go, then done
//   parent: idle <ms>                          -> busy <share of one CPU the executor used meanwhile>
// During echo and read rounds the executor's threads run at SCHED_IDLE, so that the raw echo never
// shares its CPU with a worker that failed to go to sleep.
//   parent: quit                               -> bye
// Any failure answers "error <message>" and ends the process.
int run_server(const ServerOptions& options);

}  // namespace sidecore::bench
