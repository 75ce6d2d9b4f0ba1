/* What the self-checking MPI test programs (mpi_offload_checks, multinode_checks) share: CHECK,
 * which counts checks and failures and names the failing rank, and two small helpers. Each program
 * includes it once and sets check_who as soon as it knows its rank. */
#ifndef SIDECORE_TESTS_MPI_CHECK_H
#define SIDECORE_TESTS_MPI_CHECK_H

#include <mpi.h>
#include <mpix_offload.h>
#include <stdio.h>
#include <time.h>

#include "../support/time_scale.h"

static int rank = 0, size = 1, failures = 0, checks = 0;
static char check_who[128] = "rank ?"; /* "rank 3", or with more, e.g. "rank 3 (node2)" */

#define CHECK(cond, ...)                                                    \
  do {                                                                      \
    ++checks;                                                               \
    if (!(cond)) {                                                          \
      ++failures;                                                           \
      fprintf(stderr, "%s: FAIL %s:%d: ", check_who, __FILE__, __LINE__);   \
      fprintf(stderr, __VA_ARGS__);                                         \
      fprintf(stderr, "\n");                                                \
    }                                                                       \
  } while (0)

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A bound of `seconds` on elapsed time, stretched by SIDECORE_TEST_TIME_SCALE. */
static inline double scaled_s(double seconds) { return seconds * sidecore_test_time_scale(); }

/* The MPIX_OFFLOAD_ERR_* kind of an error code (-1 when it is none of Sidecore's). */
static inline int kind_of(int code) {
  int kind = -1;
  MPIX_Offload_error_kind(code, &kind);
  return kind;
}

#endif
