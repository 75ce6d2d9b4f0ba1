#include "plan.hpp"

#include <algorithm>

namespace sidecore::spank {

CorePlan plan_cores(const CoreSet& job_cores, const CoreSet& step_cores, const OffloadRequest& request,
                    std::optional<unsigned> max_cores) {
  CorePlan plan;
  if (request.kind == OffloadRequest::Kind::off) {
    plan.reason = "offload is off for this step";
    return plan;
  }
  if (max_cores == 0u) {
    plan.reason = "the site's max_cores=0 allows no executor";
    return plan;
  }
  const CoreSet idle = job_cores.minus(step_cores);
  if (idle.empty()) {
    plan.reason = "the step's tasks use all " + std::to_string(job_cores.size()) +
                  " of the job's cores on this node; leave some idle (srun --exact, or fewer CPUs per "
                  "task than the job holds)";
    return plan;
  }
  size_t wanted = request.kind == OffloadRequest::Kind::count ? request.count : idle.size();
  if (wanted > idle.size()) {
    plan.warnings.push_back("--offload=" + std::to_string(wanted) + " asks for more cores than the " +
                            std::to_string(idle.size()) + " idle on this node; the executor takes " +
                            std::to_string(idle.size()));
    wanted = idle.size();
  }
  if (max_cores && wanted > *max_cores) {
    plan.warnings.push_back("the site caps executors at max_cores=" + std::to_string(*max_cores) +
                            " per node; the executor takes " + std::to_string(*max_cores) + " of " +
                            std::to_string(wanted) + " cores");
    wanted = *max_cores;
  }
  // The highest-numbered idle cores: Slurm fills the step from the lowest ones, so these are the
  // farthest from the tasks.
  std::vector<int> chosen(idle.cores().end() - static_cast<std::ptrdiff_t>(wanted), idle.cores().end());
  plan.cores = CoreSet(std::move(chosen));
  return plan;
}

}  // namespace sidecore::spank
