#!/usr/bin/env bash
# What a pool costs as the job grows: bench/scaling_probe.c on 1, 2, 4 and 8 simulated Slurm nodes
# (slurm/local-cluster.sh up --nodes N), R ranks and one executor per node, the executor on the
# node's idle core (salloc -N N --ntasks-per-node=1 -c R+1, srun --exact -c1 -n N·R
# --ntasks-per-node=R --offload=idle). A simulated node claims every CPU of this machine, so R is
# at most the CPUs less one (1 on a 2-CPU machine).
#
#   bench/scaling.sh [--build DIR] [--nodes-list 1,2,4,8] [--ranks-per-node R] [--runs K]
#                    [--results FILE] [--env 'K=V ...'] [--keep-prefix]
#
# --build DIR       the build to install and measure (default: $SIDECORE_BUILD_DIR, else <repo>/build)
# --nodes-list L    node counts, each from 1 to 8 (default 1,2,4,8)
# --ranks-per-node R  ranks on each node, 1 to 8 (default 1); the probe's "ranks_per_node"
# --runs K          jobs per node count (default 3)
# --results FILE    where the JSON lines go as well (default bench/results/scaling.jsonl; - for none)
# --env 'K=V ...'   more environment for the job (libfabric knobs such as FI_OFI_RXM_MSG_RX_SIZE=256):
#                   the ranks and, since the plugin starts them with the job's environment, the
#                   executors. Recorded in each line as "env".
# --keep-prefix     leave the installed build and the probe in /tmp, to run jobs by hand afterwards
#
# Installs the build into /tmp/sidecore-scaling-prefix, builds the probe there with mpicc, and runs
# the jobs as the user sidecore-test (created when missing), as tests/multinode does. The cluster
# has its own folder and ports (/tmp/sidecore-slurm-scaling, 16837/16838) but the namespaces and
# bridge of every multi-node local cluster share their names: the script refuses to start while
# another cluster's nodes exist, and brings its own down at the end. Needs root. One JSON line per
# job on stdout (bench/scaling_probe.c says what each field is; docs/scaling.md has the figures);
# 1 to 3 minutes with the defaults.
#
# Every node claims this machine's CPUs: at 8 nodes, 8 ranks and 8 executors share 2 real CPUs, so
# the times are indicative only; counts (bytes, sockets, descriptors, threads) and memory are exact.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SIDECORE_BUILD_DIR:-$root/build}
nodes_list=1,2,4,8
runs=3
ranks_per_node=1
results=$root/bench/results/scaling.jsonl
keep_prefix=0
extra_env=""

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --build) build=${2:?}; shift ;;
    --nodes-list) nodes_list=${2:?}; shift ;;
    --runs) runs=${2:?}; shift ;;
    --ranks-per-node) ranks_per_node=${2:?}; shift ;;
    --results) results=${2:?}; shift ;;
    --env) extra_env=${2-}; shift ;;
    --keep-prefix) keep_prefix=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "scaling.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
