// Which cores an executor gets on this node: the job's cores minus the step's, after the job's
// request and the admin's cap. Works on Slurm's abstract core ids; cpu_map.hpp maps them to CPUs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core_set.hpp"
#include "options.hpp"

namespace sidecore::spank {

struct CorePlan {
  CoreSet cores;                      // empty: no executor, `reason` says why
  std::string reason;                 // why there is no executor (empty when there is one)
  std::vector<std::string> warnings;  // the executor runs, with fewer cores than asked
};

CorePlan plan_cores(const CoreSet& job_cores, const CoreSet& step_cores, const OffloadRequest& request,
                    std::optional<unsigned> max_cores);

}  // namespace sidecore::spank
