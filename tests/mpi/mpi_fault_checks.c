/* Faults cost only their own worker, asserted from C through <mpix_offload.h>: one rank, one pool,
 * the executor of sidecore-run (two workers) or of srun --offload (as many as the step left idle).
 *
 *   mpi_fault_checks SCENARIO FUNCTION_LIBRARY
 *
 * SCENARIO  crash  a function that segfaults, then one that aborts, then one that calls exit(), each
 *                  while `where` tasks are in flight on the other worker: the crash and the tasks
 *                  queued behind it on its worker complete with EXECUTOR_LOST, the other worker's
 *                  complete, and within 2 s the pool runs a task on every worker at once again
 *                  (the same pool and function handles: no new pool_create, no new lookup); then
 *                  a segfault while 8 MiB move by RMA in and out: the caller's output buffer is
 *                  left alone, and a large task on the other worker completes correctly
 *           hang   a function that never returns, with sidecore_timeout_ms=500: TIMEOUT, and the
 *                  worker is replaced, so the pool has its full capacity again within 2 s
 *           bound  the same without a caller timeout, under an executor with a site bound of 1 s
 *                  (max_task_s=1): TIMEOUT after the bound
 *           limit  crashes past the executor's restart limit: the executor stops, and every later
 *                  task completes with EXECUTOR_LOST at once (no hang, the rank goes on)
 *
 * Time bounds scale with SIDECORE_TEST_TIME_SCALE (a loaded machine, a sanitizer build). The exit
 * status is non-zero if any check failed. */
#include <mpi.h>
#include <mpix_offload.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_check.h"

enum { kOutBytes = 300, kOthers = 4 };

static const char *library = NULL;
static int workers = 0; /* the pool's local workers */

struct task {
  uint32_t sleep_us;
  char out[kOutBytes];
  MPI_Request request;
  int rc;
  int bytes;
};

static MPIX_Offload_function lookup(MPIX_Offload_pool pool, const char *symbol) {
  MPIX_Offload_function fn = MPIX_OFFLOAD_FUNCTION_NULL;
  const int rc = MPIX_Offload_function_lookup(pool, library, symbol, &fn);
  CHECK(rc == MPI_SUCCESS, "lookup of %s: rc %d", symbol, rc);
  return fn;
}

static void submit(MPIX_Offload_function fn, struct task *task) {
  task->out[0] = '\0';
  task->bytes = 0;
  task->rc = MPIX_Offload_submit(fn, &task->sleep_us, sizeof task->sleep_us, task->out, kOutBytes, &task->request);
  CHECK(task->rc == MPI_SUCCESS, "submit: rc %d", task->rc);
}

static void finish(struct task *task) {
  if (task->rc != MPI_SUCCESS) return;
  MPI_Status status;
  task->rc = MPI_Wait(&task->request, &status);
  if (task->rc == MPI_SUCCESS) MPI_Get_count(&status, MPI_BYTE, &task->bytes);
  task->out[task->bytes < kOutBytes ? task->bytes : kOutBytes - 1] = '\0';
}

/* Seconds from `since` until `workers` tasks submitted together ran at once on as many different
 * worker processes ("host:pid" from `where`), all successfully; -1 after `timeout` seconds. */
static double full_capacity(MPIX_Offload_function where, double since, double timeout) {
  while (now_s() - since < timeout) {
    struct task tasks[16];
    const int count = workers < 16 ? workers : 16;
    for (int t = 0; t < count; ++t) {
      tasks[t].sleep_us = 100000;
      submit(where, &tasks[t]);
    }
    int ok = 1;
    for (int t = 0; t < count; ++t) {
      finish(&tasks[t]);
      ok = ok && tasks[t].rc == MPI_SUCCESS;
      for (int u = 0; ok && u < t; ++u) ok = strcmp(tasks[t].out, tasks[u].out) != 0;
    }
    if (ok) return now_s() - since;
    usleep(20000);
  }
  return -1;
}

