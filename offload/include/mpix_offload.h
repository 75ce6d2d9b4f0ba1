/* Sidecore's MPI extension: offload tasks to executors on the job's idle cores, as MPI requests.
 *
 *   MPIX_Offload_pool pool;
 *   MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool);        collective
 *   MPIX_Offload_function fn;
 *   MPIX_Offload_function_lookup(pool, "/path/libf.so", "integrate", &fn);
 *   MPIX_Offload_submit(fn, in, in_bytes, out, out_bytes, &request);       never blocks
 *   MPI_Waitall(n, requests, statuses);                                   mixes with any MPI request
 *   MPIX_Offload_function_free(&fn);
 *   MPIX_Offload_pool_free(&pool);                                         collective
 *
 * A completed offload request reports, in its MPI_Status: MPI_Get_count(&status, MPI_BYTE, &n) the
 * output bytes, status.MPI_TAG the function's return value, and its error the MPI way (the return
 * value of MPI_Wait/MPI_Test, or status.MPI_ERROR after MPI_ERR_IN_STATUS): MPI_SUCCESS or a
 * Sidecore error code, which MPI_Error_string explains and MPIX_Offload_error_kind classifies.
 * Errors of the calls themselves are raised through the communicator's error handler.
 *
 * Every MPIX_ function has a PMPIX_ twin for profiling tools. Link with
 * `$(pkg-config --cflags --libs sidecore)` or the CMake target sidecore::mpix.
 */
#ifndef MPIX_OFFLOAD_H
#define MPIX_OFFLOAD_H

#include <mpi.h>

#define MPIX_OFFLOAD_VERSION_MAJOR 0
#define MPIX_OFFLOAD_VERSION_MINOR 1
#define MPIX_OFFLOAD_VERSION (MPIX_OFFLOAD_VERSION_MAJOR * 100 + MPIX_OFFLOAD_VERSION_MINOR)

#ifdef __cplusplus
extern "C" {
#endif

typedef struct MPIX_Offload_pool_s *MPIX_Offload_pool;
typedef struct MPIX_Offload_function_s *MPIX_Offload_function;
#define MPIX_OFFLOAD_POOL_NULL ((MPIX_Offload_pool)0)         /* the free calls set handles to these */
#define MPIX_OFFLOAD_FUNCTION_NULL ((MPIX_Offload_function)0)

/* Error kinds (MPIX_Offload_error_kind); the numbering matches Sidecore's wire protocol. */
#define MPIX_OFFLOAD_ERR_NONE 0          /* the function ran and returned 0 */
#define MPIX_OFFLOAD_ERR_NO_EXECUTOR 1   /* no executor to run the task, and fallback=error */
#define MPIX_OFFLOAD_ERR_NOT_FOUND 2     /* library or symbol missing on the executor */
#define MPIX_OFFLOAD_ERR_FUNCTION 3      /* the function returned non-zero (see MPI_TAG) */
#define MPIX_OFFLOAD_ERR_EXECUTOR_LOST 4 /* the executor went away before answering */
#define MPIX_OFFLOAD_ERR_TIMEOUT 5       /* sidecore_timeout_ms passed */
#define MPIX_OFFLOAD_ERR_AUTH 6          /* the executor refused this job's token */
#define MPIX_OFFLOAD_ERR_BAD_ARG 7       /* a malformed call: NULL, negative size, freed handle, ... */

/* Info keys for MPIX_Offload_pool_create:
 *   sidecore_scope       node | job      (default job): use executors of this node only, or all
 *   sidecore_fallback    inline | error  (default inline): without any executor, run tasks in the
 *                                        calling rank, or fail them with NO_EXECUTOR
 *   sidecore_timeout_ms  N               (default 0 = none): complete unfinished tasks with TIMEOUT */

int MPIX_Offload_pool_create(MPI_Comm comm, MPI_Info info, MPIX_Offload_pool *pool);
int MPIX_Offload_pool_free(MPIX_Offload_pool *pool);
int MPIX_Offload_pool_size(MPIX_Offload_pool pool, int *local_workers, int *total_workers);
int MPIX_Offload_function_lookup(MPIX_Offload_pool pool, const char *library, const char *symbol,
                                 MPIX_Offload_function *fn);
int MPIX_Offload_function_free(MPIX_Offload_function *fn);
int MPIX_Offload_submit(MPIX_Offload_function fn, const void *in, MPI_Count in_bytes, void *out,
                        MPI_Count out_bytes, MPI_Request *request);
int MPIX_Offload_error_kind(int errorcode, int *kind);

int PMPIX_Offload_pool_create(MPI_Comm comm, MPI_Info info, MPIX_Offload_pool *pool);
int PMPIX_Offload_pool_free(MPIX_Offload_pool *pool);
int PMPIX_Offload_pool_size(MPIX_Offload_pool pool, int *local_workers, int *total_workers);
int PMPIX_Offload_function_lookup(MPIX_Offload_pool pool, const char *library, const char *symbol,
                                  MPIX_Offload_function *fn);
int PMPIX_Offload_function_free(MPIX_Offload_function *fn);
int PMPIX_Offload_submit(MPIX_Offload_function fn, const void *in, MPI_Count in_bytes, void *out,
                         MPI_Count out_bytes, MPI_Request *request);
int PMPIX_Offload_error_kind(int errorcode, int *kind);

#ifdef __cplusplus
}
#endif

#endif /* MPIX_OFFLOAD_H */
