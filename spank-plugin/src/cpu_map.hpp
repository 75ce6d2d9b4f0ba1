// Slurm's abstract core ids to the OS CPU numbers that sched_setaffinity takes.
//
// Slurm numbers the cores of a node 0..n-1 in topology order (socket by socket), whatever the OS
// calls them, and a core may hold several hardware threads. hwloc numbers cores in the same order
// (its logical index), so abstract core i is hwloc's core i, and it runs on that core's PUs.
#pragma once

#include <string>

#include "core_set.hpp"

namespace sidecore::spank {

struct CpuMapping {
  CoreSet cpus;         // OS CPU numbers
  std::string warning;  // set when the topology could not be read and ids were taken as-is
};

// Maps with the machine's whole topology (disallowed CPUs included, so numbering does not depend on
// the caller's cpuset). Falls back to the identity, with a warning, when hwloc cannot say.
CpuMapping abstract_cores_to_cpus(const CoreSet& abstract_cores);

}  // namespace sidecore::spank