static void check_crash(MPIX_Offload_function where, MPIX_Offload_function crash, const char *name) {
  /* The crash goes to an idle worker; then the least loaded worker takes each task in turn. */
  struct task crashing = {.sleep_us = 0}, others[kOthers];
  submit(crash, &crashing);
  for (int t = 0; t < kOthers; ++t) {
    others[t].sleep_us = 300000;
    submit(where, &others[t]);
  }
  finish(&crashing);
  const double crashed = now_s();
  CHECK(kind_of(crashing.rc) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "%s: the crashing task's kind is %d", name,
        kind_of(crashing.rc));
  int lost = 0, completed = 0;
  const char *survivor = NULL;
  for (int t = 0; t < kOthers; ++t) {
    finish(&others[t]);
    if (others[t].rc == MPI_SUCCESS) {
      ++completed;
      CHECK(survivor == NULL || strcmp(survivor, others[t].out) == 0, "%s: completed tasks ran on %s and %s", name,
            survivor, others[t].out);
      survivor = others[t].out;
    } else {
      CHECK(kind_of(others[t].rc) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "%s: task %d's kind is %d", name, t,
            kind_of(others[t].rc));
      ++lost;
    }
  }
  /* One worker: everything was queued behind the crash. Two: every other task went to the other one. */
  if (workers == 1) CHECK(lost == kOthers, "%s: %d of %d tasks lost on the only worker", name, lost, kOthers);
  if (workers == 2) CHECK(lost == 2 && completed == 2, "%s: %d lost, %d completed (expected 2 and 2)", name, lost, completed);
  const double back = full_capacity(where, crashed, scaled_s(10.0));
  CHECK(back >= 0 && back < scaled_s(2.0), "%s: the pool ran %d tasks at once again after %.2f s (bound 2 s)", name,
        workers, back);
  if (rank == 0) {
    printf("crash %s: %d lost, %d completed on other workers, full capacity again after %.2f s\n", name, lost,
           completed, back);
  }
}

/* FNV-1a, as tests/functions' checksum computes it. */
static uint64_t fnv1a(const unsigned char *bytes, size_t count) {
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < count; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  return hash;
}

static void check_crash_during_rma(MPIX_Offload_pool pool) {
  enum { kBytes = 8 << 20 }; /* far above the inline limit: read and written by RMA */
  MPIX_Offload_function crash = lookup(pool, "crash_segv"), checksum = lookup(pool, "checksum");
  unsigned char *in = malloc(kBytes), *crash_out = malloc(kBytes);
  for (size_t i = 0; i < kBytes; ++i) in[i] = (unsigned char)(i * 7);
  memset(crash_out, 0x11, kBytes);
  uint64_t sum[2] = {0, 0};
  MPI_Request requests[2];
  int rc = MPIX_Offload_submit(crash, in, kBytes, crash_out, kBytes, &requests[0]);
  CHECK(rc == MPI_SUCCESS, "submit of the crash: rc %d", rc);
  rc = MPIX_Offload_submit(checksum, in, kBytes, sum, sizeof sum, &requests[1]);
  CHECK(rc == MPI_SUCCESS, "submit of the checksum: rc %d", rc);
  MPI_Status status;
  const int crashed = MPI_Wait(&requests[0], &status);
  const int summed = MPI_Wait(&requests[1], &status);
  CHECK(kind_of(crashed) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "the crash during RMA: kind %d", kind_of(crashed));
  if (workers > 1) {
    CHECK(summed == MPI_SUCCESS, "the large task on the other worker: kind %d", kind_of(summed));
    CHECK(sum[0] == fnv1a(in, kBytes) && sum[1] == kBytes, "the large task's checksum is wrong");
  }
  size_t written = 0;
  for (size_t i = 0; i < kBytes; ++i) written += crash_out[i] != 0x11;
  CHECK(written == 0, "%zu bytes of the lost task's output buffer were written", written);
  if (rank == 0) printf("crash during RMA: EXECUTOR_LOST, output buffer untouched\n");
  free(in);
  free(crash_out);
  MPIX_Offload_function_free(&crash);
  MPIX_Offload_function_free(&checksum);
}

