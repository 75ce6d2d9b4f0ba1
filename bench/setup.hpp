// What every subcommand needs from its surroundings: the bench's function library, its helper
// programs, and a look at how busy the machine is.
#pragma once

#include <string>
#include <vector>

namespace sidecore::bench {

// The bench function library: `requested` (made absolute), or libsidecore_bench_functions.so next
// to the binary, in a relocated install (bin/../lib/sidecore) or under the install prefix. Throws
// std::runtime_error naming the places it looked.
std::string find_library(const std::string& requested, const char* program);

// The first of `candidates` that is an executable file; relative ones are taken from the
// directory of this binary. `fallback` (looked up on PATH by exec) when none is. An empty
// `requested` means "search"; anything else is used as it is.
std::string find_program(const std::string& requested, const std::vector<std::string>& candidates,
                         const std::string& fallback);

// Checks that `provider` is one libfabric offers here (std::runtime_error naming the known ones
// otherwise) and keeps tcp and net traffic on loopback (FI_TCP_IFACE / FI_NET_IFACE=lo unless set).
void use_provider_on_loopback(const std::string& provider);

// Threads of other programs that are running or ready to run, sampled for a moment (100 ms): on a
// machine with two CPUs, any of them steals time from one side or the other.
double other_runnable_threads();

}  // namespace sidecore::bench
