#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install, build, and run a task farm that offloads
# work to an executor on this machine's idle core through sidecore-run, printing what it computed
# and how fast.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SIDECORE_BUILD_DIR:-$root/build}

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "demo: built in $build"

# This core computes; the others (or, on a 1-CPU machine, the same one) serve offloaded tasks.
cpus=$(nproc)
executor_cores=$([[ $cpus -gt 1 ]] && echo "1-$((cpus - 1))" || echo 0)
echo "demo: sidecore-run --cores $executor_cores -- taskset -c 0 02_task_farm"
"$build/runtime/sidecore-run" --cores "$executor_cores" -- \
  taskset -c 0 "$build/examples/02_task_farm" "$build/examples/libsidecore_examples.so" 2000 20000
