#!/usr/bin/env bash
# The slurm tier: real srun/salloc/sbatch jobs, run by a non-root test user, against the cluster of
# slurm/local-cluster.sh with spank_sidecore.so loaded. One case per invocation:
#   tests/slurm/slurm_test.sh setup | teardown | <case>
# Environment: SIDECORE_BUILD_DIR (the build to test), SIDECORE_TEST_EXECUTOR (optional: another
# sidecore-executor), SIDECORE_TEST_USER (default sidecore-test), SIDECORE_SLURM_MODE (affinity, the
# default: task/affinity + proctrack/linuxproc; cgroup: task/cgroup + proctrack/cgroup with
# ConstrainCores=yes, as production sites run: every case runs under both).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster=$here/../../slurm/local-cluster.sh
user=${SIDECORE_TEST_USER:-sidecore-test}
build=${SIDECORE_BUILD_DIR:?SIDECORE_BUILD_DIR must name the build folder}
eval "$("$cluster" env)"
# shellcheck source=SCRIPTDIR/job_checks.sh
source "$here/job_checks.sh"
# setup installs the build here (install_build); beside the cluster's folder, so that two clusters
# (SIDECORE_SLURM_DIR) do not share one.
prefix=$SIDECORE_SLURM_DIR-test-prefix

mode=${SIDECORE_SLURM_MODE:-affinity}
[[ $mode == affinity || $mode == cgroup ]] || fail "SIDECORE_SLURM_MODE is '$mode', not affinity or cgroup"

# Brings the cluster up with these admin arguments (restarts slurmd only if they changed), in the
# mode of this run (cluster_up_in MODE ... for a case that needs one).
cluster_up() { cluster_up_in "$mode" "$@"; }
cluster_up_in() {
  local in_mode=$1
  shift
  local args=(up --prefix "$prefix" --plugin-args "$*")
  [[ $in_mode == cgroup ]] && args+=(--cgroup)
  [[ -z ${SIDECORE_TEST_EXECUTOR-} ]] || args+=(--executor "$SIDECORE_TEST_EXECUTOR")
  "$cluster" "${args[@]}" >/dev/null
}

# Runs a command as the test user in a folder of its own, with stdout and stderr kept apart.
work=$(new_work_dir sidecore-slurm-test)
trap 'rm -rf "$work"' EXIT
as_user() {
  (cd "$work" && runuser -u "$user" -- env SLURM_CONF="$SLURM_CONF" PATH=/usr/bin:/bin "$@")
}

# Inside a task: what SIDECORE_EXECUTOR leads to. The plugin (start=async) hands tasks
# "@PATH pid=N timeout_ms=N", and the card appears at PATH once the executor serves; this waits
# for it as the client library does (up to 10 s), and prints the card, or the value when it is one.
resolve_card='
resolve_card() {
  case $SIDECORE_EXECUTOR in
    @*) p=${SIDECORE_EXECUTOR#@}; p=${p% timeout_ms=*}; p=${p% pid=*}
        for _ in $(seq 200); do [ -s "$p" ] && break; sleep 0.05; done
        cat "$p" 2>/dev/null ;;
    *) printf "%s\n" "${SIDECORE_EXECUTOR:-none}" ;;
  esac
}'

# Inside the step: prints what the task sees and what it can find out about its node's executor.
probe="$resolve_card"'
echo "cores=$SIDECORE_CORES"
echo "token=$SIDECORE_TOKEN"
echo "reference=$SIDECORE_EXECUTOR"
echo "card=$(resolve_card)"
echo "task_cpus=$(grep Cpus_allowed_list /proc/self/status | cut -f2)"
pid=$(pgrep -u "$(id -u)" -f "sidecore\.$SLURM_JOB_ID\.$SLURM_STEP_ID\." | head -1)
if [ -n "$pid" ]; then
  echo "exec_pid=$pid"
  echo "exec_sid=$(ps -o sid= -p $pid | tr -d " ")"
  echo "exec_user=$(ps -o user= -p $pid)"
  echo "exec_uids=$(grep ^Uid /proc/$pid/status | cut -f2-)"
  echo "exec_cpus=$(grep Cpus_allowed_list /proc/$pid/status | cut -f2)"
