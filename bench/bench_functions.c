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
  (void)in;
  (void)in_bytes;
  (void)out;
  (void)out_capacity;
  (void)out_bytes;
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
  (void)out;
  (void)out_capacity;
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

/* The soak figure's task (sidecore-bench soak): checks every byte of its input and writes an output
 * whose every byte the caller checks, so that a byte lost, moved or mixed up between tasks anywhere
 * on the way shows. The input is a header followed by a payload of any size (possibly none):
 *
 *   uint64 magic (SOAK_MAGIC), uint64 task id, uint64 seed, uint64 output bytes wanted; payload
 *
 * Byte p of the payload and byte p of the output are byte (p mod 8), little-endian, of word p / 8
 * of a stream that depends only on (seed, task id, which of the two): soak_word() below.
 * bench/soak/tasks.hpp generates and checks the same streams; any difference between the two copies
 * fails every task at once, so they cannot drift apart unnoticed. Each word is computed on its own
 * (no running state), so the loops vectorize. Returns 1 for a malformed header, 2 for a corrupted
 * payload. */
#define SOAK_MAGIC UINT64_C(0x4b414f5345524f43) /* "CORESOAK" */

static uint64_t soak_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* stream 0: the input payload, 1: the output (2 and 3 are the caller's, for the sizes). */
static uint64_t soak_key(uint64_t seed, uint64_t task, uint64_t stream) {
  return soak_mix(seed ^ soak_mix(task * 4 + stream));
}

static uint64_t soak_word(uint64_t key, uint64_t index) {
  return soak_mix(key + (index + 1) * UINT64_C(0x9e3779b97f4a7c15));
}

SIDECORE_FUNCTION int soak(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  uint64_t header[4];
  if (in_bytes < sizeof header) return 1;
  memcpy(header, in, sizeof header);
  if (header[0] != SOAK_MAGIC || header[3] > out_capacity) return 1;
  const unsigned char *payload = (const unsigned char *)in + sizeof header;
  const size_t payload_bytes = in_bytes - sizeof header;
  const uint64_t in_key = soak_key(header[2], header[1], 0);
  const size_t words = payload_bytes / 8;
  uint64_t differ = 0;
  for (size_t i = 0; i < words; ++i) {
    uint64_t word;
    memcpy(&word, payload + 8 * i, sizeof word);
    differ |= word ^ soak_word(in_key, i);
  }
  if (payload_bytes % 8) {
    uint64_t word = 0, expected = soak_word(in_key, words);
    memcpy(&word, payload + 8 * words, payload_bytes % 8);
    /* compare only the bytes the payload has: the first ones of the word in memory */
    memset((unsigned char *)&expected + payload_bytes % 8, 0, 8 - payload_bytes % 8);
    differ |= word ^ expected;
  }
  if (differ) return 2;

  const size_t n = (size_t)header[3];
  const uint64_t out_key = soak_key(header[2], header[1], 1);
  unsigned char *o = (unsigned char *)out;
  for (size_t i = 0; i < n / 8; ++i) {
    const uint64_t word = soak_word(out_key, i);
    memcpy(o + 8 * i, &word, sizeof word);
  }
  if (n % 8) {
    const uint64_t word = soak_word(out_key, n / 8);
    memcpy(o + 8 * (n / 8), &word, n % 8);
  }
  *out_bytes = n;
  return 0;
}
