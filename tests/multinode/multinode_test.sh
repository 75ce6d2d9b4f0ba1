#!/usr/bin/env bash
# The multinode tier: jobs on 3 simulated Slurm nodes (slurm/local-cluster.sh up --nodes 3), each
# node a network namespace with its own hostname and /dev/shm, run by a non-root test user. One
# case per invocation:
#   tests/multinode/multinode_test.sh setup | teardown | spread | node_scope | lost | restart | sbatch |
#                                     slurmd_restart | preempt_spare | lease | lease_preempt |
#                                     lease_refused | lease_tokens | lease_bench
# Environment: SIDECORE_BUILD_DIR (the build to test), SIDECORE_TEST_USER (default sidecore-test),
# SIDECORE_MULTINODE_CGROUP=1 (the cluster under task/cgroup).
#
# The cluster has its own folder and ports, so it never meets the slurm tier's one-node cluster.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster=$here/../../slurm/local-cluster.sh
user=${SIDECORE_TEST_USER:-sidecore-test}
build=${SIDECORE_BUILD_DIR:?SIDECORE_BUILD_DIR must name the build folder}
export SIDECORE_SLURM_DIR=/tmp/sidecore-slurm-multinode SIDECORE_SLURMCTLD_PORT=16827 SIDECORE_SLURMD_PORT=16828
eval "$("$cluster" env)"
# shellcheck source=SCRIPTDIR/../slurm/job_checks.sh
source "$here/../slurm/job_checks.sh"
nodes=3
prefix=/tmp/sidecore-multinode-test-prefix   # the build, installed world-readable (as sites run it)
programs=/tmp/sidecore-multinode-test-programs  # the MPI program and the function library
# The test harness points libfabric's tcp provider at the loopback interface for the other tiers;
# between nodes, executors must listen on the node's own address.
unset FI_TCP_IFACE FI_PROVIDER OMPI_MCA_btl_tcp_if_include OMPI_MCA_oob_tcp_if_include

# $1: the plugin's admin arguments (none by default).
# SIDECORE_MULTINODE_CGROUP=1: under task/cgroup and proctrack/cgroup (local-cluster.sh --cgroup), as
# production sites run Slurm.
cluster_up() {
  local cgroup=()
  [[ ${SIDECORE_MULTINODE_CGROUP:-0} == 1 ]] && cgroup=(--cgroup)
  "$cluster" up --nodes "$nodes" "${cgroup[@]}" --prefix "$prefix" --plugin-args "${1-}" >/dev/null
}
lease_args="lease_partition=spare lease_max_cores=2"

work=$(new_work_dir sidecore-multinode-test)
trap 'rm -rf "$work"' EXIT
# Runs a command as the test user. Ranks share this machine's two cores with every node's
# executor: they yield while they wait.
# MPI between the simulated nodes goes through libfabric's tcp;ofi_rxm (pml cm, mtl ofi), not Open
# MPI 4.1.4's tcp BTL: on these namespaces the BTL crashed a rank inside MPI_Init (a call through a
# null pointer as the first connection came in) in 3 to 7 % of 3-node jobs of programs linked with
# Sidecore, and in none of 50 jobs with the mtl.
as_user() {
  (cd "$work" && runuser -u "$user" -- env SLURM_CONF="$SLURM_CONF" PATH=/usr/bin:/bin \
    OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_pml=cm OMPI_MCA_mtl=ofi "OMPI_MCA_mtl_ofi_provider_include=tcp;ofi_rxm" \
    SIDECORE_LOG_LEVEL="${SIDECORE_LOG_LEVEL:-warn}" "$@")
}

# An allocation of one task per node with two CPUs each; the step's rank takes one (--exact -c1),
# so each node's executor gets the other.
job_step() {
  as_user salloc -Q -N "$nodes" --ntasks-per-node=1 -c2 \
    srun --kill-on-bad-exit=1 --mpi=pmix --exact -c1 --offload=idle --offload-poll=adaptive "$@"
}