fi
'
field() { sed -n "s/^$1=//p" "$2" | head -1; }

case_setup() {
  [[ $(id -u) -eq 0 ]] || fail "the slurm tier runs as root (it starts slurmd)"
  ensure_test_user
  record_cgroup_baseline
  install_build "$build" "$prefix"
  check "installed $build into $prefix"
  local executor=${SIDECORE_TEST_EXECUTOR:-$prefix/bin/sidecore-executor}
  runuser -u "$user" -- test -x "$executor" || fail "$user cannot run $executor"
  cluster_up
  check "cluster up: $(sinfo -h -o '%P %T %C' | tr '\n' ' ')"
}

case_teardown() {
  # The node's state once the last job has finished completing (up to a minute), checked after
  # the cluster is down so that a failure does not leave the daemons running.
  local state
  for _ in $(seq 600); do
    state=$(sinfo -h -n localhost -o '%T|%E' | head -1)
    [[ $state == 'idle|none' ]] && break
    sleep 0.1
  done
  local left_ok=1
  (expect_no_executor_left && expect_no_cgroup_left) || left_ok=0
  "$cluster" down
  rm -rf "$prefix"
  ((left_ok)) || fail "something outlived the tier (see above)"
  [[ $state == 'idle|none' ]] || fail "the node is '$state' (state|reason) at the end, not idle"
  check "node idle, not drained; no executor left"
}

case_help() {
  cluster_up
  for client in srun sbatch salloc; do
    local help
    help=$($client --help 2>&1)
    for flag in '--offload=N|idle' '--offload-poll=hot|warm|adaptive' '--offload-lib=PATH' '--offload-stats'; do
      grep -qF -- "$flag" <<<"$help" || fail "$client --help does not list $flag"
    done
  done
  check "srun, sbatch and salloc --help list the four flags"
}

case_idle_cores() {
  cluster_up
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload --offload-stats bash -c "$probe" >"$work/out" 2>"$work/err" ||
    fail "step failed: $(cat "$work/err")"
  cat "$work/out"
  local uid
  uid=$(id -u "$user")
  [[ $(field cores "$work/out") == 1 ]] || fail "SIDECORE_CORES is not 1"
  [[ $(field token "$work/out") =~ ^[0-9a-f]{32}$ ]] || fail "SIDECORE_TOKEN is not a fresh 32-hex token"
  [[ $(field reference "$work/out") == @* ]] || fail "SIDECORE_EXECUTOR is not a card reference (start=async)"
  [[ $(field card "$work/out") == sidecore/1\ * ]] || fail "SIDECORE_EXECUTOR does not lead to a card"
  [[ $(field task_cpus "$work/out") == 0 ]] || fail "the task is not on CPU 0"
  [[ -n $(field exec_pid "$work/out") ]] || fail "no executor process found from the task"
  [[ $(field exec_uids "$work/out") == "$uid"$'\t'"$uid"$'\t'"$uid"$'\t'"$uid" ]] || fail "executor not fully dropped to $user"
  [[ $(field exec_cpus "$work/out") == 1 ]] || fail "executor not pinned to the idle CPU 1"
  [[ $(field exec_sid "$work/out") == "$(field exec_pid "$work/out")" ]] || fail "executor not in its own session"
  # The summary is printed when the executor stops on SIGTERM: it got the plugin's graceful stop.
  grep -q "sidecore: executor .* tasks=0" "$work/err" || fail "--offload-stats summary missing from the step's stderr: $(cat "$work/err")"
  expect_no_executor_left
  check "executor as $user on exactly the idle CPU, variables in the task, summary on stderr, gone after the step"

  # A second step gets a different token.
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c "$probe" >"$work/out2" 2>"$work/err2" || fail "second step failed"
  [[ $(field token "$work/out2") != "$(field token "$work/out")" ]] || fail "two steps got the same token"
  check "each step gets a fresh token"
}

