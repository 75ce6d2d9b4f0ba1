#!/usr/bin/env bash
# Builds Sidecore and runs its main test tiers inside a Debian root of another release, so that the
# project is checked against that release's Slurm, Open MPI, libfabric and compiler as well as
# against Debian 12's on this machine. `scripts/test.sh --distro NAME` runs it, and so does CI.
#
#   scripts/distro-test.sh NAME [CTEST ARGUMENTS...]
#
# NAME         trixie: Debian 13 (Slurm 24.11, Open MPI 5.0, libfabric 2.1, g++ 14, CMake 3.31)
# arguments    passed to ctest instead of the main tier's labels (for example -R slurm.idle_cores);
#              without any: -L 'unit|integration|mpi|slurm|multinode', the whole main tier
#
# The root is made by scripts/debian-root.sh and cached in $SIDECORE_ROOTS_DIR/NAME (default
# /var/cache/sidecore/roots/trixie): the first run debootstraps it and installs the packages
# (about 2 minutes on a machine with nothing cached), later runs reuse it. A run from nothing took
# 12 minutes here (debootstrap 38 s, packages 86 s, build 419 s, tests 164 s). The checkout is bound
# read-only at /src inside the root, and the build folder is /var/tmp/sidecore-build inside it
# (kept between runs of the same checkout, so a rebuild is incremental). The root runs in a network
# namespace of its own (debian-root.sh run --net): the slurm and multinode tiers start their own
# munged, slurmctld and slurmd, bridge and node namespaces there, apart from clusters on this
# machine that use the same ports, names and /tmp folders. Runs that use the same root wait for
# each other.
#
# Environment: SIDECORE_ROOTS_DIR (where roots are cached), SIDECORE_DISTRO_BENCH=1 (build
# sidecore-bench too; off by default, since no tier of the main test needs it).
# Needs root. Exits non-zero if the root cannot be made, the build fails, or a test fails.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { echo "distro-test: $*" >&2; }
die() { say "error: $*"; exit 1; }

name=${1:?usage: $0 NAME [CTEST ARGUMENTS...]}
shift
case $name in
  trixie) suite=trixie ;;
  *) die "unknown distribution '$name' (known: trixie)" ;;
esac
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot, and the Slurm daemons need it)"

roots=${SIDECORE_ROOTS_DIR:-/var/cache/sidecore/roots}
dir=$roots/$name
# What the main tier needs inside the root: the build, the MPI, and a Slurm with munge; procps
# and iproute2 for the slurm and multinode tiers' checks and node namespaces.
packages=(
  build-essential cmake pkg-config
  libfabric-dev libfabric-bin libibverbs-dev
  libopenmpi-dev openmpi-bin
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libcli11-dev
  libhwloc-dev hwloc
  munge slurmctld slurmd slurm-client libslurm-dev libpmix-dev
  iproute2 util-linux procps hostname passwd
)

# Seconds since $1 (an epoch), for the timing summary.
since() { echo $(($(date +%s) - $1)); }
timings=()

if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null; } ||
    die "cannot install debootstrap"
fi

# One run at a time per root: runs share its build folder, /tmp and Slurm state. (The lock's
# descriptor is closed for everything started inside, so a daemon cannot keep it.)
mkdir -p "$roots"
exec 9>"$roots/$name.lock"
flock -n 9 || { say "waiting for another run that uses $dir"; flock 9; }

start=$(date +%s)
if [[ ! -e $dir/.sidecore-root-ready ]]; then
  "$root/scripts/debian-root.sh" create "$suite" "$dir" 9>&-
  timings+=("debootstrap $(since "$start") s")
else
  timings+=("debootstrap 0 s (cached root in $dir)")
fi
start=$(date +%s)
"$root/scripts/debian-root.sh" create "$suite" "$dir" "${packages[@]}" 9>&-
timings+=("packages $(since "$start") s")

# This machine's name resolves inside the root as on an installed Debian (the root's network
# namespace has no DNS): clients reach executors on "this host" by the name in their card.
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "$(hostname)" >"$dir/etc/hosts"

# The root's /run is a plain folder, not a tmpfs: names of node namespaces that a killed run left
# there would outlive it (the namespaces themselves died with the run's mount namespace).
rm -rf "$dir/run/netns"

