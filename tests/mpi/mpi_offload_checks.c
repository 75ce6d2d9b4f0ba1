/* The MPI tier: every behaviour of <mpix_offload.h>, asserted from C under mpirun.
 *
 *   mpi_offload_checks SCENARIO THREAD_LEVEL FUNCTION_LIBRARY
 *
 * SCENARIO   executor  (run under sidecore-run): data path, statuses, errors, mixing with MPI
 *                      requests, Request_free, Cancel, timeouts, background progress, idle CPU
 *            lost      (run under sidecore-run): the executor is killed in mid-flight
 *            inline    (no executor): tasks run in the calling rank
 *            error     (no executor, sidecore_fallback=error): submit fails with NO_EXECUTOR
 *            auth      (under sidecore-run with a wrong SIDECORE_TOKEN): pool_create fails with AUTH
 *            fault     (under sidecore-run, with SIDECORE_FAULT=point): a failure injected inside the
 *                      library surfaces as EXECUTOR_LOST and the rank carries on
 * THREAD_LEVEL single | funneled | serialized | multiple
 *
 * Every rank runs every check; rank 0 prints the total and the exit status is non-zero if any
 * check failed on any rank. */
#include <mpi.h>
#include <mpix_offload.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mpi_check.h"

static const char *library = NULL;

static double cpu_s(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec * 1e-6 + (double)usage.ru_stime.tv_sec +
         (double)usage.ru_stime.tv_usec * 1e-6;
}

/* After MPI_ERR_IN_STATUS, a request whose status says MPI_ERR_PENDING is still active (the
 * standard allows it; MPICH 4.0 marks every request after the first failed one so): wait for it
 * and put its own error in its status, as a portable program does. */
static void finish_pending(int count, MPI_Request *requests, MPI_Status *statuses) {
  for (int i = 0; i < count; ++i) {
    if (statuses[i].MPI_ERROR == MPI_ERR_PENDING) statuses[i].MPI_ERROR = MPI_Wait(&requests[i], &statuses[i]);
  }
}

static MPIX_Offload_function lookup(MPIX_Offload_pool pool, const char *symbol) {
  MPIX_Offload_function fn = MPIX_OFFLOAD_FUNCTION_NULL;
  int rc = MPIX_Offload_function_lookup(pool, library, symbol, &fn);
  CHECK(rc == MPI_SUCCESS && fn != MPIX_OFFLOAD_FUNCTION_NULL, "lookup of %s: rc %d", symbol, rc);
  return fn;
}

static MPIX_Offload_pool make_pool(const char *key, const char *value) {
  MPI_Info info = MPI_INFO_NULL;
  if (key != NULL) {
    MPI_Info_create(&info);
    MPI_Info_set(info, key, value);
  }
  MPIX_Offload_pool pool = MPIX_OFFLOAD_POOL_NULL;
  int rc = MPIX_Offload_pool_create(MPI_COMM_WORLD, info, &pool);
  CHECK(rc == MPI_SUCCESS && pool != MPIX_OFFLOAD_POOL_NULL, "pool_create(%s=%s): rc %d", key ? key : "-",
        value ? value : "-", rc);
  if (info != MPI_INFO_NULL) MPI_Info_free(&info);
  return pool;
}

/* --- checks ---------------------------------------------------------------------------------- */

static void check_data_and_status(MPIX_Offload_pool pool) {
  MPIX_Offload_function echo = lookup(pool, "echo");
  static const size_t sizes[] = {0, 1, 4096, 4097, 1 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; ++i) {
    const size_t n = sizes[i];
    unsigned char *in = malloc(n + 1), *out = malloc(n + 1);
    for (size_t b = 0; b < n; ++b) in[b] = (unsigned char)(b * 7 + (size_t)rank);
    memset(out, 0, n + 1);
    MPI_Request request;
    MPI_Status status;
    int rc = MPIX_Offload_submit(echo, in, (MPI_Count)n, out, (MPI_Count)n, &request);
    CHECK(rc == MPI_SUCCESS, "submit of %zu bytes: rc %d", n, rc);
    rc = MPI_Wait(&request, &status);
    int count = -1;
    MPI_Get_count(&status, MPI_BYTE, &count);
    /* Single-completion calls return the error; MPI leaves status.MPI_ERROR alone there. */
    CHECK(rc == MPI_SUCCESS, "echo of %zu bytes: rc %d", n, rc);
    CHECK(count == (int)n, "echo of %zu bytes: MPI_Get_count %d", n, count);
    CHECK(status.MPI_TAG == 0, "echo: MPI_TAG %d", status.MPI_TAG);
    CHECK(request == MPI_REQUEST_NULL, "MPI_Wait leaves MPI_REQUEST_NULL");
    CHECK(n == 0 || memcmp(in, out, n) == 0, "echo of %zu bytes: output differs", n);
    free(in);
    free(out);
  }
  MPIX_Offload_function_free(&echo);
  CHECK(echo == MPIX_OFFLOAD_FUNCTION_NULL, "function_free sets the handle to NULL");
}