case_sbatch() {
  cluster_up
  cat >"$work/job.sh" <<'JOB'
#!/bin/bash
#SBATCH -n1 -c2
#SBATCH --offload
echo "batch_step_card=${SIDECORE_EXECUTOR:-none}"
srun --exact -n1 -c1 bash -c "$1"'; echo "step_cores=$SIDECORE_CORES"; echo "step_card=$(resolve_card)"'
JOB
  chmod 0755 "$work/job.sh"
  as_user sbatch -Q --wait -o "$work/job.out" "$work/job.sh" "$resolve_card" || fail "batch job failed: $(cat "$work/job.out" 2>/dev/null)"
  cat "$work/job.out"
  grep -q '^batch_step_card=none$' "$work/job.out" || fail "the batch step got an executor"
  grep -q '^step_cores=1$' "$work/job.out" || fail "#SBATCH --offload did not reach the step"
  grep -q '^step_card=sidecore/1 ' "$work/job.out" || fail "the step has no card"
  expect_no_executor_left
  check "#SBATCH --offload reaches the steps, not the batch step"
}

case_no_idle() {
  cluster_up
  as_user salloc -Q -n1 -c2 srun -n1 -c2 --offload bash -c 'echo "card=${SIDECORE_EXECUTOR:-none}"' >"$work/out" 2>"$work/err" ||
    fail "a step without idle cores failed: $(cat "$work/err")"
  grep -q '^card=none$' "$work/out" || fail "a step without idle cores got an executor"
  grep -q "no executor on this node: the step's tasks use all 2 of the job's cores" "$work/err" ||
    fail "no message saying why: $(cat "$work/err")"
  check "no idle cores: the step runs and says why ($(head -1 "$work/err"))"
}

case_refused() {
  cluster_up
  local flag
  for flag in --offload=abc --offload=-1 --offload-poll=lukewarm; do
    rm -f "$work/ran"
    if as_user srun -n1 "$flag" touch "$work/ran" 2>"$work/err"; then fail "srun accepted $flag"; fi
    grep -qF -- "$flag" "$work/err" || fail "srun's message does not name $flag: $(cat "$work/err")"
    [[ ! -e $work/ran ]] || fail "the job ran despite $flag"
    if as_user sbatch -Q "$flag" --wrap "touch $work/ran" 2>"$work/err"; then fail "sbatch accepted $flag"; fi
    grep -qF -- "$flag" "$work/err" || fail "sbatch's message does not name $flag"
    check "$flag refused by srun and sbatch: $(grep -F -- "$flag" "$work/err" | head -1)"
  done
  [[ -z $(squeue -h) ]] || fail "a job was queued: $(squeue -h)"
  [[ ! -e $work/ran ]] || fail "something ran"
}

case_admin_policy() {
  cluster_up default=idle
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 bash -c 'echo "cores=${SIDECORE_CORES:-none}"' >"$work/out" 2>"$work/err" || fail "step failed"
  grep -q '^cores=1$' "$work/out" || fail "default=idle did not start an executor without the flag"
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload=0 bash -c 'echo "cores=${SIDECORE_CORES:-none}"' >"$work/out" 2>"$work/err" || fail "step failed"
  grep -q '^cores=none$' "$work/out" || fail "--offload=0 did not override default=idle"
  check "default=idle honoured, and --offload=0 overrides it"

  cluster_up default=off max_cores=0
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 bash -c 'echo "cores=${SIDECORE_CORES:-none}"' >"$work/out" 2>"$work/err" || fail "step failed"
  grep -q '^cores=none$' "$work/out" || fail "default=off started an executor"
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c 'echo "cores=${SIDECORE_CORES:-none}"' >"$work/out" 2>"$work/err" || fail "step failed"
  grep -q '^cores=none$' "$work/out" || fail "max_cores=0 did not stop the executor"
  grep -q 'max_cores=0' "$work/err" || fail "no message naming max_cores=0: $(cat "$work/err")"
  check "default=off and max_cores=0 honoured"

  cluster_up max_cores=1 allow_partitions=other bogus_key=1
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c 'echo "cores=${SIDECORE_CORES:-none}"' >"$work/out" 2>"$work/err" || fail "step failed"
  grep -q '^cores=none$' "$work/out" || fail "allow_partitions=other let the debug partition start one"
  as_user salloc -Q -p other -n1 -c2 srun --exact -n1 -c1 --offload bash -c 'echo "cores=${SIDECORE_CORES:-none}"' >"$work/out" 2>"$work/err" || fail "step failed"
  grep -q '^cores=1$' "$work/out" || fail "max_cores=1 in an allowed partition did not start one"
  grep -q "unknown argument 'bogus_key'" "$SIDECORE_SLURM_DIR"/log/slurmd-localhost.log || fail "unknown key not in slurmd's log"
  check "max_cores=1 and allow_partitions honoured; an unknown key is an error in the log, not a crash"

  cluster_up start=wait
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c 'echo "card=${SIDECORE_EXECUTOR:-none}"' >"$work/out" 2>"$work/err" || fail "step failed"
  grep -q '^card=sidecore/1 ' "$work/out" || fail "start=wait did not hand the task the card itself: $(cat "$work/out")"
  check "start=wait: the task starts with the card itself"
  cluster_up
}

