// The measurements of the C++ client: each starts its server child; latency, throughput and
// bandwidth run Sidecore and the raw baseline in alternating rounds between the same two processes
// and print one JSON line per size; wake times first tasks after idle periods and the idle
// executor's CPU use, and prints one line.
#pragma once

#include "options.hpp"

namespace sidecore::bench {

// Runs the subcommand; returns the exit status. Errors are printed as one line on stderr.
int run_bench(const BenchOptions& options, const char* program);

}  // namespace sidecore::bench
