# The slurm tier's checks that faults cost only their own worker under srun --offload (sourced by
# slurm_test.sh, which defines as_user, cluster_up, field, $work, $user, $build, $prefix and
# $here). The task is tests/mpi/mpi_fault_checks.c or its C++ twin, built against the installed
# Sidecore. The step leaves one idle core, so the executor has one worker: the two-worker cases run
# under sidecore-run in the mpi and integration tiers (this machine has two CPUs).

# Builds the fault checks against $prefix into $work: faults (MPIX, tests/mpi/mpi_fault_checks.c)
# and client_faults (the C++ client, tests/integration/client_fault_checks.cpp), with the test
# functions beside them.
build_fault_checks() {
  command -v mpicc >/dev/null || fail "mpicc missing (libopenmpi-dev)"
  mpicc -o "$work/faults" "$here/../mpi/mpi_fault_checks.c" -I"$here/../mpi" -I"$prefix/include" -L"$prefix/lib" \
    -Wl,-rpath,"$prefix/lib" -lsidecore_mpix -lsidecore || fail "cannot build mpi_fault_checks against $prefix"
  g++ -std=c++20 -o "$work/client_faults" "$here/../integration/client_fault_checks.cpp" -I"$prefix/include" \
    -L"$prefix/lib" -Wl,-rpath,"$prefix/lib" -lsidecore || fail "cannot build client_fault_checks against $prefix"
  install -m 0644 "$build/tests/libsidecore_test_functions.so" "$work/libfunctions.so"
  chmod 0755 "$work/faults" "$work/client_faults"
  touch "$work/built"
}

# Runs SCENARIO in a one-task step with --offload, through MPIX and through the C++ client, and
# checks what a user would: the step succeeded, every check passed, and nothing is left: no
# executor, no file in the job's folder (a crash must not drop libpsm2's backtrace files there), a
# node that is not drained.
run_fault_step() {
  local scenario=$1
  as_user salloc -Q -n1 -c2 srun --mpi=pmix --exact -n1 -c1 --offload "$work/faults" "$scenario" "$work/libfunctions.so" \
    >"$work/out" 2>"$work/err" || fail "the MPIX $scenario step failed: $(cat "$work/out" "$work/err")"
  cat "$work/out"
  grep -q "^$scenario on rank 0 with 1 worker(s): [0-9]* checks, 0 failures$" "$work/out" ||
    fail "the MPIX $scenario checks did not all pass: $(cat "$work/out" "$work/err")"
  as_user salloc -Q -n1 -c2 srun --exact -n1 -c1 --offload "$work/client_faults" "$scenario" "$work/libfunctions.so" \
    >"$work/out.cpp" 2>"$work/err.cpp" || fail "the C++ $scenario step failed: $(cat "$work/out.cpp" "$work/err.cpp")"
  cat "$work/out.cpp"
  grep -q "^$scenario with 1 worker(s): [0-9]* checks, 0 failures$" "$work/out.cpp" ||
    fail "the C++ client's $scenario checks did not all pass: $(cat "$work/out.cpp" "$work/err.cpp")"
  local dropped
  dropped=$(find "$work" -maxdepth 1 -newer "$work/built" -type f ! -name 'out*' ! -name 'err*')
  [[ -z $dropped ]] || fail "the steps left files in the job's folder: $dropped"
  expect_no_executor_left
  expect_node_idle
}

case_worker_crash() {
  cluster_up
  build_fault_checks
  run_fault_step crash
  grep -q 'starting a new one' "$work/err" "$work/err.cpp" ||
    fail "the executor did not say it replaced its worker: $(cat "$work/err" "$work/err.cpp")"
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

case_worker_limit() {
  cluster_up
  build_fault_checks
  run_fault_step limit
  grep -q 'not restarting it: 5 restarts in the last 60 s' "$work/err" "$work/err.cpp" ||
    fail "the executor did not say why it stopped: $(cat "$work/err" "$work/err.cpp")"
  check "srun --offload: crashes past the restart limit stop the executor with a clear message; the step goes on, its tasks fail fast"
}