build=/var/tmp/sidecore-build
# A build folder made from another checkout (another worktree) could keep objects newer than this
# checkout's sources: start afresh then.
if [[ $(cat "$dir$build.checkout" 2>/dev/null) != "$root" ]]; then
  rm -rf "${dir:?}$build"
  mkdir -p "$dir$build"
  echo "$root" >"$dir$build.checkout"
fi
bench=OFF
[[ ${SIDECORE_DISTRO_BENCH:-0} == 0 ]] || bench=ON
ctest_args=("$@")
# The whole main tier, the four time-limit cases included: they spend about five minutes waiting on
# slurmctld's clock (Slurm's shortest limit is a minute, checked every 30 s), and Slurm 24.11 is
# where a site's time limits now end steps.
((${#ctest_args[@]})) || ctest_args=(-L 'unit|integration|mpi|slurm|multinode')

# The command inside the root (a fresh environment: debian-root.sh starts it with env -i).
# Versions first, so that a log says what was tested.
inside=$(cat <<'SH'
set -euo pipefail
stage=$1 build=$2 bench=$3
shift 3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 FI_TCP_IFACE=lo
# With loopback alone, Slurm 24.11's daemons cannot listen at all: they fail to resolve their own
# listening address ("getaddrinfo((null):16817) failed", "Unable to bind listen port"), as
# getaddrinfo with AI_ADDRCONFIG does on a host without one non-loopback address. A veth pair gives
# the namespace such an address, as eth0 does on a real host; no test traffic goes through it.
ip link add sidecore-host0 type veth peer name sidecore-host1
ip addr add 10.203.78.1/24 dev sidecore-host0
ip link set sidecore-host0 up
ip link set sidecore-host1 up
case $stage in
  build)
    echo "inside: $(. /etc/os-release && echo "$PRETTY_NAME"); g++ $(g++ -dumpfullversion); $(cmake --version | head -1);" \
         "libfabric $(pkg-config --modversion libfabric); $(mpirun --version 2>/dev/null | head -1);" \
         "Slurm $(slurmd -V | cut -d' ' -f2)"
    # Every part the tiers need by name, as on the host (scripts/test.sh): none may drop out.
    cmake -S /src -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSIDECORE_WERROR=ON \
      -DSIDECORE_BUILD_SPANK=ON -DSIDECORE_BUILD_TESTS=ON -DSIDECORE_BUILD_EXAMPLES=ON \
      -DSIDECORE_BUILD_BENCH="$bench" >"$build.configure.log" || { cat "$build.configure.log"; exit 1; }
    grep -E '^-- (Found|Checking for module)' "$build.configure.log" || true
    cmake --build "$build" -j "$(nproc)" ;;
  tests)
    # One test at a time, as on the host: the tiers check timing bounds and share two cores.
    ctest --test-dir "$build" --output-on-failure --no-tests=error --timeout 600 "$@" ;;
esac
SH
)
run_inside() {
  "$root/scripts/debian-root.sh" run --net --bind "$root:/src" "$dir" -- bash -c "$inside" inside "$@" 9>&-
}
# /src is the checkout itself: keep it read-only from inside, so nothing there changes by a build.
# (A bind mount cannot be made read-only in the same step; debian-root.sh binds, this remounts.)
inside="mount -o remount,bind,ro /src 2>/dev/null || true
$inside"

# Whatever a failed test left running inside the root (a cluster whose teardown failed, a job's
# tasks) would outlive the run in the root's namespaces and hold ports and cgroups: stop it all.
stop_leftovers() {
  local proc pids=()
  for proc in /proc/[0-9]*; do
    [[ $(readlink "$proc/root" 2>/dev/null) == "$dir" ]] && pids+=("${proc#/proc/}")
  done
  ((${#pids[@]} == 0)) && return 0
  say "stopping ${#pids[@]} process(es) left running inside the root"
  kill -KILL "${pids[@]}" 2>/dev/null || true
}
trap stop_leftovers EXIT
stop_leftovers

start=$(date +%s)
status=0
run_inside build "$build" "$bench" || status=$?
timings+=("build $(since "$start") s")
if ((status == 0)); then
  start=$(date +%s)
  run_inside tests "$build" "$bench" "${ctest_args[@]}" || status=$?
  timings+=("tests $(since "$start") s")
fi
say "$name: $(IFS=,; echo "${timings[*]}" | sed 's/,/, /g')"
((status == 0)) || die "$name: the build or a test failed (exit $status)"
say "$name: all tests passed"