case_setup() {
  [[ $(id -u) -eq 0 ]] || fail "the multinode tier runs as root (it starts slurmd in namespaces)"
  local tool
  for tool in ip nsenter unshare; do
    command -v "$tool" >/dev/null || fail "$tool is needed (iproute2, util-linux)"
  done
  ensure_test_user
  install_build "$build" "$prefix"
  rm -rf "$programs"
  install -d -m 0755 "$programs"
  mpicc -O1 -o "$programs/multinode_checks" "$here/multinode_checks.c" -I"$here/../mpi" -I"$prefix/include" -L"$prefix/lib" \
    -Wl,-rpath,"$prefix/lib" -lsidecore_mpix -lsidecore || fail "cannot build multinode_checks against $prefix"
  install -m 0644 "$build/tests/libsidecore_test_functions.so" "$programs/" ||
    fail "no test function library in $build/tests"
  chmod -R a+rX "$programs"
  cluster_up
  check "$nodes-node cluster up: $(sinfo -h -N -p debug -o '%N %T' | tr '\n' ' ')"
}

# Every node's state|reason once the jobs that just ended have finished completing (up to 30 s):
# 'idle|none ' when all are idle and none is drained.
nodes_settled() {
  local states=""
  for _ in $(seq 300); do
    states=$(sinfo -h -N -p debug -o '%T|%E' | sort -u | tr '\n' ' ')
    [[ $states == 'idle|none ' ]] && break
    sleep 0.1
  done
  echo "$states"
}

case_teardown() {
  local states
  states=$(nodes_settled)
  expect_no_executor_left
  "$cluster" down
  rm -rf "$prefix" "$programs"
  [[ $states == 'idle|none ' ]] || fail "nodes are '$states' (state|reason) at the end, not all idle"
  check "every node idle, not drained; no executor left"
}

run_checks() {
  local scenario=$1
  job_step "$programs/multinode_checks" "$scenario" "$programs/libsidecore_test_functions.so" \
    >"$work/out" 2>"$work/err" || fail "the $scenario job failed: $(cat "$work/out" "$work/err")"
  cat "$work/out"
  grep -q "^$scenario on $nodes nodes: .* 0 failures$" "$work/out" || fail "no clean summary from the $scenario job"
}

case_spread() {
  cluster_up
  # At debug level, each rank logs the provider it reaches each executor over: its node's when
  # the pool is created, the others' as each joins (the first time a task finds no idle worker).
  SIDECORE_LOG_LEVEL=debug run_checks spread
  local over_shm over_tcp
  over_shm=$(grep -c "pool: executor .* (this node), 1 worker(s) over shm$" "$work/err" || true)
  over_tcp=$(grep -c "executor .* on node[0-9]* joined: 1 worker(s) over tcp;ofi_rxm$" "$work/err" || true)
  [[ $over_shm == "$nodes" && $over_tcp == $((nodes * (nodes - 1))) ]] ||
    fail "expected each rank to reach its node's executor over shm and the others over tcp;ofi_rxm:" \
      "$over_shm over shm, $over_tcp over tcp;ofi_rxm: $(grep -E 'pool: executor|joined' "$work/err")"
  # Every rank's tasks ran on its own node first and on other nodes once its worker was busy.
  [[ $(grep -c "^spread: rank .* [1-9][0-9]* on other nodes; pool 1 local of $nodes workers$" "$work/out") == "$nodes" ]] ||
    fail "not every rank reached the other nodes' executors"
  expect_no_executor_left
  check "3 nodes under srun --offload=idle: each rank's tasks ran on its node, then on the other nodes"
}

case_bounded() {
  cluster_up
  run_checks bounded
  [[ $(grep -c "^bounded: rank .* pool of 2 workers with 1 remote executor, $nodes with 100$" "$work/out") == "$nodes" ]] ||
    fail "sidecore_remote_executors did not bound the pools as asked"
  expect_no_executor_left
  check "sidecore_remote_executors=1 keeps a rank's tasks on its node and the next one; 100 gives the $nodes that exist"
}

case_node_scope() {
  cluster_up
  run_checks node
  [[ $(grep -c "^node: rank .* 8 of 8 tasks here; pool 1 local of 1 workers$" "$work/out") == "$nodes" ]] ||
    fail "sidecore_scope=node let tasks leave the node"
  expect_no_executor_left
  check "sidecore_scope=node keeps every task on the rank's node"
}