static void check_function_errors(MPIX_Offload_pool pool) {
  MPIX_Offload_function value = lookup(pool, "return_value");
  int32_t code = 42;
  MPI_Request request;
  MPI_Status status;
  MPIX_Offload_submit(value, &code, sizeof code, NULL, 0, &request);
  int rc = MPI_Wait(&request, &status);
  CHECK(rc != MPI_SUCCESS && kind_of(rc) == MPIX_OFFLOAD_ERR_FUNCTION, "non-zero return: rc %d kind %d", rc,
        kind_of(rc));
  CHECK(status.MPI_TAG == 42, "non-zero return reaches MPI_TAG: %d", status.MPI_TAG);
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  CHECK(strstr(text, "Sidecore") != NULL && strstr(text, "FUNCTION") != NULL, "MPI_Error_string: '%s'", text);

  /* In a multiple-completion call the error comes back in the status. */
  MPIX_Offload_function echo = lookup(pool, "echo");
  MPI_Request requests[3];
  MPI_Status statuses[3];
  char in[8] = "abcdefg", out[8] = {0};
  int32_t zero = 0;
  MPIX_Offload_submit(echo, in, sizeof in, out, sizeof out, &requests[0]);
  MPIX_Offload_submit(value, &code, sizeof code, NULL, 0, &requests[1]);
  MPIX_Offload_submit(value, &zero, sizeof zero, NULL, 0, &requests[2]);
  rc = MPI_Waitall(3, requests, statuses);
  CHECK(rc == MPI_ERR_IN_STATUS, "Waitall with a failed task: rc %d", rc);
  finish_pending(3, requests, statuses);
  CHECK(statuses[0].MPI_ERROR == MPI_SUCCESS && memcmp(in, out, sizeof in) == 0, "Waitall: the good task");
  CHECK(kind_of(statuses[1].MPI_ERROR) == MPIX_OFFLOAD_ERR_FUNCTION && statuses[1].MPI_TAG == 42,
        "Waitall: the failing task's status (error %d, kind %d, tag %d)", statuses[1].MPI_ERROR,
        kind_of(statuses[1].MPI_ERROR), statuses[1].MPI_TAG);
  CHECK(statuses[2].MPI_ERROR == MPI_SUCCESS && statuses[2].MPI_TAG == 0, "Waitall: return 0 is success (error %d, tag %d)",
        statuses[2].MPI_ERROR, statuses[2].MPI_TAG);

  /* A claimed output larger than the buffer is the function's fault. */
  MPIX_Offload_function overflow = lookup(pool, "overflow");
  char small[4];
  MPIX_Offload_submit(overflow, NULL, 0, small, sizeof small, &request);
  rc = MPI_Wait(&request, &status);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_FUNCTION, "overflowing output: kind %d", kind_of(rc));

  /* Missing symbol and missing library: NOT_FOUND at lookup. */
  MPIX_Offload_function missing = MPIX_OFFLOAD_FUNCTION_NULL;
  rc = MPIX_Offload_function_lookup(pool, library, "no_such_symbol", &missing);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_NOT_FOUND && missing == MPIX_OFFLOAD_FUNCTION_NULL, "missing symbol: kind %d",
        kind_of(rc));
  rc = MPIX_Offload_function_lookup(pool, "/no/such/library.so", "echo", &missing);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_NOT_FOUND, "missing library: kind %d", kind_of(rc));

  MPIX_Offload_function_free(&echo);
  MPIX_Offload_function_free(&overflow);
  MPIX_Offload_function_free(&value);
}

