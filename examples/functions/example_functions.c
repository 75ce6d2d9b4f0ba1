/* Functions the examples offload. An ordinary shared library: nothing but <sidecore/function.h>. */
#include <sidecore/function.h>

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Input: struct integrate_args. Output: double, the integral of sin(x)^2 over [from, to] by the
 * midpoint rule with `steps` steps. The executor's cores do the floating point. */
struct integrate_args {
  double from, to;
  uint64_t steps;
};

SIDECORE_FUNCTION int integrate(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  struct integrate_args args;
  if (in_bytes != sizeof args || out_capacity < sizeof(double)) return 22; /* EINVAL: wrong call */
  memcpy(&args, in, sizeof args);
  const double h = (args.to - args.from) / (double)args.steps;
  double sum = 0.0;
  for (uint64_t i = 0; i < args.steps; ++i) {
    const double x = args.from + ((double)i + 0.5) * h;
    sum += sin(x) * sin(x);
  }
  sum *= h;
  memcpy(out, &sum, sizeof sum);
  *out_bytes = sizeof sum;
  return 0;
}

/* Input: none. Output: "hello from the executor". */
SIDECORE_FUNCTION int hello(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  static const char text[] = "hello from the executor";
  (void)in;
  (void)in_bytes;
  if (out_capacity < sizeof text - 1) return 1;
  memcpy(out, text, sizeof text - 1);
  *out_bytes = sizeof text - 1;
  return 0;
}

/* Input: bytes. Output: the same bytes, each incremented by one (shows large buffers both ways). */
SIDECORE_FUNCTION int increment_bytes(const void *in, size_t in_bytes, void *out, size_t out_capacity,
                                      size_t *out_bytes) {
  if (out_capacity < in_bytes) return 1;
  const unsigned char *src = in;
  unsigned char *dst = out;
  for (size_t i = 0; i < in_bytes; ++i) dst[i] = (unsigned char)(src[i] + 1);
  *out_bytes = in_bytes;
  return 0;
}