case_lost() {
  cluster_up
  run_checks lost
  expect_no_executor_left
  local states
  states=$(nodes_settled)
  [[ $states == 'idle|none ' ]] || fail "nodes are '$states' (state|reason) after the killed executor, not all idle"
  check "one node's executor killed: EXECUTOR_LOST for its tasks on every node, the job finished on the others"
}

case_restart() {
  cluster_up
  run_checks restart
  local rank
  for ((rank = 0; rank < nodes; ++rank)); do
    grep -q "^restart: rank $rank .*; served by its new worker again$" "$work/out" ||
      fail "rank $rank was not served by the crashed node's new worker"
  done
  expect_no_executor_left
  check "one node's worker crashed: EXECUTOR_LOST for its tasks on every node; its supervisor's new worker serves every rank again, on every node"
}

case_sbatch() {
  cluster_up
  cat >"$work/job.sh" <<JOB
#!/bin/bash
#SBATCH -N2 --ntasks-per-node=1 -c2
#SBATCH --offload
srun --kill-on-bad-exit=1 --mpi=pmix --exact -c1 $programs/multinode_checks spread $programs/libsidecore_test_functions.so
JOB
  chmod 0755 "$work/job.sh"
  as_user sbatch -Q --wait -o "$work/job.out" "$work/job.sh" || fail "batch job failed: $(cat "$work/job.out" 2>/dev/null)"
  cat "$work/job.out"
  grep -q "^spread on 2 nodes: .* 0 failures$" "$work/job.out" || fail "the 2-node batch job's checks failed"
  [[ $(grep -c "^spread: rank .* [1-9][0-9]* on other nodes; pool 1 local of 2 workers$" "$work/job.out") == 2 ]] ||
    fail "#SBATCH --offload on 2 nodes: the ranks did not use both nodes' executors"
  expect_no_executor_left
  check "a 2-node sbatch job with #SBATCH --offload offloads to both nodes"
}

# The lease partition `spare` (slurm/local-cluster.sh): a job there whose work runs as a step, as a
# lease's executors will, gives its cores back to a default-partition job that needs them. Slurm
# decides the preemption at once and sends the step SIGTERM; the step ends, the batch script ends
# after it, and the default job starts: nothing waits for GraceTime or is killed.
case_preempt_spare() {
  cluster_up
  [[ $(sinfo -h -p spare -o '%D') == "$nodes" ]] || fail "no partition spare over the $nodes nodes: $(sinfo -h -o '%P %D')"
  local cpus lease
  cpus=$(sinfo -h -n node1 -o %c | head -1)
  cat >"$work/lease.sh" <<JOB
#!/bin/bash
srun -n1 -c$cpus bash -c 'trap "echo step-term; exit 0" TERM; echo step-started; sleep 300 & wait'
echo script-end
JOB
  chmod 0755 "$work/lease.sh"
  lease=$(as_user sbatch --parsable -Q -p spare -w node1 -N1 -n1 -c"$cpus" -o "$work/lease.out" "$work/lease.sh") ||
    fail "sbatch -p spare failed"
  for _ in $(seq 300); do grep -qs '^step-started$' "$work/lease.out" && break; sleep 0.1; done
  grep -qs '^step-started$' "$work/lease.out" || fail "the spare job's step did not start within 30 s: $(squeue -h -j "$lease" -o '%T %r')"
  local start_ns elapsed_ms
  start_ns=$(date +%s%N)
  as_user srun -Q -p debug -w node1 -N1 -n1 -c"$cpus" hostname >"$work/normal.out" 2>"$work/normal.err" ||
    fail "the default-partition job failed: $(cat "$work/normal.err")"
  elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
  [[ $(cat "$work/normal.out") == node1 ]] || fail "the default-partition job did not run on node1: $(cat "$work/normal.out")"
  for _ in $(seq 100); do [[ -z $(squeue -h -j "$lease" -o %T 2>/dev/null) ]] && break; sleep 0.1; done
  [[ -z $(squeue -h -j "$lease" -o %T 2>/dev/null) ]] || fail "the spare job is still there: $(squeue -h -j "$lease" -o '%T %r')"
  grep -q '^step-term$' "$work/lease.out" || fail "the spare job's step got no SIGTERM: $(cat "$work/lease.out")"
  grep -q '^script-end$' "$work/lease.out" || fail "the spare job was killed before its script ended: $(cat "$work/lease.out")"
  check "a default-partition job took node1's $cpus CPUs from a spare job after $elapsed_ms ms: the step got SIGTERM, ended, and the job ended by itself"
}

