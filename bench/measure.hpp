// The three measurements: each starts its server child, runs Sidecore and the raw baseline in
// alternating rounds between the same two processes, and prints one JSON line per size.
#pragma once

#include "options.hpp"

namespace sidecore::bench {

// Runs the subcommand; returns the exit status. Errors are printed as one line on stderr.
int run_bench(const BenchOptions& options, const char* program);

}  // namespace sidecore::bench