case_killed_executor() {
  cluster_up
  # Once it serves (its card is there), the executor the plugin started is killed outright.
  local script="$resolve_card"'
card=$(resolve_card)
case $card in sidecore/1*) ;; *) echo "no card: $card"; exit 1 ;; esac
pid=${SIDECORE_EXECUTOR#* pid=}; pid=${pid%% *}
kill -9 "$pid"; sleep 0.5; echo survived'
  local shm_before
  shm_before=$(find /dev/shm -maxdepth 1 -user "$user" | wc -l)
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c "$script" >"$work/out" 2>"$work/err" ||
    fail "the step failed after its executor was killed: $(cat "$work/out" "$work/err")"
  grep -q '^survived$' "$work/out" || fail "the task did not finish: $(cat "$work/out")"
  expect_no_executor_left
  # It could not remove its doorbell and shm regions; the plugin did, at the end of the step.
  [[ $(find /dev/shm -maxdepth 1 -user "$user" | wc -l) == "$shm_before" ]] ||
    fail "the killed executor's shared memory is left in /dev/shm: $(find /dev/shm -maxdepth 1 -user "$user" -newer "$work/out")"
  expect_node_idle
  check "an executor killed mid-step does not fail the step"
}

case_mpi() {
  cluster_up
  command -v mpicc >/dev/null || fail "mpicc missing (libopenmpi-dev)"
  # A rank that offloads through <mpix_offload.h>, built against the installed Sidecore, integrating
  # sin(x)^2 over [0, 100] in 50 offloaded tasks and checking the answer.
  cat >"$work/integrate.c" <<'C'
#include <math.h>
#include <mpi.h>
#include <mpix_offload.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
struct args { double from, to; uint64_t steps; };
int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank, size, local = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPIX_Offload_pool pool;
  MPIX_Offload_function fn;
  MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool);
  MPIX_Offload_pool_size(pool, &local, NULL);
  int rc = MPIX_Offload_function_lookup(pool, argv[1], "integrate", &fn);
  enum { kTasks = 50 };
  struct args a[kTasks];
  double part[kTasks], sum = 0;
  MPI_Request requests[kTasks];
  for (int t = 0; t < kTasks && rc == MPI_SUCCESS; ++t) {
    a[t].from = 2.0 * t; a[t].to = 2.0 * (t + 1); a[t].steps = 20000;
    rc = MPIX_Offload_submit(fn, &a[t], sizeof a[t], &part[t], sizeof part[t], &requests[t]);
  }
  if (rc == MPI_SUCCESS) rc = MPI_Waitall(kTasks, requests, MPI_STATUSES_IGNORE);
  for (int t = 0; t < kTasks; ++t) sum += part[t];
  const double exact = 50.0 - sin(200.0) / 4;
  const int correct = rc == MPI_SUCCESS && fabs(sum - exact) < 1e-6;
  if (rank == 0) printf("ranks=%d workers=%d cores=%s correct=%d\n", size, local, getenv("SIDECORE_CORES"), correct);
  MPIX_Offload_pool_free(&pool);
  MPI_Finalize();
  return correct ? 0 : 1;
}
C
  mpicc -o "$work/integrate" "$work/integrate.c" -I"$prefix/include" -L"$prefix/lib" -Wl,-rpath,"$prefix/lib" \
    -lsidecore_mpix -lsidecore -lm || fail "cannot build the MPI program against $prefix"
  install -m 0644 "$build/examples/libsidecore_examples.so" "$work/libfunctions.so"
  chmod 0755 "$work/integrate"
  as_user salloc -Q -n2 srun --mpi=pmix --exact -n1 --offload=idle "$work/integrate" "$work/libfunctions.so" \
    >"$work/out" 2>"$work/err" || fail "MPI step failed: $(cat "$work/out" "$work/err")"
  cat "$work/out"
  grep -q '^ranks=1 workers=1 cores=1 correct=1$' "$work/out" ||
    fail "the MPI rank did not offload to its executor and get the right answer"
  expect_no_executor_left
  check "srun --mpi=pmix --offload=idle: the rank offloaded 50 tasks and got the right integral"
}

