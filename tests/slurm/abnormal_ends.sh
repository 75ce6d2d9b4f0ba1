# The slurm tier's abnormal ends (sourced by slurm_test.sh, which defines as_user, cluster_up,
# field, $work, $user and $resolve_card): a step with an executor ended by scancel, by its own or
# its job's time limit, by two Ctrl-Cs to srun, or by the death of its slurmstepd. After each, what a
# user or admin would look for: no executor process, nothing of the executor's in /dev/shm, no card
# folder ($TMPDIR/sidecore.<job>.<step>.*, /tmp here), and the node idle with no reason (not drained).
# The executor is found by its process (its card path names the job and step), never through a
# task plugin's cgroup, so that the cases run the same under task/affinity and task/cgroup.

# Inside the step: once the executor serves, records who is who in $1, then waits to be ended.
held_task() {
  printf '%s\n' "$resolve_card"'
card=$(resolve_card)
executors=$(pgrep -u "$(id -u)" -f "sidecore\.$SLURM_JOB_ID\.$SLURM_STEP_ID\." | tr "\n" " ")
printf "job=%s\nstep=%s\ntask=%s\nexecutors=%s\ncard=%s\n" "$SLURM_JOB_ID" "$SLURM_STEP_ID" "$$" "$executors" "$card" >'"$1"'.tmp
mv '"$1"'.tmp '"$1"'
exec sleep 300'
}

shm_of_user() { find /dev/shm -maxdepth 1 -user "$user" -printf '%f\n' 2>/dev/null | sort; }

# Starts `salloc -n1 -c2 [SALLOC_ARGS] srun --exact -n1 -c1 --offload [SRUN_ARGS] <held task>` in the
# background (arguments: SALLOC_ARGS -- SRUN_ARGS), and returns once its executor serves. Sets
# $alloc (the background salloc), $job, $step and $shm_before; the step's output goes to
# $work/out and $work/err.
start_held_step() {
  local salloc_args=() srun_args=()
  while (($#)) && [[ $1 != -- ]]; do salloc_args+=("$1"); shift; done
  (($#)) && shift
  srun_args=("$@")
  shm_before=$(shm_of_user)
  rm -f "$work/started"
  as_user salloc -Q -n1 -c2 "${salloc_args[@]}" srun --exact -n1 -c1 --offload "${srun_args[@]}" \
    bash -c "$(held_task "$work/started")" >"$work/out" 2>"$work/err" &
  alloc=$!
  for _ in $(seq 300); do
    [[ -s $work/started ]] && break
    kill -0 "$alloc" 2>/dev/null || fail "the step ended before it started: $(cat "$work/out" "$work/err")"
    sleep 0.1
  done
  [[ -s $work/started ]] || fail "the step did not start within 30 s: $(cat "$work/err")"
  cat "$work/started"
  job=$(field job "$work/started")
  step=$(field step "$work/started")
  # A case that fails leaves no job behind to block the next one (nor its task, which a killed
  # slurmstepd leaves orphaned).
  # (Each command may fail harmlessly: under set -e a failing one would become the script's status.)
  trap 'kill -KILL "$(field task "$work/started")" 2>/dev/null || true; as_user scancel "$job" 2>/dev/null || true; rm -rf "$work"' EXIT
  [[ $(field card "$work/started") == sidecore/1\ * ]] || fail "the step's executor does not serve: $(cat "$work/started")"
  [[ -n $(field executors "$work/started") ]] || fail "no executor process found from the task"
  [[ -n $(card_folders "$job.$step") ]] || fail "no card folder /tmp/sidecore.$job.$step.*"
}

# Nothing left behind by job $1 (its executors, shared memory, card folders), and the node idle
# with no reason. $shm_before: the test user's /dev/shm entries before the step.
expect_clean_end() {
  local job=$1 shm
  expect_no_executor_left
  expect_no_card_folder "$job"
  shm=$(comm -13 <(echo "$shm_before") <(shm_of_user))
  [[ -z $shm ]] || fail "left in /dev/shm: $shm"
  expect_node_idle
}

# The srun of job $1, found through the environment salloc gives it.
srun_of_job() {
  local pid
  for pid in $(pgrep -u "$user" -x srun); do
    { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qx "SLURM_JOB_ID=$1" && { echo "$pid"; return 0; }
  done
  return 1
}

case_scancel() {
  cluster_up
  # The step alone: the allocation lives on, its step's executor and folder do not.
  start_held_step --
  as_user scancel "$job.$step"
  wait_ended "$alloc" 30
  expect_clean_end "$job"
  check "scancel $job.$step: executor gone, no folder, no shm, node idle"
  # The whole job.
  start_held_step --
  as_user scancel "$job"
  wait_ended "$alloc" 30
  expect_clean_end "$job"
  check "scancel $job: executor gone, no folder, no shm, node idle"
}

case_step_time_limit() {
  cluster_up
  # One minute is the shortest limit; slurmctld checks limits every 30 s.
  start_held_step -- -t 1
  wait_ended "$alloc" 150
  grep -qi 'time limit' "$work/err" || fail "the step did not end by its time limit: $(cat "$work/err")"
  expect_clean_end "$job"
  check "srun -t 1: the step ended at its time limit ($(grep -i 'time limit' "$work/err" | head -1)); nothing left"
}

case_job_time_limit() {
  cluster_up
  start_held_step -t 1 --
  wait_ended "$alloc" 150
  grep -qi 'time limit' "$work/err" || fail "the job did not end by its time limit: $(cat "$work/err")"
  expect_clean_end "$job"
  check "salloc -t 1: the job ended at its time limit ($(grep -i 'time limit' "$work/err" | head -1)); nothing left"
}

case_srun_interrupted() {
  cluster_up
  start_held_step --
  local srun_pid
  srun_pid=$(srun_of_job "$job") || fail "no srun found for job $job"
  # Ctrl-C twice within a second: srun aborts the step.
  kill -INT "$srun_pid"
  sleep 0.3
  kill -INT "$srun_pid"
  wait_ended "$alloc" 30
  [[ $ended != 0 ]] || fail "srun exited 0 after two Ctrl-Cs"
  expect_clean_end "$job"
  check "two SIGINTs to srun within a second: step aborted (status $ended); nothing left"
}

case_slurmstepd_killed() {
  cluster_up
  # With --offload-stats the executor writes its summary to the step's stderr as it stops, which
  # after slurmstepd's death is a pipe nobody reads.
  start_held_step -- --offload-stats
  local stepd task
  # The task's parent; other clusters on this machine may have a job with the same id.
  task=$(field task "$work/started")
  stepd=$(ps -o ppid= -p "$task" | tr -d ' ')
  [[ $(cat "/proc/$stepd/cmdline" 2>/dev/null | tr '\0' ' ') == "slurmstepd: [$job.$step]"* ]] ||
    fail "the task's parent $stepd is not slurmstepd: [$job.$step]"
  kill -KILL "$stepd"
  # With no slurmstepd left, no plugin callback runs: the executor stops by itself.
  expect_no_executor_left
  # The task, orphaned too, is the test's own `sleep`: Slurm cannot reach it any more without its
  # slurmstepd, so the test ends it, then the job.
  kill -KILL "$task" 2>/dev/null || true
  as_user scancel "$job" || true
  wait_ended "$alloc" 60
  expect_clean_end "$job"
  check "slurmstepd of $job.$step killed: executor gone by itself, no folder, no shm, node idle"
}