static void check_bad_arguments(MPIX_Offload_pool pool) {
  MPIX_Offload_function echo = lookup(pool, "echo");
  MPI_Request request = MPI_REQUEST_NULL;
  char buffer[16];
  int rc;
  rc = MPIX_Offload_submit(echo, NULL, 8, buffer, sizeof buffer, &request);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "NULL input with a size: kind %d", kind_of(rc));
  rc = MPIX_Offload_submit(echo, buffer, 8, NULL, 8, &request);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "NULL output with a size: kind %d", kind_of(rc));
  rc = MPIX_Offload_submit(echo, buffer, -1, buffer, sizeof buffer, &request);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "negative input size: kind %d", kind_of(rc));
  rc = MPIX_Offload_submit(echo, buffer, 8, buffer, -5, &request);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "negative output size: kind %d", kind_of(rc));
  rc = MPIX_Offload_submit(echo, buffer, 8, buffer, 8, NULL);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "NULL request: kind %d", kind_of(rc));
  rc = MPIX_Offload_submit(MPIX_OFFLOAD_FUNCTION_NULL, buffer, 8, buffer, 8, &request);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "NULL function: kind %d", kind_of(rc));
  MPIX_Offload_function stale = echo;
  MPIX_Offload_function_free(&echo);
  rc = MPIX_Offload_submit(stale, buffer, 8, buffer, 8, &request);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "freed function: kind %d", kind_of(rc));
  rc = MPIX_Offload_function_free(&stale);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "double function_free: kind %d", kind_of(rc));
  rc = MPIX_Offload_function_lookup(pool, NULL, "echo", &echo);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "NULL library: kind %d", kind_of(rc));
  rc = MPIX_Offload_function_lookup(pool, library, "", &echo);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "empty symbol: kind %d", kind_of(rc));
  rc = MPIX_Offload_function_lookup(pool, library, "echo", NULL);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "NULL fn: kind %d", kind_of(rc));
  rc = MPIX_Offload_function_lookup(MPIX_OFFLOAD_POOL_NULL, library, "echo", &echo);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "NULL pool: kind %d", kind_of(rc));
  int local = -1;
  rc = MPIX_Offload_pool_size(MPIX_OFFLOAD_POOL_NULL, &local, NULL);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "pool_size of NULL: kind %d", kind_of(rc));
  rc = MPIX_Offload_error_kind(MPI_SUCCESS, NULL);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "error_kind with NULL: kind %d", kind_of(rc));
  int kind = 99;
  CHECK(MPIX_Offload_error_kind(MPI_SUCCESS, &kind) == MPI_SUCCESS && kind == MPIX_OFFLOAD_ERR_NONE,
        "MPI_SUCCESS is kind NONE");
  CHECK(MPIX_Offload_error_kind(MPI_ERR_TRUNCATE, &kind) == MPI_ERR_ARG, "a non-Sidecore code is not classified");

  MPIX_Offload_pool bad = MPIX_OFFLOAD_POOL_NULL;
  rc = MPIX_Offload_pool_create(MPI_COMM_NULL, MPI_INFO_NULL, &bad);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "MPI_COMM_NULL: kind %d", kind_of(rc));
  rc = MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, NULL);
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "NULL pool pointer: kind %d", kind_of(rc));
  static const char *bad_values[][2] = {
      {"sidecore_scope", "galaxy"},         {"sidecore_fallback", "maybe"},      {"sidecore_timeout_ms", "-3"},
      {"sidecore_timeout_ms", "soon"},      {"sidecore_remote_executors", "-1"}, {"sidecore_remote_executors", "65537"},
      {"sidecore_remote_executors", "all"}, {"sidecore_retry", "always"},        {"sidecore_retry", "LOST"}};
  for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; ++i) {
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, bad_values[i][0], bad_values[i][1]);
    rc = MPIX_Offload_pool_create(MPI_COMM_WORLD, info, &bad);
    CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG && bad == MPIX_OFFLOAD_POOL_NULL, "%s=%s: kind %d",
          bad_values[i][0], bad_values[i][1], kind_of(rc));
    MPI_Info_free(&info);
  }
}

/* Offload requests next to point-to-point and nonblocking collective requests in every completion call. */
static void check_mixed_completion(MPIX_Offload_pool pool) {
  MPIX_Offload_function echo = lookup(pool, "echo");
  const int right = (rank + 1) % size, left = (rank + size - 1) % size;
  for (int call = 0; call < 6; ++call) {
    int send = rank * 100 + call, received = -1, sum_in = rank, sum = -1;
    int64_t in[4], out[4];
    MPI_Request requests[7];
    for (int t = 0; t < 4; ++t) {
      in[t] = (int64_t)rank * 1000 + call * 10 + t;
      out[t] = -1;
      MPIX_Offload_submit(echo, &in[t], sizeof in[t], &out[t], sizeof out[t], &requests[t]);
    }
    MPI_Irecv(&received, 1, MPI_INT, left, call, MPI_COMM_WORLD, &requests[4]);
    MPI_Isend(&send, 1, MPI_INT, right, call, MPI_COMM_WORLD, &requests[5]);
    MPI_Iallreduce(&sum_in, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD, &requests[6]);
    int done = 0, flag = 0, index = -1, indices[7], outcount = 0, rc = MPI_SUCCESS;
    const char *name = "";
    switch (call) {
      case 0:
        name = "Waitall";
        rc = MPI_Waitall(7, requests, MPI_STATUSES_IGNORE);
        break;
      case 1:
        name = "Waitany";
        for (done = 0; done < 7 && rc == MPI_SUCCESS; ++done) rc = MPI_Waitany(7, requests, &index, MPI_STATUS_IGNORE);
        break;
      case 2:
        name = "Waitsome";
        while (done < 7 && rc == MPI_SUCCESS) {
          rc = MPI_Waitsome(7, requests, &outcount, indices, MPI_STATUSES_IGNORE);
          done += outcount;
        }
        break;
      case 3:
        name = "Testall";
        while (!flag && rc == MPI_SUCCESS) rc = MPI_Testall(7, requests, &flag, MPI_STATUSES_IGNORE);
        break;
      case 4:
        name = "Testany";
        while (done < 7 && rc == MPI_SUCCESS) {
          rc = MPI_Testany(7, requests, &index, &flag, MPI_STATUS_IGNORE);
          if (flag) ++done;
        }
        break;
      case 5:
        name = "Testsome";
        while (done < 7 && rc == MPI_SUCCESS) {
          rc = MPI_Testsome(7, requests, &outcount, indices, MPI_STATUSES_IGNORE);
          done += outcount;
        }
        break;
    }
    CHECK(rc == MPI_SUCCESS, "%s: rc %d", name, rc);
    for (int t = 0; t < 7; ++t) CHECK(requests[t] == MPI_REQUEST_NULL, "%s: request %d not freed", name, t);
    for (int t = 0; t < 4; ++t) CHECK(out[t] == in[t], "%s: task %d gave %lld", name, t, (long long)out[t]);
    CHECK(received == left * 100 + call, "%s: point-to-point got %d", name, received);
    CHECK(sum == size * (size - 1) / 2, "%s: Iallreduce got %d", name, sum);
  }
  MPIX_Offload_function_free(&echo);
}

