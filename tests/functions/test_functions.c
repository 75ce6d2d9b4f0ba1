/* Functions the test tiers offload. Written in C to prove the ABI header works from C. */
#include <sidecore/function.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Does nothing: the round-trip floor. */
SIDECORE_FUNCTION int noop(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)in; (void)in_bytes; (void)out; (void)out_capacity; (void)out_bytes;
  return 0;
}

/* Copies the input to the output (as much as fits). */
SIDECORE_FUNCTION int echo(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  size_t n = in_bytes < out_capacity ? in_bytes : out_capacity;
  if (n) memcpy(out, in, n);
  *out_bytes = n;
  return 0;
}

/* Writes where its input lies, modulo 64, as a uint64 (the input itself is not read). */
SIDECORE_FUNCTION int input_alignment(const void *in, size_t in_bytes, void *out, size_t out_capacity,
                                      size_t *out_bytes) {
  (void)in_bytes;
  uint64_t offset = (uint64_t)((uintptr_t)in % 64);
  if (out_capacity < sizeof offset) return 1;
  memcpy(out, &offset, sizeof offset);
  *out_bytes = sizeof offset;
  return 0;
}

/* Returns the int32 in its input as its return value (non-zero means error FUNCTION). */
SIDECORE_FUNCTION int return_value(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)out; (void)out_capacity; (void)out_bytes;
  int32_t value = 0;
  if (in_bytes >= sizeof value) memcpy(&value, in, sizeof value);
  return value;
}

/* Claims to have written more than fits: the executor must reject it. */
SIDECORE_FUNCTION int overflow(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)in; (void)in_bytes; (void)out;
  *out_bytes = out_capacity + 1;
  return 0;
}

/* Input: uint64 seed. Fills the whole output with bytes derived from the seed and the position. */
SIDECORE_FUNCTION int fill_pattern(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  uint64_t seed = 0;
  if (in_bytes >= sizeof seed) memcpy(&seed, in, sizeof seed);
  unsigned char *bytes = out;
  for (size_t i = 0; i < out_capacity; ++i) bytes[i] = (unsigned char)((i * 31 + seed) >> 3 ^ (i >> 12));
  *out_bytes = out_capacity;
  return 0;
}

/* Output: uint64 FNV-1a hash of the input followed by the input size. */
SIDECORE_FUNCTION int checksum(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  uint64_t hash = 1469598103934665603ull;
  const unsigned char *bytes = in;
  for (size_t i = 0; i < in_bytes; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  uint64_t result[2] = {hash, (uint64_t)in_bytes};
  if (out_capacity < sizeof result) return 1;
  memcpy(out, result, sizeof result);
  *out_bytes = sizeof result;
  return 0;
}

/* Input: uint32 microseconds to sleep. */
SIDECORE_FUNCTION int sleep_us(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)out; (void)out_capacity; (void)out_bytes;
  uint32_t us = 0;
  if (in_bytes >= sizeof us) memcpy(&us, in, sizeof us);
  usleep(us);
  return 0;
}

/* Input (optional): uint32 microseconds to sleep first, so a test can keep workers busy.
 * Output: the executor's host name and process id, "host:pid". */
SIDECORE_FUNCTION int where(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  uint32_t us = 0;
  if (in_bytes >= sizeof us) memcpy(&us, in, sizeof us);
  if (us > 0) usleep(us);
  char text[300];
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  int n = snprintf(text, sizeof text, "%s:%ld", host, (long)getpid());
  if (n < 0 || (size_t)n > out_capacity) return 1;
  memcpy(out, text, (size_t)n);
  *out_bytes = (size_t)n;
  return 0;
}

/* Input: uint32 microseconds. Sleeps, then fills the whole output with 0xAB: a late result that
 * must never reach a caller whose task timed out. */
SIDECORE_FUNCTION int sleep_then_fill(const void *in, size_t in_bytes, void *out, size_t out_capacity,
                                      size_t *out_bytes) {
  uint32_t us = 0;
  if (in_bytes >= sizeof us) memcpy(&us, in, sizeof us);
  usleep(us);
  if (out_capacity) memset(out, 0xAB, out_capacity);
  *out_bytes = out_capacity;
  return 0;
}

/* Misbehaving functions, for crash isolation: each takes its executor's server down in its own way
 * (the supervisor then starts a new one). */
SIDECORE_FUNCTION int crash_segv(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)in; (void)in_bytes; (void)out; (void)out_capacity; (void)out_bytes;
  volatile int *nowhere = NULL;
  return *nowhere;
}

SIDECORE_FUNCTION int crash_abort(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)in; (void)in_bytes; (void)out; (void)out_capacity; (void)out_bytes;
  abort();
}

SIDECORE_FUNCTION int crash_exit(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)in; (void)in_bytes; (void)out; (void)out_capacity; (void)out_bytes;
  exit(3);
}

/* Never returns (sleeps in a loop, so it costs no CPU). */
SIDECORE_FUNCTION int never_return(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)in; (void)in_bytes; (void)out; (void)out_capacity; (void)out_bytes;
  for (;;) sleep(1);
}

/* Creates the file named by its input (a path, not NUL-terminated): proof that a task ran. */
SIDECORE_FUNCTION int touch_file(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  (void)out; (void)out_capacity; (void)out_bytes;
  char path[4096];
  if (in_bytes == 0 || in_bytes >= sizeof path) return 1;
  memcpy(path, in, in_bytes);
  path[in_bytes] = '\0';
  FILE *file = fopen(path, "w");
  if (file == NULL) return 2;
  fclose(file);
  return 0;
}
