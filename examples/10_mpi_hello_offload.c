/* 10: the MPI extension in its smallest form. Every rank creates the pool (collective), looks up
 * a function, submits one task and completes it with MPI_Wait like any other request. The output
 * size comes from MPI_Get_count, the function's return value from status.MPI_TAG.
 *
 *   sidecore-run --cores 1 -- mpirun -n 2 ./10_mpi_hello_offload ./libsidecore_examples.so
 */
#include <mpi.h>
#include <mpix_offload.h>
#include <stdio.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (argc != 2) {
    if (rank == 0) fprintf(stderr, "usage: %s FUNCTION_LIBRARY\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  /* Report task errors as return values instead of aborting the job. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);

  MPIX_Offload_pool pool;
  MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool);
  int local_workers = 0, total_workers = 0;
  MPIX_Offload_pool_size(pool, &local_workers, &total_workers);

  MPIX_Offload_function hello;
  if (MPIX_Offload_function_lookup(pool, argv[1], "hello", &hello) != MPI_SUCCESS) MPI_Abort(MPI_COMM_WORLD, 1);

  char text[64];
  MPI_Request request;
  MPI_Status status;
  MPIX_Offload_submit(hello, NULL, 0, text, sizeof text, &request);
  int rc = MPI_Wait(&request, &status);
  int bytes = 0;
  MPI_Get_count(&status, MPI_BYTE, &bytes);
  printf("rank %d: '%.*s' (rc %d, function returned %d, %d workers here, %d in the pool)\n", rank, bytes, text, rc,
         status.MPI_TAG, local_workers, total_workers);

  MPIX_Offload_function_free(&hello);
  MPIX_Offload_pool_free(&pool);
  MPI_Finalize();
  return rc == MPI_SUCCESS ? 0 : 1;
}