static void check_request_free(void) {
  MPIX_Offload_pool pool = make_pool(NULL, NULL);
  MPIX_Offload_function slow = lookup(pool, "sleep_then_fill");
  uint32_t us = 20000;
  unsigned char out[256];
  memset(out, 0, sizeof out);
  MPI_Request request;
  MPIX_Offload_submit(slow, &us, sizeof us, out, sizeof out, &request);
  int rc = MPI_Request_free(&request);
  CHECK(rc == MPI_SUCCESS && request == MPI_REQUEST_NULL, "MPI_Request_free on an offload request: rc %d", rc);
  MPIX_Offload_function_free(&slow);
  const double start = now_s();
  rc = MPIX_Offload_pool_free(&pool);  /* waits for the freed task, does not hang */
  CHECK(rc == MPI_SUCCESS && pool == MPIX_OFFLOAD_POOL_NULL, "pool_free after Request_free: rc %d", rc);
  CHECK(now_s() - start < scaled_s(10.0), "pool_free took %.1f s", now_s() - start);
  CHECK(out[0] == 0xAB && out[255] == 0xAB, "the freed request's task still ran");
}

static void check_cancel(MPIX_Offload_pool pool, int have_executor) {
  MPIX_Offload_function slow = lookup(pool, "sleep_us");
  enum { kTasks = 80 }; /* more than one worker's 64 credits: the last ones wait in the client */
  MPI_Request requests[kTasks];
  uint32_t us = 2000;
  for (int t = 0; t < kTasks; ++t) MPIX_Offload_submit(slow, &us, sizeof us, NULL, 0, &requests[t]);
  MPI_Status status;
  MPI_Cancel(&requests[kTasks - 1]);
  MPI_Wait(&requests[kTasks - 1], &status);
  int cancelled = 0;
  MPI_Test_cancelled(&status, &cancelled);
  CHECK(!have_executor || cancelled, "MPI_Cancel of a task that has not started");
  MPI_Cancel(&requests[0]);
  int rc = MPI_Wait(&requests[0], &status);
  MPI_Test_cancelled(&status, &cancelled);
  CHECK(!cancelled && rc == MPI_SUCCESS, "MPI_Cancel of a running task leaves it to complete: rc %d", rc);
  rc = MPI_Waitall(kTasks - 2, &requests[1], MPI_STATUSES_IGNORE);
  CHECK(rc == MPI_SUCCESS, "the other tasks complete: rc %d", rc);
  MPIX_Offload_function_free(&slow);
}

static void check_timeout(void) {
  MPIX_Offload_pool pool = make_pool("sidecore_timeout_ms", "100");
  MPIX_Offload_function slow = lookup(pool, "sleep_then_fill");
  static const size_t sizes[] = {64, 65536}; /* output inline, and by RMA into the buffer */
  for (size_t i = 0; i < 2; ++i) {
    unsigned char *out = calloc(1, sizes[i]);
    uint32_t us = 600000;
    MPI_Request request;
    MPI_Status status;
    const double start = now_s();
    MPIX_Offload_submit(slow, &us, sizeof us, out, (MPI_Count)sizes[i], &request);
    int rc = MPI_Wait(&request, &status);
    const double waited = now_s() - start;
    CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_TIMEOUT, "slow task of %zu output bytes: kind %d", sizes[i], kind_of(rc));
    /* At least the timeout itself (which is what is measured), at most a scaled margin above it. */
    CHECK(waited >= 0.09 && waited < scaled_s(0.5), "timed out after %.3f s (limit 0.1 s)", waited);
    /* Let the late result arrive (and be dropped), making progress meanwhile. */
    const double late = now_s() + 0.8;
    while (now_s() < late) {
      int flag;
      MPI_Iprobe(MPI_ANY_SOURCE, 999, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
    }
    size_t written = 0;
    for (size_t b = 0; b < sizes[i]; ++b) written += out[b] != 0;
    CHECK(written == 0, "%zu bytes of a timed-out task's %zu-byte output were written", written, sizes[i]);
    free(out);
  }
  MPIX_Offload_function_free(&slow);
  MPIX_Offload_pool_free(&pool);
}

/* Requests complete while the rank computes and calls no MPI at all, and waiting costs no CPU. */
static void check_background_progress(MPIX_Offload_pool pool) {
  MPIX_Offload_function echo = lookup(pool, "echo");
  volatile char out[8] = {0};
  char in[8] = "offload";
  MPI_Request request;
  MPIX_Offload_submit(echo, in, sizeof in, (char *)out, sizeof out, &request);
  const double until = now_s() + scaled_s(0.3); /* a bound: the output arrives within it */
  double x = 1.0;
  while (now_s() < until) x = x * 1.0000001 + 1e-9; /* compute, no MPI */
#ifndef __SANITIZE_THREAD__
  /* Reading the output before any MPI call is the point of the check, and a data race by design
   * (nothing orders the progress thread's write before it): under TSan only the rest runs. */
  CHECK(memcmp((const char *)out, in, sizeof in) == 0, "output arrived without any MPI call (x=%g)", x);
#else
  (void)x;
#endif
  MPI_Wait(&request, MPI_STATUS_IGNORE);
  CHECK(memcmp((const char *)out, in, sizeof in) == 0, "output after MPI_Wait");

  MPIX_Offload_function slow = lookup(pool, "sleep_us");
  uint32_t us = 400000;
  MPIX_Offload_submit(slow, &us, sizeof us, NULL, 0, &request);
  const double cpu_before = cpu_s(), wall_before = now_s();
  struct timespec nap = {0, 400 * 1000 * 1000};
  nanosleep(&nap, NULL);
  const double cpu = cpu_s() - cpu_before, wall = now_s() - wall_before;
  CHECK(cpu < 0.1 * wall, "waiting for a task cost %.3f s of CPU in %.3f s", cpu, wall);
  MPI_Wait(&request, MPI_STATUS_IGNORE);
  MPIX_Offload_function_free(&slow);
  MPIX_Offload_function_free(&echo);
}

