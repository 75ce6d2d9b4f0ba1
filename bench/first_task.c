/* sidecore-first-task: the program behind bench/first-task.sh. One rank, started by srun in a step
 * with --offload (and, in alternate runs, --offload-lib=LIBRARY), times:
 *   pool_us    MPIX_Offload_pool_create (it waits for the executor's card if the executor is still
 *              starting, which is where a preload's cost shows up),
 *   first_us   the first task: function lookup, submit and MPI_Wait, 8 bytes each way,
 *   second_us  a second task of the same function (warm: the reference),
 * and prints them on one line: "pool_us=A first_us=B second_us=C".
 *   sidecore-first-task LIBRARY SYMBOL */
#include <mpi.h>
#include <mpix_offload.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int fail(const char *what, int rc) {
  char text[MPI_MAX_ERROR_STRING] = "";
  int length = 0;
  MPI_Error_string(rc, text, &length);
  fprintf(stderr, "sidecore-first-task: %s: %s\n", what, text);
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (argc != 3) {
    fprintf(stderr, "usage: sidecore-first-task LIBRARY SYMBOL\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  /* Never fall back to running the task in the caller: that would time something else. */
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "sidecore_fallback", "error");
  MPIX_Offload_pool pool = MPIX_OFFLOAD_POOL_NULL;
  MPIX_Offload_function fn = MPIX_OFFLOAD_FUNCTION_NULL;
  uint64_t in = 42, out = 0;
  MPI_Request request;
  int rc, local = 0;

  const double t0 = now_us();
  if ((rc = MPIX_Offload_pool_create(MPI_COMM_WORLD, info, &pool)) != MPI_SUCCESS) return fail("pool_create", rc);
  const double t1 = now_us();
  if ((rc = MPIX_Offload_function_lookup(pool, argv[1], argv[2], &fn)) != MPI_SUCCESS) return fail("lookup", rc);
  if ((rc = MPIX_Offload_submit(fn, &in, sizeof in, &out, sizeof out, &request)) != MPI_SUCCESS) return fail("submit", rc);
  if ((rc = MPI_Wait(&request, MPI_STATUS_IGNORE)) != MPI_SUCCESS) return fail("first task", rc);
  const double t2 = now_us();
  if ((rc = MPIX_Offload_submit(fn, &in, sizeof in, &out, sizeof out, &request)) != MPI_SUCCESS) return fail("submit", rc);
  if ((rc = MPI_Wait(&request, MPI_STATUS_IGNORE)) != MPI_SUCCESS) return fail("second task", rc);
  const double t3 = now_us();

  MPIX_Offload_pool_size(pool, &local, NULL);
  if (local < 1) {
    fprintf(stderr, "sidecore-first-task: no local executor worker\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  printf("pool_us=%.1f first_us=%.1f second_us=%.1f\n", t1 - t0, t2 - t1, t3 - t2);
  MPIX_Offload_function_free(&fn);
  MPIX_Offload_pool_free(&pool);
  MPI_Info_free(&info);
  MPI_Finalize();
  return 0;
}
