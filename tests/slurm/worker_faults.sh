# The slurm tier's checks that faults cost only their own worker under srun --offload (sourced by
# slurm_test.sh, which defines as_user, cluster_up, field, $work, $user, $build, $prefix and
# $here). The rank is tests/mpi/mpi_fault_checks.c, built against the installed Sidecore; the step
# leaves one idle core, so the executor has one worker (the two-worker cases run under sidecore-run
# in the mpi tier: this machine has two CPUs).

# Builds the fault checks against $prefix into $work/faults, with the test functions beside them.
build_fault_checks() {
  command -v mpicc >/dev/null || fail "mpicc missing (libopenmpi-dev)"
  mpicc -o "$work/faults" "$here/../mpi/mpi_fault_checks.c" -I"$here/../mpi" -I"$prefix/include" -L"$prefix/lib" \
    -Wl,-rpath,"$prefix/lib" -lsidecore_mpix -lsidecore || fail "cannot build mpi_fault_checks against $prefix"
  install -m 0644 "$build/tests/libsidecore_test_functions.so" "$work/libfunctions.so"
  chmod 0755 "$work/faults"
}

# Runs SCENARIO in a one-rank step with --offload and checks what a user would: the step succeeded,
# every check passed, and nothing is left: no executor, no file in the job's folder (a crash must
# not drop libpsm2's backtrace files there), a node that is not drained.
run_fault_step() {
  local scenario=$1
  as_user salloc -Q -n1 -c2 srun --mpi=pmix --exact -n1 -c1 --offload "$work/faults" "$scenario" "$work/libfunctions.so" \
    >"$work/out" 2>"$work/err" || fail "the $scenario step failed: $(cat "$work/out" "$work/err")"
  cat "$work/out"
  grep -q "^$scenario on rank 0 with 1 worker(s): [0-9]* checks, 0 failures$" "$work/out" ||
    fail "the $scenario checks did not all pass: $(cat "$work/out" "$work/err")"
  local dropped
  dropped=$(find "$work" -maxdepth 1 -newer "$work/faults" -type f ! -name out ! -name err ! -name libfunctions.so)
  [[ -z $dropped ]] || fail "the step left files in the job's folder: $dropped"
  expect_no_executor_left
  expect_node_idle
}

case_worker_crash() {
  cluster_up
  build_fault_checks
  run_fault_step crash
  grep -q 'starting a new one' "$work/err" || fail "the executor did not say it replaced its worker: $(cat "$work/err")"
  check "srun --offload: a crash, an abort and an exit() cost their worker's tasks only; the same pool is served again within 2 s"
}

case_worker_hang() {
  cluster_up
  build_fault_checks
  run_fault_step hang
  check "srun --offload: a hung function times out and its worker is replaced within 2 s"
}

case_site_task_bound() {
  cluster_up max_task_s=1
  build_fault_checks
  run_fault_step bound
  check "max_task_s=1: a task without a caller timeout gets TIMEOUT after 1 s and its worker is replaced"
}