struct thread_args {
  MPIX_Offload_function fn;
  int failures;
};

static void *submit_from_thread(void *raw) {
  struct thread_args *args = raw;
  for (int i = 0; i < 100; ++i) {
    int64_t in = i, out = -1;
    MPI_Request request;
    MPIX_Offload_submit(args->fn, &in, sizeof in, &out, sizeof out, &request);
    if (MPI_Wait(&request, MPI_STATUS_IGNORE) != MPI_SUCCESS || out != in) ++args->failures;
  }
  return NULL;
}

static void check_threads(MPIX_Offload_pool pool) {
  MPIX_Offload_function echo = lookup(pool, "echo");
  struct thread_args args[2] = {{echo, 0}, {echo, 0}};
  pthread_t threads[2];
  for (int t = 0; t < 2; ++t) pthread_create(&threads[t], NULL, submit_from_thread, &args[t]);
  for (int t = 0; t < 2; ++t) pthread_join(threads[t], NULL);
  CHECK(args[0].failures == 0 && args[1].failures == 0, "MPI_THREAD_MULTIPLE: two threads submitting");
  MPIX_Offload_function_free(&echo);
}

/* MPI_THREAD_MULTIPLE: one thread cancels its tasks while another submits and the progress thread
 * completes. MPICH runs a request's cancel callback inside its global critical section, which
 * MPI_Grequest_start and MPI_Grequest_complete enter too: a library that called those while
 * holding a lock the cancel callback waits for would hang the rank here (seen once in a few
 * hundred runs of the executor checks before it was fixed; within a few hundred rounds here). */
enum { kCancelRounds = 1500 };

struct cancel_args {
  MPIX_Offload_function fn;
  int cancel;
  int failures;
  int cancelled;
};

static void *cancel_or_wait_thread(void *raw) {
  struct cancel_args *args = raw;
  for (int i = 0; i < kCancelRounds; ++i) {
    int64_t in = i, out = -1;
    MPI_Request request;
    if (MPIX_Offload_submit(args->fn, &in, sizeof in, &out, sizeof out, &request) != MPI_SUCCESS) {
      ++args->failures;
      continue;
    }
    if (args->cancel && MPI_Cancel(&request) != MPI_SUCCESS) ++args->failures;
    MPI_Status status;
    if (MPI_Wait(&request, &status) != MPI_SUCCESS) {
      ++args->failures;
      continue;
    }
    int cancelled = 0;
    MPI_Test_cancelled(&status, &cancelled);
    args->cancelled += cancelled;
    if (!cancelled && out != in) ++args->failures; /* not cancelled: it ran, and its result is there */
  }
  return NULL;
}

static void check_cancel_while_completing(MPIX_Offload_pool pool) {
  MPIX_Offload_function echo = lookup(pool, "echo");
  struct cancel_args args[2] = {{echo, 1, 0, 0}, {echo, 0, 0, 0}};
  pthread_t threads[2];
  for (int t = 0; t < 2; ++t) pthread_create(&threads[t], NULL, cancel_or_wait_thread, &args[t]);
  for (int t = 0; t < 2; ++t) pthread_join(threads[t], NULL);
  CHECK(args[0].failures == 0 && args[1].failures == 0 && args[1].cancelled == 0,
        "MPI_THREAD_MULTIPLE: cancelling on one thread while another submits: %d + %d failures", args[0].failures,
        args[1].failures);
  MPIX_Offload_function_free(&echo);
}

/* MPI_THREAD_MULTIPLE, harder: four threads submit at once and complete their requests in four
 * ways (MPI_Wait, MPI_Test polling, MPI_Waitall of a batch, MPI_Waitany), between bursts of
 * computation without MPI calls, so the progress thread completes requests too. Run in one
 * process (no mpirun) it is the TSan tier's check of the engine's locking. */
enum { kThreads = 4, kThreadTasks = 400, kBatch = 8 };

struct busy_args {
  MPIX_Offload_function fn;
  int style;
  int failures;
};

static void spin_us(double us) {
  const double until = now_s() + us * 1e-6;
  while (now_s() < until) {
  }
}

