/* Functions sidecore-bench offloads, kept apart from the test functions so the bench does not
 * depend on the test tree. Each does as little as its measurement allows, so the figures show the
 * cost of moving a task, not of running it; spin_us, the harvest figure's compute task, is the one
 * whose running time is the point. */
#include <sidecore/function.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

/* Does nothing: the round-trip floor. */
SIDECORE_FUNCTION int noop(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)in; (void)in_bytes; (void)out; (void)out_capacity; (void)out_bytes;
  return 0;
}

/* Copies the input to the output (as much as fits): the same exchange as the raw echo baseline. */
SIDECORE_FUNCTION int echo(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  size_t n = in_bytes < out_capacity ? in_bytes : out_capacity;
  if (n) memcpy(out, in, n);
  *out_bytes = n;
  return 0;
}

/* Takes an input of any size without reading it and answers with its size (a uint64): the input
 * has been moved to the executor, which is what the bandwidth figure measures. */
SIDECORE_FUNCTION int consume(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)in;
  uint64_t size = (uint64_t)in_bytes;
  if (out_capacity < sizeof size) return 1;
  memcpy(out, &size, sizeof size);
  *out_bytes = sizeof size;
  return 0;
}

static int64_t elapsed_ns(const struct timespec *from, const struct timespec *to) {
  return (int64_t)(to->tv_sec - from->tv_sec) * 1000000000 + (to->tv_nsec - from->tv_nsec);
}

/* A compute task of known length (the harvest figure): busy-spins until its input (a uint64, in
 * microseconds) has passed on the monotonic clock AND as CPU time of the calling thread. It keeps
 * its CPU the whole time, as a sleep would not. The CPU-time condition charges a task for the time
 * its thread was descheduled (a progress thread or anything else running on the same core), which
 * a spin on the wall clock alone would hide. Cost beyond the spin: two reads of the thread's CPU
 * clock (a system call, about 0.3 us each on the development VM) per task. No output. */
SIDECORE_FUNCTION int spin_us(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)out; (void)out_capacity;
  uint64_t us = 0;
  if (in_bytes != sizeof us) return 1;
  memcpy(&us, in, sizeof us);
  const int64_t target = (int64_t)us * 1000;
  struct timespec cpu_start, cpu_now, wall_start, now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_start);
  clock_gettime(CLOCK_MONOTONIC, &wall_start);
  int64_t remaining = target;
  for (;;) {
    /* Spin on the cheap clock (vDSO) for what is left, then check the CPU clock once. */
    do {
      clock_gettime(CLOCK_MONOTONIC, &now);
    } while (elapsed_ns(&wall_start, &now) < remaining);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_now);
    const int64_t done = elapsed_ns(&cpu_start, &cpu_now);
    if (done >= target) break;
    remaining = target - done; /* the thread was descheduled for this long: spin it again */
    wall_start = now;
  }
  *out_bytes = 0;
  return 0;
}