# Leases (srun --offload-lease=N, docs/user-guide.md): a one-node job on node1 whose rank leases 2
# cores of the spare partition. $1: the checks' scenario; the rest: more srun options.
lease_step() {
  local scenario=$1
  shift
  as_user salloc -Q -w node1 -N1 -n1 -c2 srun --kill-on-bad-exit=1 --mpi=pmix --exact -c1 --offload=idle \
    --offload-poll=adaptive --offload-lease=2 "$@" "$programs/multinode_checks" "$scenario" \
    "$programs/libsidecore_test_functions.so"
}

# The test user's lease jobs as `sacct --completion` records them once they end, one per line:
# JobID|JobName|Partition|State|NodeList (the fields of jobcomp/filetxt).
lease_records() {
  sacct --completion -n -P -u "$user" -o JobID,JobName,Partition,State,NodeList 2>/dev/null | grep '|sidecore-lease\.' || true
}

# The lease job of consumer job $1 once it has ended (up to 30 s), as lease_records prints it.
ended_lease_of() {
  local record=""
  for _ in $(seq 300); do
    record=$(lease_records | grep "|sidecore-lease\.$1|" || true)
    [[ -n $record && -z $(squeue -h -u "$user" -n "sidecore-lease.$1" -o %i) ]] && break
    sleep 0.1
  done
  echo "$record"
}

# The consumer job of the last lease_step, from the lease job's name.
last_consumer_job() { lease_records | tail -1 | cut -d'|' -f2 | sed 's/^sidecore-lease\.//'; }

case_lease() {
  cluster_up "$lease_args"
  local start_ns
  start_ns=$(date +%s%N)
  lease_step lease --offload-stats >"$work/out" 2>"$work/err" ||
    fail "the leasing job failed: $(cat "$work/out" "$work/err")"
  cat "$work/out"
  grep -q "^lease on 1 nodes: .* 0 failures$" "$work/out" || fail "the leasing job's checks failed: $(cat "$work/err")"
  # --offload-stats: the rank says what the lease served for it.
  local served
  served=$(grep -E "^sidecore: rank 0: lease job [0-9]+ served [1-9][0-9]* task" "$work/err") ||
    fail "no lease report with --offload-stats: $(grep -v '^$' "$work/err" | tail -20)"
  echo "$served"
  local remote
  remote=$(sed -n "s/^lease: rank 0 .* \([0-9]*\) on the lease's nodes.*/\1/p" "$work/out")
  [[ $(sed -n 's/.* served \([0-9]*\) task.*/\1/p' <<<"$served") == "$remote" ]] ||
    fail "the rank counted $remote task(s) on the lease's nodes, but its report says: $served"
  local line first_s consumer record
  line=$(grep '^lease: rank 0 ' "$work/out")
  first_s=$(sed -n 's/.*lease_first_task=\([0-9.]*\).*/\1/p' <<<"$line")
  consumer=$(last_consumer_job)
  [[ -n $consumer ]] || fail "no lease job in sacct --completion: $(sacct --completion -n -P -u "$user" 2>&1 | tail -3)"
  record=$(ended_lease_of "$consumer")
  # JobID|JobName|Partition|State|NodeList: in the lease partition, cancelled when the step ended,
  # on nodes other than the job's.
  IFS='|' read -r _ _ partition state nodelist <<<"$record"
  [[ $partition == spare ]] || fail "the lease job ran in partition '$partition', not spare: $record"
  [[ $state == CANCELLED ]] || fail "the lease job is '$state' after its consumer ended, not CANCELLED: $record"
  [[ $nodelist != *node1* ]] || fail "the lease job ran on the consumer's node: $record"
  local host
  host=$(sed -n 's/.*(first on \([^)]*\)).*/\1/p' <<<"$line")
  [[ -n $host && $nodelist == *"${host#node}"* ]] || fail "the lease's tasks ran on $host, not on its nodes $nodelist"
  expect_no_executor_left
  local states
  states=$(nodes_settled)
  [[ $states == 'idle|none ' ]] || fail "nodes are '$states' (state|reason) after the lease, not all idle"
  check "a one-node job leased 2 cores of spare on $nodelist: its tasks ran there (first on $host," \
    "$(awk -v a="$first_s" -v b="$start_ns" 'BEGIN { printf "%.1f", a - b / 1e9 }') s after salloc);" \
    "the lease was cancelled when the step ended; nothing left, nodes idle"
}