static void *busy_thread(void *raw) {
  struct busy_args *args = raw;
  int64_t in[kBatch], out[kBatch];
  MPI_Request requests[kBatch];
  for (int i = 0; i < kThreadTasks; i += kBatch) {
    for (int k = 0; k < kBatch; ++k) {
      in[k] = (int64_t)args->style << 32 | (i + k);
      out[k] = -1;
      if (MPIX_Offload_submit(args->fn, &in[k], sizeof in[k], &out[k], sizeof out[k], &requests[k]) != MPI_SUCCESS) {
        ++args->failures;
        requests[k] = MPI_REQUEST_NULL;
      }
    }
    if (i % (4 * kBatch) == 0) spin_us(200); /* computing: the progress thread's turn */
    MPI_Status status;
    switch (args->style) {
      case 0:
        for (int k = 0; k < kBatch; ++k) {
          if (MPI_Wait(&requests[k], &status) != MPI_SUCCESS) ++args->failures;
        }
        break;
      case 1:
        for (int k = 0; k < kBatch; ++k) {
          int done = 0;
          while (!done) {
            if (MPI_Test(&requests[k], &done, &status) != MPI_SUCCESS) {
              ++args->failures;
              break;
            }
          }
        }
        break;
      case 2:
        if (MPI_Waitall(kBatch, requests, MPI_STATUSES_IGNORE) != MPI_SUCCESS) ++args->failures;
        break;
      default:
        for (int k = 0; k < kBatch; ++k) {
          int index = MPI_UNDEFINED;
          if (MPI_Waitany(kBatch, requests, &index, &status) != MPI_SUCCESS) ++args->failures;
        }
    }
    for (int k = 0; k < kBatch; ++k) {
      if (out[k] != in[k]) ++args->failures;
    }
  }
  return NULL;
}

static void check_busy_threads(void) {
  MPIX_Offload_pool pool = make_pool("sidecore_scope", "node");
  MPIX_Offload_function echo = lookup(pool, "echo");
  struct busy_args args[kThreads];
  pthread_t threads[kThreads];
  for (int t = 0; t < kThreads; ++t) {
    args[t] = (struct busy_args){echo, t, 0};
    pthread_create(&threads[t], NULL, busy_thread, &args[t]);
  }
  int failures_seen = 0;
  for (int t = 0; t < kThreads; ++t) {
    pthread_join(threads[t], NULL);
    failures_seen += args[t].failures;
  }
  CHECK(failures_seen == 0, "MPI_THREAD_MULTIPLE: %d threads x %d tasks: %d failures", kThreads, kThreadTasks,
        failures_seen);
  MPIX_Offload_function_free(&echo);
  int rc = MPIX_Offload_pool_free(&pool);
  CHECK(rc == MPI_SUCCESS, "pool_free after the threads: rc %d", rc);
}

/* The executor is killed while every rank has long tasks on it: each request completes with
 * EXECUTOR_LOST within 2 s, MPI_Waitall says so per request, later submits fail the same way at
 * once, and pool_free does not hang. Rank 0 kills it (its pid is in the card). */
static void check_executor_lost(void) {
  MPIX_Offload_pool pool = make_pool("sidecore_scope", "node");
  MPIX_Offload_function sleep_fn = lookup(pool, "sleep_us");
  MPI_Barrier(MPI_COMM_WORLD); /* every lookup answered before the worker is busy for seconds */
  enum { kTasks = 6 };
  const uint32_t us = 5000000;
  MPI_Request requests[kTasks];
  MPI_Status statuses[kTasks];
  for (int t = 0; t < kTasks; ++t) MPIX_Offload_submit(sleep_fn, &us, sizeof us, NULL, 0, &requests[t]);
  MPI_Barrier(MPI_COMM_WORLD);
  double killed = now_s();
  if (rank == 0) {
    const char *card = getenv("SIDECORE_EXECUTOR");
    const char *pid_field = card != NULL ? strstr(card, " pid=") : NULL;
    const long pid = pid_field != NULL ? strtol(pid_field + 5, NULL, 10) : 0;
    CHECK(pid > 0, "no executor pid in SIDECORE_EXECUTOR '%s'", card ? card : "(unset)");
    if (pid > 0) kill((pid_t)pid, SIGKILL);
    killed = now_s();
  }
  MPI_Bcast(&killed, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  int rc = MPI_Waitall(kTasks, requests, statuses);
  const double elapsed = now_s() - killed;
  CHECK(rc == MPI_ERR_IN_STATUS, "MPI_Waitall over tasks of a killed executor: rc %d", rc);
  finish_pending(kTasks, requests, statuses);
  for (int t = 0; t < kTasks; ++t) {
    CHECK(kind_of(statuses[t].MPI_ERROR) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "task %d: kind %d", t,
          kind_of(statuses[t].MPI_ERROR));
  }
  CHECK(elapsed < scaled_s(2.0), "EXECUTOR_LOST took %.2f s (bound: 2 s, scaled %.2f)", elapsed, scaled_s(2.0));
  MPI_Request late = MPI_REQUEST_NULL;
  MPI_Status status;
  rc = MPIX_Offload_submit(sleep_fn, &us, sizeof us, NULL, 0, &late);
  if (rc == MPI_SUCCESS) rc = MPI_Wait(&late, &status);  /* MPI_Wait returns the request's error */
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "a submit after the loss: kind %d", kind_of(rc));
  MPIX_Offload_function_free(&sleep_fn);
  rc = MPIX_Offload_pool_free(&pool);
  CHECK(rc == MPI_SUCCESS, "pool_free after the loss: rc %d", rc);
}