say() { echo "scaling.sh: $*" >&2; }
die() { say "$*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (slurmd and network namespaces)"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number, not '$runs'"
[[ $ranks_per_node =~ ^[1-8]$ ]] || die "--ranks-per-node wants a number from 1 to 8, not '$ranks_per_node'"
# The job holds R + 1 CPUs per node, the step R of them: the executor takes the one left idle.
# Slurm 22.05 refuses an --exact step with more tasks than CPUs, --overcommit or not, so R ranks
# need nodes with R + 1 CPUs: every simulated node claims all of this machine's.
cpus=$(nproc)
((ranks_per_node + 1 <= cpus)) ||
  die "--ranks-per-node $ranks_per_node needs $((ranks_per_node + 1)) CPUs per node (one rank each, one for the executor); this machine has $cpus"
job_layout=(--ntasks-per-node=1 -c $((ranks_per_node + 1)))
step_layout=(--exact -c1 --ntasks-per-node="$ranks_per_node")
ntasks() { echo $(($1 * ranks_per_node)); }
IFS=, read -r -a node_counts <<<"$nodes_list"
for n in "${node_counts[@]}"; do
  [[ $n =~ ^[1-8]$ ]] || die "--nodes-list wants numbers from 1 to 8, not '$n'"
done
read -r -a env_list <<<"$extra_env"
for kv in "${env_list[@]}"; do
  [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*=[^\"]*$ ]] || die "--env wants K=V words without quotes, not '$kv'"
done
[[ -f $build/CMakeCache.txt ]] || die "no build in $build (--build DIR)"
[[ -f $build/tests/libsidecore_test_functions.so ]] ||
  die "no $build/tests/libsidecore_test_functions.so: build the tests"

cluster=$root/slurm/local-cluster.sh
export SIDECORE_SLURM_DIR=/tmp/sidecore-slurm-scaling SIDECORE_SLURMCTLD_PORT=16837 SIDECORE_SLURMD_PORT=16838
eval "$("$cluster" env)"
user=sidecore-test
prefix=/tmp/sidecore-scaling-prefix
programs=/tmp/sidecore-scaling-programs
# Between nodes, executors must listen on the node's own address, not the loopback one.
unset FI_TCP_IFACE FI_NET_IFACE FI_PROVIDER OMPI_MCA_btl_tcp_if_include OMPI_MCA_oob_tcp_if_include

# The simulated nodes' names are global: never touch another cluster's.
if compgen -G '/run/netns/sidecore-node*' >/dev/null; then
  if [[ ! -s $SIDECORE_SLURM_DIR/nodes ]] || ! "$cluster" status >/dev/null 2>&1; then
    die "simulated nodes of another local cluster exist ($(cd /run/netns && echo sidecore-node*)); bring it down first"
  fi
fi

work=$(mktemp -d /tmp/sidecore-scaling.XXXXXX)
chmod 0755 "$work"
cleanup() {
  "$cluster" down >/dev/null 2>&1 || true
  rm -rf "$work"
  ((keep_prefix)) || rm -rf "$prefix" "$programs"
}
trap cleanup EXIT

id "$user" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$user"
rm -rf "$prefix" "$programs"
cmake --install "$build" --prefix "$prefix" >/dev/null || die "cannot install $build into $prefix"
chmod -R a+rX "$prefix"
install -d -m 0755 "$programs"
mpicc -O2 -Wall -o "$programs/scaling_probe" "$root/bench/scaling_probe.c" -I"$prefix/include" -L"$prefix/lib" \
  -Wl,-rpath,"$prefix/lib" -lsidecore_mpix -lsidecore || die "cannot build scaling_probe against $prefix"
install -m 0644 "$build/tests/libsidecore_test_functions.so" "$programs/"
chmod -R a+rX "$programs"

# The commit measured, before this run rewrites its own results file (which would read as dirty).
commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
if [[ $results != - ]]; then
  mkdir -p "$(dirname "$results")"
  : >"$results"
fi
for n in "${node_counts[@]}"; do
  "$cluster" up --nodes "$n" --prefix "$prefix" >/dev/null 2>"$work/up.err" ||
    die "cluster with $n node(s) did not come up: $(cat "$work/up.err")"
  for ((run = 1; run <= runs; run++)); do
    # Open MPI 4.1's TCP transport now and then crashes inside MPI_Init on these simulated nodes (a
    # call through a null pointer in mca_btl_tcp, before any Sidecore call; 3 of 25 jobs at 4
    # nodes), and the other ranks then wait in MPI_Init until the timeout. A job where some rank
    # never said it was initialized runs again; any other failure ends the script.
    for attempt in 1 2 3 4 5; do
      # Ranks share this machine's two CPUs with every node's executor: they yield while they wait.
      if (cd "$work" && runuser -u "$user" -- env SLURM_CONF="$SLURM_CONF" PATH=/usr/bin:/bin \
          OMPI_MCA_mpi_yield_when_idle=1 SIDECORE_LOG_LEVEL="${SIDECORE_LOG_LEVEL:-warn}" "${env_list[@]}" \
          timeout 60 salloc -Q -N "$n" "${job_layout[@]}" \
          srun --mpi=pmix -n "$(ntasks "$n")" "${step_layout[@]}" --offload=idle --offload-poll=adaptive \
          "$programs/scaling_probe" "$programs/libsidecore_test_functions.so" "$run") >"$work/out" 2>"$work/err"; then
        break
      fi
      if ((attempt == 5)) || (($(grep -c '^scaling_probe: rank [0-9]* initialized$' "$work/err") == n * ranks_per_node)); then
        say "the $n-node job (run $run) failed:"
        cat "$work/out" "$work/err" >&2
        exit 1
      fi
      say "the $n-node job (run $run) lost a rank inside MPI_Init (attempt $attempt); running it again"
    done
    line=$(sed -n 's/^scaling-result //p' "$work/out")
    [[ -n $line ]] || die "no result from the $n-node job (run $run): $(cat "$work/out" "$work/err")"
    grep -v '^scaling_probe: rank [0-9]* initialized$' "$work/err" | sed 's/^/  job: /' >&2 || true
    line="${line%\}},\"env\":\"$extra_env\",\"commit\":\"$commit\"}"
    echo "$line"
    [[ $results == - ]] || echo "$line" >>"$results"
  done
done
