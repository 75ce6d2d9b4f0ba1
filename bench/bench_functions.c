/* Functions sidecore-bench offloads, kept apart from the test functions so the bench does not
 * depend on the test tree. Each does as little as its measurement allows, so the figures show the
 * cost of moving a task, not of running it. */
#include <sidecore/function.h>

#include <stdint.h>
#include <string.h>

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