/* --- failure injection (SIDECORE_FAULT=point[:n]) ---------------------------------------------- */

static int faults_seen = 0;

/* Under an armed fault, a call either succeeds or fails with the kind of a client that failed
 * internally; the rank itself always survives. */
static int ok_or_lost(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return 1;
  CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_EXECUTOR_LOST, "%s under SIDECORE_FAULT: rc %d, kind %d", what, rc,
        kind_of(rc));
  ++faults_seen;
  return 0;
}

/* Every MPIX call and every request callback once, tolerating the one injected failure; with
 * `strict`, nothing may fail. With `await_thread`, the round keeps a task in flight until a call
 * reports the failure (or 30 s pass): a fault on the progress thread fires at that thread's first
 * visit to the pool, which the application's thread may never wait for (MPICH's poll functions and
 * Open MPI's hook make all the progress a round needs), so the whole round can be over before it. */
static void fault_round(int strict, int await_thread) {
  const int seen_before = faults_seen;
  MPIX_Offload_pool pool = MPIX_OFFLOAD_POOL_NULL;
  if (!ok_or_lost(MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool), "pool_create")) {
    CHECK(pool == MPIX_OFFLOAD_POOL_NULL, "a failed pool_create leaves the handle NULL");
    return;
  }
  int local = -1, total = -1;
  ok_or_lost(MPIX_Offload_pool_size(pool, &local, &total), "pool_size");
  MPIX_Offload_function echo = MPIX_OFFLOAD_FUNCTION_NULL, slow = MPIX_OFFLOAD_FUNCTION_NULL;
  ok_or_lost(MPIX_Offload_function_lookup(pool, library, "echo", &echo), "lookup echo");
  ok_or_lost(MPIX_Offload_function_lookup(pool, library, "sleep_us", &slow), "lookup sleep_us");
  for (int64_t i = 0; i < 20 && echo != MPIX_OFFLOAD_FUNCTION_NULL; ++i) {
    int64_t out = -1;
    MPI_Request request = MPI_REQUEST_NULL;
    if (!ok_or_lost(MPIX_Offload_submit(echo, &i, sizeof i, &out, sizeof out, &request), "submit")) {
      CHECK(request == MPI_REQUEST_NULL, "a failed submit leaves no request");
      continue;
    }
    if (ok_or_lost(MPI_Wait(&request, MPI_STATUS_IGNORE), "MPI_Wait")) CHECK(out == i, "echo %d gave %d", (int)i, (int)out);
    CHECK(request == MPI_REQUEST_NULL, "the request is freed after MPI_Wait");
  }
  const double give_up = MPI_Wtime() + 30.0;
  while (await_thread && faults_seen == seen_before && slow != MPIX_OFFLOAD_FUNCTION_NULL && MPI_Wtime() < give_up) {
    uint32_t busy_us = 2000;
    MPI_Request busy = MPI_REQUEST_NULL;
    if (ok_or_lost(MPIX_Offload_submit(slow, &busy_us, sizeof busy_us, NULL, 0, &busy), "submit sleep_us (awaiting)")) {
      ok_or_lost(MPI_Wait(&busy, MPI_STATUS_IGNORE), "MPI_Wait (awaiting)");
    }
  }
  MPI_Request request = MPI_REQUEST_NULL;
  uint32_t us = 1000;
  if (slow != MPIX_OFFLOAD_FUNCTION_NULL &&
      ok_or_lost(MPIX_Offload_submit(slow, &us, sizeof us, NULL, 0, &request), "submit sleep_us")) {
    ok_or_lost(MPI_Cancel(&request), "MPI_Cancel");
    ok_or_lost(MPI_Wait(&request, MPI_STATUS_IGNORE), "MPI_Wait after MPI_Cancel");
  }
  MPIX_Offload_function *functions[] = {&echo, &slow};
  for (int f = 0; f < 2; ++f) {
    if (*functions[f] == MPIX_OFFLOAD_FUNCTION_NULL) continue;
    if (!ok_or_lost(MPIX_Offload_function_free(functions[f]), "function_free")) {
      CHECK(MPIX_Offload_function_free(functions[f]) == MPI_SUCCESS, "function_free again after a failure");
    }
  }
  if (!ok_or_lost(MPIX_Offload_pool_free(&pool), "pool_free")) {
    CHECK(MPIX_Offload_pool_free(&pool) == MPI_SUCCESS, "pool_free again after a failure");
  }
  CHECK(pool == MPIX_OFFLOAD_POOL_NULL, "pool_free sets the handle to NULL");
  if (strict) CHECK(faults_seen == seen_before, "%d call(s) failed after the fault was spent", faults_seen - seen_before);
}

/* The point armed by SIDECORE_FAULT fires once: the rank sees it as an error code or an error
 * completion, survives, and the next pool works. */