# The executor's cgroup under task/cgroup: a cpuset leaf of the job's on exactly the idle cores,
# which the kernel holds it to; the step's freezer and cpuacct cgroups (proctrack kills it with the
# step, the job is charged for its CPU time); and no leaf left once the step is over.
case_cgroup_placement() {
  cluster_up_in cgroup
  local script="$resolve_card"'
card=$(resolve_card)
# The worker process (wpids=: one idle core, one worker); its parent is the supervisor (pid=).
pid=${card#* wpids=}; pid=${pid%% *}; pid=${pid%%,*}
[ -n "$pid" ] && [ -d /proc/$pid ] || { echo "no executor: $card"; exit 1; }
supervisor=$(ps -o ppid= -p $pid | tr -d " ")
echo "exec_cpuset=$(sed -n "s/^[0-9]*:cpuset://p" /proc/$pid/cgroup)"
echo "exec_freezer=$(sed -n "s/^[0-9]*:freezer://p" /proc/$pid/cgroup)"
echo "exec_cpuacct=$(sed -n "s/^[0-9]*:cpu,cpuacct://p;s/^[0-9]*:cpuacct://p" /proc/$pid/cgroup)"
echo "task_cpuset=$(sed -n "s/^[0-9]*:cpuset://p" /proc/self/cgroup)"
echo "exec_cpus=$(grep Cpus_allowed_list /proc/$pid/status | cut -f2)"
# The kernel keeps it off the step'"'"'s core even if it asks.
if taskset -p -c 0 $pid >/dev/null 2>&1; then echo "escaped=yes"; else echo "escaped=no"; fi
sleep 2
# Its CPU time so far (both processes), and what the job'"'"'s cpuacct cgroup counts.
ticks=0
for p in $pid $supervisor; do set -- $(cut -d")" -f2 /proc/$p/stat); ticks=$((ticks + ${12} + ${13})); done
echo "exec_cpu_ns=$((ticks * 1000000000 / $(getconf CLK_TCK)))"
acct=$(sed -n "s/^[0-9]*:cpu,cpuacct://p;s/^[0-9]*:cpuacct://p" /proc/$pid/cgroup)
job=${acct%/step_*}
echo "job_cpu_ns=$(cat /sys/fs/cgroup/cpuacct$job/cpuacct.usage 2>/dev/null || cat /sys/fs/cgroup/cpu,cpuacct$job/cpuacct.usage)"'
  # The step, then (still inside the allocation, before the job's epilog could clean up) whether
  # the plugin removed the executor's leaf when the step ended.
  local after='srun --exact -n1 -c1 --offload --offload-poll=hot bash -c "$1" || exit 1
if ls -d /sys/fs/cgroup/cpuset/slurm*/uid_*/job_$SLURM_JOB_ID/sidecore_step_* >/dev/null 2>&1; then
  echo "leaf_after_step=yes"; else echo "leaf_after_step=no"; fi'
  as_user salloc -Q -n1 -c2 bash -c "$after" step "$script" >"$work/out" 2>"$work/err" ||
    fail "step failed: $(cat "$work/out" "$work/err")"
  cat "$work/out"
  local job_path
  job_path=$(field task_cpuset "$work/out")
  job_path=${job_path%/step_*}
  [[ $job_path =~ /job_[0-9]+$ ]] || fail "the task is not in a job's cpuset cgroup: $(field task_cpuset "$work/out")"
  [[ $(field exec_cpuset "$work/out") == "$job_path/sidecore_step_0" ]] ||
    fail "the executor's cpuset is '$(field exec_cpuset "$work/out")', not the leaf $job_path/sidecore_step_0"
  [[ $(field exec_cpus "$work/out") == 1 ]] || fail "the executor is not on the idle CPU 1"
  [[ $(field escaped "$work/out") == no ]] || fail "the executor could move itself onto the step's CPU 0"
  [[ $(field exec_freezer "$work/out") == "$job_path/step_0" ]] ||
    fail "the executor is not in the step's freezer cgroup (proctrack would not kill it): $(field exec_freezer "$work/out")"
  [[ $(field exec_cpuacct "$work/out") == "$job_path/step_0" ]] ||
    fail "the executor is not in the step's cpuacct cgroup: $(field exec_cpuacct "$work/out")"
  local exec_ns job_ns
  exec_ns=$(field exec_cpu_ns "$work/out")
  job_ns=$(field job_cpu_ns "$work/out")
  ((exec_ns > 100000000)) || fail "a hot executor used only ${exec_ns} ns of CPU in 2 s"
  ((job_ns * 10 >= exec_ns * 9)) || fail "the job's cpuacct counts $job_ns ns, less than the executor's own $exec_ns ns"
  [[ $(field leaf_after_step "$work/out") == no ]] || fail "the executor's leaf was left after its step ended"
  expect_no_executor_left
  expect_no_cgroup_left
  check "cgroup v1: executor in $job_path/sidecore_step_0 on the idle CPU only, in the step's freezer and cpuacct cgroups (job charged $job_ns ns >= executor's $exec_ns ns), leaf gone after the step"
  cluster_up
}

# A cgroup= that the node or the task plugin cannot honour: one error in slurmd's log when it
# starts, and steps run without executors, saying why.
case_cgroup_refused() {
  local log=$SIDECORE_SLURM_DIR/log/slurmd-localhost.log lines_before
  lines_before=$(wc -l <"$log")
  cluster_up_in cgroup cgroup=v2
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c 'echo "card=${SIDECORE_EXECUTOR:-none}"' >"$work/out" 2>"$work/err" ||
    fail "the step failed: $(cat "$work/err")"
  grep -q '^card=none$' "$work/out" || fail "cgroup=v2 on a cgroup v1 node started an executor"
  grep -q "cgroup=v2 in plugstack.conf, but the step is not in a Slurm job's cgroup v2" "$work/err" ||
    fail "the step does not say why it has no executor: $(cat "$work/err")"
  # This node mounts an empty v2 hierarchy: slurmd says so once, when it starts with that line.
  local messages
  messages=$(tail -n +"$((lines_before + 1))" "$log" | grep -c "sidecore: plugstack.conf: cgroup=v2, but this node's cgroup v2 hierarchy .* has no cpuset controller" || true)
  [[ $messages == 1 ]] || fail "slurmd's log has $messages messages about cgroup=v2, not one: $(tail -n +"$((lines_before + 1))" "$log" | grep sidecore)"
  check "cgroup=v2 on a v1 node: step ran without an executor ($(grep -o 'no executor on this node: .*' "$work/err" | head -1))"

  cluster_up_in affinity cgroup=v1
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload bash -c 'echo "card=${SIDECORE_EXECUTOR:-none}"' >"$work/out" 2>"$work/err" ||
    fail "the step failed: $(cat "$work/err")"
  grep -q '^card=none$' "$work/out" || fail "cgroup=v1 under task/affinity started an executor"
  grep -q "is TaskPlugin=task/cgroup set" "$work/err" || fail "no hint at task/cgroup: $(cat "$work/err")"
  check "cgroup=v1 under task/affinity: step ran without an executor, and the message names task/cgroup"
  expect_node_idle
  cluster_up
}

# More cases, in files of their own.
# shellcheck source=SCRIPTDIR/abnormal_ends.sh
source "$here/abnormal_ends.sh"
# shellcheck source=SCRIPTDIR/flags_in_steps.sh
source "$here/flags_in_steps.sh"
# shellcheck source=SCRIPTDIR/worker_faults.sh
source "$here/worker_faults.sh"

name=${1:?usage: $0 setup|teardown|<case>}
"case_${name//-/_}"