case_lease_preempt() {
  cluster_up "$lease_args"
  rm -f "$work/lease-serving" "$work/preempted"
  # At info level the ranks say when a lease executor drains.
  SIDECORE_LOG_LEVEL=info lease_step lease_preempt --offload-stats >"$work/out" 2>"$work/err" &
  local step=$!
  for _ in $(seq 900); do
    [[ -e $work/lease-serving ]] && break
    kill -0 "$step" 2>/dev/null || break
    sleep 0.1
  done
  [[ -e $work/lease-serving ]] || fail "the lease did not serve within 90 s: $(cat "$work/out" "$work/err")"
  # A normal job that needs every CPU of the lease's nodes.
  local lease nodelist cpus start_ns waited_ms
  lease=$(squeue -h -u "$user" -p spare -o %i | head -1)
  nodelist=$(squeue -h -j "$lease" -o %N)
  cpus=$(sinfo -h -n node2 -o %c | head -1)
  start_ns=$(date +%s%N)
  as_user srun -Q -p debug -w "$nodelist" -N"$(scontrol show hostnames "$nodelist" | wc -l)" --ntasks-per-node=1 \
    -c"$cpus" hostname >"$work/normal.out" 2>"$work/normal.err" || fail "the normal job failed: $(cat "$work/normal.err")"
  waited_ms=$((($(date +%s%N) - start_ns) / 1000000))
  touch "$work/preempted"
  wait_ended "$step" 120
  [[ $ended == 0 ]] || fail "the leasing job failed across the preemption: $(cat "$work/out" "$work/err")"
  cat "$work/out"
  grep -q "^lease_preempt on 1 nodes: .* 0 failures$" "$work/out" || fail "tasks failed across the preemption"
  grep -q "^lease_preempt: rank 0 .* 0 failed;" "$work/out" || fail "a task failed across the preemption"
  grep -q "drains (it stops soon)" "$work/err" || fail "no lease executor drained: $(grep -v '^$' "$work/err" | tail -20)"
  grep -E "^sidecore: rank 0: lease job [0-9]+ served [1-9][0-9]* task" "$work/err" ||
    fail "no lease report with --offload-stats: $(grep -v '^$' "$work/err" | tail -20)"
  local record
  record=$(ended_lease_of "$(last_consumer_job)")
  # Its executors drained and its script ended after them, before GraceTime ran out: Slurm records
  # the job as COMPLETED then (PREEMPTED only when it has to cancel it).
  [[ $(cut -d'|' -f4 <<<"$record") == @(COMPLETED|PREEMPTED) ]] || fail "the lease job did not end: $record"
  [[ -z $(squeue -h -u "$user" -p spare -o %i) ]] || fail "a lease job is still there: $(squeue -u "$user")"
  expect_no_executor_left
  check "a normal job on $nodelist preempted the lease while tasks streamed; it waited $waited_ms ms for its" \
    "cores; no task failed, every result correct"
}

case_lease_refused() {
  # No lease partition configured: one clear message, and the step runs without a lease.
  cluster_up ""
  lease_step lease_none >"$work/out" 2>"$work/err" && true
  grep -q -- "--offload-lease=2: .*lease_partition.*; the step runs without a lease" "$work/err" ||
    fail "no clear message for a lease on a cluster without lease_partition: $(cat "$work/err")"
  [[ $(grep -c -- "--offload-lease" "$work/err") == 1 ]] || fail "more than one lease message: $(cat "$work/err")"
  grep -q "^lease_none on 1 nodes: .* 0 failures$" "$work/out" || fail "the step did not run without its lease: $(cat "$work/out" "$work/err")"
  [[ -z $(squeue -h -u "$user" -p spare -o %i) ]] || fail "a lease job was submitted anyway"
  # More than lease_max_cores.
  cluster_up "$lease_args"
  as_user salloc -Q -w node1 -N1 -n1 -c2 srun --mpi=pmix --exact -c1 --offload=idle --offload-lease=3 \
    "$programs/multinode_checks" lease_none "$programs/libsidecore_test_functions.so" >"$work/out" 2>"$work/err" && true
  grep -q -- "--offload-lease=3: the site lends at most 2 core(s) per step (lease_max_cores); the step runs without a lease" "$work/err" ||
    fail "no clear message for a lease over lease_max_cores: $(cat "$work/err")"
  grep -q "^lease_none on 1 nodes: .* 0 failures$" "$work/out" || fail "the step did not run without its lease: $(cat "$work/out" "$work/err")"
  expect_no_executor_left
  check "a lease without lease_partition, and one over lease_max_cores: one clear message each, the step ran"
}