static void check_fault(void) {
  const char *spec = getenv("SIDECORE_FAULT");
  CHECK(spec != NULL && *spec != '\0', "the fault scenario needs SIDECORE_FAULT");
  if (spec == NULL) return;
  int kind = -1;
  ok_or_lost(MPIX_Offload_error_kind(MPI_SUCCESS, &kind), "error_kind");
  fault_round(0, strncmp(spec, "progress_thread", 15) == 0);
  /* MPI may drop the return value of a request's free or cancel callback (Open MPI does); a
   * client's destructor has nobody to report to; and a client that fails while the pool connects
   * leaves a pool that uses its fallback (inline) instead. There the fault only has to leave the
   * rank running and the request gone. */
  const int observable = strncmp(spec, "grequest_free", 13) != 0 && strncmp(spec, "grequest_cancel", 15) != 0 &&
                         strncmp(spec, "client_", 7) != 0;
  CHECK(!observable || faults_seen > 0, "SIDECORE_FAULT=%s: no call reported the injected failure", spec);
  fault_round(1, 0);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr,
            "usage: %s executor|threads|lost|inline|error|auth|fault single|funneled|serialized|multiple LIBRARY\n",
            argv[0]);
    return 2;
  }
  const char *scenario = argv[1], *level_name = argv[2];
  library = argv[3];
  int required = MPI_THREAD_SINGLE;
  if (strcmp(level_name, "funneled") == 0) required = MPI_THREAD_FUNNELED;
  if (strcmp(level_name, "serialized") == 0) required = MPI_THREAD_SERIALIZED;
  if (strcmp(level_name, "multiple") == 0) required = MPI_THREAD_MULTIPLE;
  int provided = -1;
  MPI_Init_thread(&argc, &argv, required, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  snprintf(check_who, sizeof check_who, "rank %d", rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  CHECK(provided >= required, "MPI provides thread level %d, %d asked", provided, required);

  if (strcmp(scenario, "executor") == 0) {
    MPIX_Offload_pool pool = make_pool("sidecore_scope", "node");
    int local = -1, total = -1;
    MPIX_Offload_pool_size(pool, &local, &total);
    CHECK(local >= 1 && total >= local, "pool_size under sidecore-run: local %d total %d", local, total);
    check_data_and_status(pool);
    check_function_errors(pool);
    check_bad_arguments(pool);
    check_mixed_completion(pool);
    check_cancel(pool, 1);
    /* The ranks share the executor's one worker: without the barrier, the tasks of a rank still in
     * check_cancel (80 of 2 ms each) queue ahead of this check's task, whose output is expected
     * within a bound that assumes an idle worker (seen under MPICH on 4 ranks). */
    MPI_Barrier(MPI_COMM_WORLD);
    check_background_progress(pool);
    if (provided == MPI_THREAD_MULTIPLE) {
      check_threads(pool);
      check_cancel_while_completing(pool);
    }
    int rc = MPIX_Offload_pool_free(&pool);
    CHECK(rc == MPI_SUCCESS && pool == MPIX_OFFLOAD_POOL_NULL, "pool_free: rc %d", rc);
    MPIX_Offload_pool stale = pool;
    rc = MPIX_Offload_pool_free(&stale);
    CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_BAD_ARG, "pool_free of a freed pool: kind %d", kind_of(rc));
    check_request_free();
    check_timeout();
  } else if (strcmp(scenario, "threads") == 0) {
    CHECK(provided == MPI_THREAD_MULTIPLE, "the threads scenario needs MPI_THREAD_MULTIPLE");
    if (provided == MPI_THREAD_MULTIPLE) check_busy_threads();
  } else if (strcmp(scenario, "lost") == 0) {
    check_executor_lost();
  } else if (strcmp(scenario, "fault") == 0) {
    check_fault();
  } else if (strcmp(scenario, "inline") == 0) {
    MPIX_Offload_pool pool = make_pool("sidecore_fallback", "inline");
    int local = -1, total = -1;
    MPIX_Offload_pool_size(pool, &local, &total);
    CHECK(local == 0 && total == 0, "no executor: pool_size %d %d", local, total);
    check_data_and_status(pool);
    check_function_errors(pool);
    check_mixed_completion(pool);
    MPIX_Offload_pool_free(&pool);
  } else if (strcmp(scenario, "error") == 0) {
    MPIX_Offload_pool pool = make_pool("sidecore_fallback", "error");
    MPIX_Offload_function echo = lookup(pool, "echo");
    char buffer[8] = "x";
    MPI_Request request = MPI_REQUEST_NULL;
    int rc = MPIX_Offload_submit(echo, buffer, sizeof buffer, buffer, sizeof buffer, &request);
    CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_NO_EXECUTOR && request == MPI_REQUEST_NULL,
          "fallback=error without an executor: kind %d", kind_of(rc));
    MPIX_Offload_function_free(&echo);
    MPIX_Offload_pool_free(&pool);
  } else if (strcmp(scenario, "auth") == 0) {
    MPIX_Offload_pool pool = MPIX_OFFLOAD_POOL_NULL;
    int rc = MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, &pool);
    CHECK(kind_of(rc) == MPIX_OFFLOAD_ERR_AUTH && pool == MPIX_OFFLOAD_POOL_NULL, "wrong token: kind %d",
          kind_of(rc));
  } else {
    CHECK(0, "unknown scenario %s", scenario);
  }

  int total_failures = 0;
  MPI_Allreduce(&failures, &total_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) {
    printf("%s/%s on %d ranks: %d checks per rank, %d failures\n", scenario, level_name, size, checks,
           total_failures);
  }
  MPI_Finalize();
  return total_failures == 0 ? 0 : 1;
}
