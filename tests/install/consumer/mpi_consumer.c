/* Built against an installed Sidecore with mpicc and pkg-config, and with find_package. */
#include <mpi.h>
#include <mpix_offload.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  if (argc != 2) MPI_Abort(MPI_COMM_WORLD, 2);
  MPIX_Offload_pool pool;
  MPIX_Offload_function echo;
  MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool);
  MPIX_Offload_function_lookup(pool, argv[1], "echo", &echo);
  char in[] = "mpix installed", out[sizeof in] = {0};
  MPI_Request request;
  MPIX_Offload_submit(echo, in, sizeof in, out, sizeof out, &request);
  int rc = MPI_Wait(&request, MPI_STATUS_IGNORE);
  int local = 0;
  MPIX_Offload_pool_size(pool, &local, NULL);
  const int ok = rc == MPI_SUCCESS && strcmp(in, out) == 0 && local > 0 && MPIX_OFFLOAD_VERSION >= 1;
  MPIX_Offload_function_free(&echo);
  MPIX_Offload_pool_free(&pool);
  printf("mpi consumer: %s\n", ok ? "ok" : "wrong result");
  MPI_Finalize();
  return ok ? 0 : 1;
}