static void check_hang(MPIX_Offload_function where, MPIX_Offload_function stuck, double bound) {
  struct task hung = {.sleep_us = 0}, other = {.sleep_us = 100000};
  const double started = now_s();
  submit(stuck, &hung);
  if (workers > 1) submit(where, &other);
  finish(&hung);
  const double waited = now_s() - started;
  CHECK(kind_of(hung.rc) == MPIX_OFFLOAD_ERR_TIMEOUT, "the hung task's kind is %d", kind_of(hung.rc));
  CHECK(waited >= bound - 0.05 && waited < bound + scaled_s(2.0), "TIMEOUT after %.2f s (bound %.1f s)", waited, bound);
  if (workers > 1) {
    finish(&other);
    CHECK(other.rc == MPI_SUCCESS, "the other worker's task: kind %d", kind_of(other.rc));
  }
  const double back = full_capacity(where, now_s(), scaled_s(10.0));
  CHECK(back >= 0 && back < scaled_s(2.0), "the pool ran %d tasks at once again after %.2f s (bound 2 s)", workers,
        back);
  if (rank == 0) printf("hang: TIMEOUT after %.2f s, full capacity again after %.2f s\n", waited, back);
}

static void check_limit(MPIX_Offload_function where, MPIX_Offload_function crash) {
  /* The default limit is 5 restarts a minute: the sixth crash stops the executor. */
  int stopped = 0;
  for (int round = 0; round < 8 && !stopped; ++round) {
    struct task crashing = {.sleep_us = 0};
    submit(crash, &crashing);
    finish(&crashing);
    CHECK(kind_of(crashing.rc) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "crash %d: kind %d", round, kind_of(crashing.rc));
    stopped = full_capacity(where, now_s(), scaled_s(3.0)) < 0;
  }
  CHECK(stopped, "the executor still serves after 8 crashes");
  const double started = now_s();
  struct task after = {.sleep_us = 0};
  submit(where, &after);
  finish(&after);
  CHECK(kind_of(after.rc) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "a task after the executor stopped: kind %d",
        kind_of(after.rc));
  CHECK(now_s() - started < scaled_s(2.0), "it took %.2f s to fail", now_s() - started);
  if (rank == 0) printf("limit: the executor stopped; later tasks fail with EXECUTOR_LOST at once\n");
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s crash|hang|bound|limit FUNCTION_LIBRARY\n", argv[0]);
    return 2;
  }
  const char *scenario = argv[1];
  library = argv[2];
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  snprintf(check_who, sizeof check_who, "rank %d", rank);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);

  MPI_Info info = MPI_INFO_NULL;
  if (strcmp(scenario, "hang") == 0) {
    MPI_Info_create(&info);
    MPI_Info_set(info, "sidecore_timeout_ms", "500");
  }
  MPIX_Offload_pool pool = MPIX_OFFLOAD_POOL_NULL;
  int rc = MPIX_Offload_pool_create(MPI_COMM_SELF, info, &pool);
  if (info != MPI_INFO_NULL) MPI_Info_free(&info);
  CHECK(rc == MPI_SUCCESS, "pool_create: rc %d", rc);
  int total = 0;
  MPIX_Offload_pool_size(pool, &workers, &total);
  CHECK(workers >= 1, "no executor: run under sidecore-run or srun --offload (pool_size %d)", workers);
  if (workers >= 1) {
    MPIX_Offload_function where = lookup(pool, "where");
    if (strcmp(scenario, "crash") == 0) {
      const char *kinds[] = {"crash_segv", "crash_abort", "crash_exit"};
      for (int k = 0; k < 3; ++k) {
        MPIX_Offload_function crash = lookup(pool, kinds[k]);
        check_crash(where, crash, kinds[k]);
        MPIX_Offload_function_free(&crash);
      }
      check_crash_during_rma(pool);
    } else if (strcmp(scenario, "hang") == 0 || strcmp(scenario, "bound") == 0) {
      MPIX_Offload_function stuck = lookup(pool, "never_return");
      check_hang(where, stuck, strcmp(scenario, "hang") == 0 ? 0.5 : 1.0);
      MPIX_Offload_function_free(&stuck);
    } else if (strcmp(scenario, "limit") == 0) {
      MPIX_Offload_function crash = lookup(pool, "crash_segv");
      check_limit(where, crash);
      MPIX_Offload_function_free(&crash);
    } else {
      CHECK(0, "unknown scenario %s", scenario);
    }
    MPIX_Offload_function_free(&where);
  }
  rc = MPIX_Offload_pool_free(&pool);
  CHECK(rc == MPI_SUCCESS, "pool_free: rc %d", rc);
  printf("%s on rank %d with %d worker(s): %d checks, %d failures\n", scenario, rank, workers, checks, failures);
  MPI_Finalize();
  return failures == 0 ? 0 : 1;
}