# Two jobs of the same user, each with its own lease: a rank pointed at the other job's lease
# (SIDECORE_LEASE_JOB) has the wrong token there and runs nothing on it.
case_lease_tokens() {
  cluster_up "$lease_args"
  rm -f "$work/lease-serving" "$work/preempted"
  # The first job's lease serves (it streams until `preempted` appears; nothing preempts it).
  lease_step lease_stream >"$work/out1" 2>"$work/err1" &
  local first=$!
  for _ in $(seq 900); do
    [[ -e $work/lease-serving ]] && break
    kill -0 "$first" 2>/dev/null || break
    sleep 0.1
  done
  [[ -e $work/lease-serving ]] || fail "the first lease did not serve within 90 s: $(cat "$work/out1" "$work/err1")"
  local other
  other=$(squeue -h -u "$user" -p spare -o %i | head -1)
  # The second job (on node3: the first holds node1) follows the first job's lease instead of its own.
  as_user salloc -Q -w node3 -N1 -n1 -c2 srun --mpi=pmix --exact -c1 --offload=idle --offload-lease=2 \
    bash -c "SIDECORE_LEASE_JOB=$other exec $programs/multinode_checks lease_foreign $programs/libsidecore_test_functions.so" \
    >"$work/out2" 2>"$work/err2" && true
  touch "$work/preempted"
  wait_ended "$first" 120
  cat "$work/out2"
  grep -q "^lease_foreign on 1 nodes: .* 0 failures$" "$work/out2" ||
    fail "the second job used, or broke on, the first job's lease: $(cat "$work/out2" "$work/err2")"
  grep -q "did not join" "$work/err2" || fail "no word of the executors that refused it: $(cat "$work/err2")"
  [[ $ended == 0 ]] || fail "the first job failed: $(cat "$work/out1" "$work/err1")"
  expect_no_executor_left
  check "two jobs with a lease each: the second, pointed at the first's lease, was refused there and ran nothing on it"
}

# bench/lease-throughput.sh, shortened: the benchmark behind docs/performance.md's lease figures
# still runs, its tasks come back correct (the program checks each) from node1's own executor and
# from a lease's on node2, over tcp;ofi_rxm, and its holding jobs and lease are gone afterwards.
case_lease_bench() {
  cluster_up "$lease_args"
  local line
  line=$("$here/../../bench/lease-throughput.sh" --build "$build" --tasks 500 --rounds 1 2>"$work/err") ||
    fail "bench/lease-throughput.sh failed: $(tail -5 "$work/err")"
  echo "$line"
  [[ $line == *'"own_host":"node1"'*'"lease_host":"node2","lease_provider":"tcp;ofi_rxm"'* ]] ||
    fail "the lease's tasks did not run on node2 over tcp;ofi_rxm: $line"
  [[ $line == *'"reference":{"bench":"throughput","provider":"tcp;ofi_rxm"'* ]] || fail "no reference figure: $line"
  for _ in $(seq 100); do [[ -z $(squeue -h -o %i) ]] && break; sleep 0.1; done  # a cancelled job completing
  [[ -z $(squeue -h -o %i) ]] || fail "jobs left after the benchmark: $(squeue)"
  expect_no_executor_left
  check "bench/lease-throughput.sh: node1's own executor and a lease's on node2 measured; nothing left"
}

# The test user's entries in the /dev/shm of the mount namespace file $1 (each node has its own).
shm_in() { nsenter --mount="$1" find /dev/shm -maxdepth 1 -user "$user" -printf '%f\n' 2>/dev/null | sort; }

