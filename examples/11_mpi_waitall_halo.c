/* 11: offloaded compute and halo exchange completed by ONE MPI_Waitall. Each rank owns a slice of
 * a periodic 1-D array and smooths it, u[i] <- (u[i-1] + u[i] + u[i+1]) / 3, for a number of
 * iterations. Every iteration it posts MPI_Irecv/MPI_Isend for its two ghost cells, offloads the
 * interior (which needs no ghost) in chunks with MPIX_Offload_submit, and completes both kinds of
 * request in a single MPI_Waitall; then it smooths its two edge cells itself. Rank 0 repeats the
 * whole computation serially and checks the gathered result to the bit. (A smoothing step is cheap:
 * this shows the pattern of overlapping offloads with communication, not a speedup.)
 *
 *   sidecore-run --cores 1 -- mpirun -n 2 ./11_mpi_waitall_halo ./libsidecore_examples.so [CELLS_PER_RANK] [ITERATIONS]
 *       (defaults: 8192 cells, 50 iterations; the interior moves in tasks of 1024 cells)
 */
#include <mpi.h>
#include <mpix_offload.h>
#include <stdio.h>
#include <stdlib.h>

enum { CHUNK = 1024 }; /* cells per offloaded task: 8 KiB out, so large buffers move by RMA */

static double initial_value(long cell) { return (double)((cell * 7919) % 1000) / 1000.0; }

static double smooth(double left, double mid, double right) { return (left + mid + right) / 3.0; }

/* The interior, cells 2 .. n - 1, in chunks of CHUNK cells: chunk c starts at cell 2 + c * CHUNK. */
static int chunk_cells(int n, int c) { return 2 + (c + 1) * CHUNK <= n ? CHUNK : n - 2 - c * CHUNK; }

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int n = argc > 2 ? atoi(argv[2]) : 8192;
  const int iterations = argc > 3 ? atoi(argv[3]) : 50;
  if (argc < 2 || n < 3 || iterations < 1) {
    if (rank == 0) fprintf(stderr, "usage: %s FUNCTION_LIBRARY [CELLS_PER_RANK>=3] [ITERATIONS>=1]\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);

  MPIX_Offload_pool pool;
  MPIX_Offload_function smooth3;
  if (MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool) != MPI_SUCCESS ||
      MPIX_Offload_function_lookup(pool, argv[1], "smooth3", &smooth3) != MPI_SUCCESS) {
    fprintf(stderr, "rank %d: cannot set up the offload pool or find smooth3 in %s\n", rank, argv[1]);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int total_workers = 0;
  MPIX_Offload_pool_size(pool, NULL, &total_workers);

  /* u[0] and u[n + 1] are ghost cells; u[1..n] are this rank's cells n * rank ... n * rank + n - 1. */
  double *u = malloc((size_t)(n + 2) * sizeof *u), *next = malloc((size_t)(n + 2) * sizeof *next);
  for (int i = 1; i <= n; ++i) u[i] = initial_value((long)n * rank + i - 1);
  const int left = (rank + size - 1) % size, right = (rank + 1) % size;
  const int chunks = (n - 2 + CHUNK - 1) / CHUNK;
  MPI_Request *requests = malloc((size_t)(4 + chunks) * sizeof *requests);
  MPI_Status *statuses = malloc((size_t)(4 + chunks) * sizeof *statuses);
  int failed = 0;
  long offloaded = 0;

  for (int it = 0; it < iterations && !failed; ++it) {
    MPI_Irecv(&u[0], 1, MPI_DOUBLE, left, 0, MPI_COMM_WORLD, &requests[0]);      /* from the left */
    MPI_Irecv(&u[n + 1], 1, MPI_DOUBLE, right, 1, MPI_COMM_WORLD, &requests[1]); /* from the right */
    MPI_Isend(&u[n], 1, MPI_DOUBLE, right, 0, MPI_COMM_WORLD, &requests[2]);
    MPI_Isend(&u[1], 1, MPI_DOUBLE, left, 1, MPI_COMM_WORLD, &requests[3]);
    /* Each task reads its cells plus one on each side straight from u, and writes into next. */
    for (int c = 0; c < chunks; ++c) {
      const int first = 2 + c * CHUNK, count = chunk_cells(n, c);
      if (MPIX_Offload_submit(smooth3, &u[first - 1], (MPI_Count)(count + 2) * (MPI_Count)sizeof(double), &next[first],
                              (MPI_Count)count * (MPI_Count)sizeof(double), &requests[4 + c]) != MPI_SUCCESS) {
        failed = 1;
        requests[4 + c] = MPI_REQUEST_NULL;
      }
    }
    offloaded += chunks;
    const int rc = MPI_Waitall(4 + chunks, requests, statuses);
    for (int c = 0; c < chunks; ++c) {
      int bytes = 0;
      MPI_Get_count(&statuses[4 + c], MPI_BYTE, &bytes);
      const int error = rc == MPI_ERR_IN_STATUS ? statuses[4 + c].MPI_ERROR : rc;
      if (error != MPI_SUCCESS || bytes != chunk_cells(n, c) * (int)sizeof(double)) {
        char text[MPI_MAX_ERROR_STRING];
        int length = 0;
        MPI_Error_string(error, text, &length);
        fprintf(stderr, "rank %d: iteration %d, chunk %d: %s (%d bytes back)\n", rank, it, c, text, bytes);
        failed = 1;
      }
    }
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) failed = 1;
    /* The ghosts have arrived: the two edge cells. */
    next[1] = smooth(u[0], u[1], u[2]);
    next[n] = smooth(u[n - 1], u[n], u[n + 1]);
    double *swap = u;
    u = next;
    next = swap;
  }

  /* Rank 0 gathers the result and computes the same iterations serially. */
  double *all = rank == 0 ? malloc((size_t)n * (size_t)size * sizeof *all) : NULL;
  MPI_Gather(&u[1], n, MPI_DOUBLE, all, n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &offloaded, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  int correct = 0;
  if (rank == 0) {
    const long cells = (long)n * size;
    double *a = malloc((size_t)cells * sizeof *a), *b = malloc((size_t)cells * sizeof *b);
    for (long i = 0; i < cells; ++i) a[i] = initial_value(i);
    for (int it = 0; it < iterations; ++it) {
      for (long i = 0; i < cells; ++i) b[i] = smooth(a[(i + cells - 1) % cells], a[i], a[(i + 1) % cells]);
      double *swap = a;
      a = b;
      b = swap;
    }
    long mismatches = 0;
    double sum = 0;
    for (long i = 0; i < cells; ++i) {
      mismatches += a[i] != all[i];
      sum += all[i];
    }
    correct = !failed && mismatches == 0;
    printf("%d ranks x %d cells, %d iterations: %ld smoothing tasks offloaded to %d worker(s)%s\n", size, n, iterations,
           offloaded, total_workers, total_workers ? "" : " (none: ran inline in the ranks)");
    printf("sum %.12f, %ld of %ld cells differ from the serial result: %s\n", sum, mismatches, cells,
           correct ? "correct" : "WRONG");
    free(a);
    free(b);
    free(all);
  }
  MPI_Bcast(&correct, 1, MPI_INT, 0, MPI_COMM_WORLD);

  free(u);
  free(next);
  free(requests);
  free(statuses);
  MPIX_Offload_function_free(&smooth3);
  MPIX_Offload_pool_free(&pool);
  MPI_Finalize();
  return correct ? 0 : 1;
}
