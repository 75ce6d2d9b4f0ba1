#include "cpu_map.hpp"

#include <hwloc.h>

#include <vector>

namespace sidecore::spank {

CpuMapping abstract_cores_to_cpus(const CoreSet& abstract_cores) {
  CpuMapping mapping;
  hwloc_topology_t topology = nullptr;
  if (hwloc_topology_init(&topology) != 0) {
    mapping.cpus = abstract_cores;
    mapping.warning = "hwloc_topology_init failed; taking Slurm's core ids as CPU numbers";
    return mapping;
  }
  hwloc_topology_set_flags(topology, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
  if (hwloc_topology_load(topology) != 0) {
    hwloc_topology_destroy(topology);
    mapping.cpus = abstract_cores;
    mapping.warning = "hwloc_topology_load failed; taking Slurm's core ids as CPU numbers";
    return mapping;
  }
  const int core_count = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
  std::vector<int> cpus;
  for (int core : abstract_cores.cores()) {
    hwloc_obj_t object = core < core_count ? hwloc_get_obj_by_type(topology, HWLOC_OBJ_CORE, core) : nullptr;
    if (object == nullptr || object->cpuset == nullptr) {
      mapping.warning = "core " + std::to_string(core) + " is not in this machine's topology (" +
                        std::to_string(core_count) + " cores); taking Slurm's core ids as CPU numbers";
      cpus = abstract_cores.cores();
      break;
    }
    unsigned pu = 0;
    hwloc_bitmap_foreach_begin(pu, object->cpuset) { cpus.push_back(static_cast<int>(pu)); }
    hwloc_bitmap_foreach_end();
  }
  hwloc_topology_destroy(topology);
  mapping.cpus = CoreSet(std::move(cpus));
  return mapping;
}

}  // namespace sidecore::spank