case_slurmd_restart() {
  cluster_up
  # A step on 2 nodes whose tasks wait, once their node's executor serves, for the test to let them end.
  local task='
card=""
case $SIDECORE_EXECUTOR in
  @*) p=${SIDECORE_EXECUTOR#@}; p=${p% timeout_ms=*}; p=${p% pid=*}
      for _ in $(seq 200); do [ -s "$p" ] && break; sleep 0.05; done; card=$(cat "$p" 2>/dev/null) ;;
esac
printf "node=%s\ncard=%s\n" "$(hostname)" "$card" >'"$work"'/started.$SLURM_NODEID.tmp
mv '"$work"'/started.$SLURM_NODEID.tmp '"$work"'/started.$SLURM_NODEID
while [ ! -e '"$work"'/go ] && [ -d '"$work"' ]; do sleep 0.2; done'
  # Each node's /dev/shm as the step will see it, held open (the restarted slurmd gets a new one).
  local node ns=() shm_before=() i
  for i in 1 2; do
    exec {fd}<"/proc/$(cat "$SIDECORE_SLURM_DIR/run/slurmd-node$i.pid")/ns/mnt"
    ns[i]=/proc/$$/fd/$fd
    shm_before[i]=$(shm_in "${ns[i]}")
  done
  as_user salloc -Q -w node1,node2 -N2 --ntasks-per-node=1 -c2 srun --exact -c1 --offload=idle --offload-poll=warm \
    bash -c "$task" >"$work/out" 2>"$work/err" &
  local alloc=$!
  for _ in $(seq 300); do
    [[ -s $work/started.0 && -s $work/started.1 ]] && break
    kill -0 "$alloc" 2>/dev/null || fail "the step ended before it started: $(cat "$work/out" "$work/err")"
    sleep 0.1
  done
  [[ -s $work/started.0 && -s $work/started.1 ]] || fail "the step did not start on both nodes within 30 s"
  local job
  job=$(squeue -h -u "$user" -o %i | head -1)
  for i in 0 1; do
    grep -q '^card=sidecore/1 ' "$work/started.$i" || fail "no executor serves on node $i: $(cat "$work/started.$i")"
  done
  # node2's slurmd dies and comes back while the step and its executors run.
  local slurmd
  slurmd=$(cat "$SIDECORE_SLURM_DIR/run/slurmd-node2.pid")
  kill -KILL "$slurmd"
  # Gone for good (not a zombie yet to be reaped), else `up` would take it for running.
  for _ in $(seq 100); do
    [[ $(ps -o stat= -p "$slurmd" 2>/dev/null) == "" ]] && break
    sleep 0.1
  done
  [[ $(ps -o stat= -p "$slurmd" 2>/dev/null) == "" ]] || fail "slurmd $slurmd still there 10 s after SIGKILL"
  cluster_up
  [[ $(cat "$SIDECORE_SLURM_DIR/run/slurmd-node2.pid") != "$slurmd" ]] || fail "node2's slurmd was not restarted"
  [[ $(pgrep -u "$user" -f "sidecore\.$job\.0\." | wc -l) -ge 4 ]] ||
    fail "the executors did not survive slurmd's restart (a supervisor and a server on each node)"
  touch "$work/go"
  wait_ended "$alloc" 60
  [[ $ended == 0 ]] || fail "the step failed across the restart of node2's slurmd: $(cat "$work/out" "$work/err")"
  expect_no_executor_left
  expect_no_card_folder "$job"
  for i in 1 2; do
    local left
    left=$(comm -13 <(echo "${shm_before[i]}") <(shm_in "${ns[i]}"))
    [[ -z $left ]] || fail "left in node$i's /dev/shm: $left"
  done
  local states
  states=$(nodes_settled)
  [[ $states == 'idle|none ' ]] || fail "nodes are '$states' (state|reason), not all idle"
  check "node2's slurmd killed and restarted under a 2-node step: the step ended normally; no executor, folder or shm left; nodes idle"
}

name=${1:?usage: $0 setup|teardown|spread|bounded|node_scope|lost|restart|sbatch|slurmd_restart|preempt_spare|lease|lease_preempt|lease_refused|lease_tokens|lease_bench}
"case_${name//-/_}"
