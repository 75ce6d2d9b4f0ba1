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

/* Input: doubles. Output: their sum, one double (the Python example's row sums). */
SIDECORE_FUNCTION int sum_doubles(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  if (in_bytes % sizeof(double) != 0 || out_capacity < sizeof(double)) return 22; /* EINVAL: wrong call */
  double sum = 0.0, value;
  for (size_t i = 0; i < in_bytes / sizeof value; ++i) {
    memcpy(&value, (const char *)in + i * sizeof value, sizeof value);
    sum += value;
  }
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

/* Input: n + 2 doubles (a chunk of a 1-D array with one neighbour on each side). Output: n
 * doubles, one smoothing step: out[i] = (in[i] + in[i + 1] + in[i + 2]) / 3. Example 11 computes
 * the same expression in the same order, so offloaded and local results agree to the bit. */
SIDECORE_FUNCTION int smooth3(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  if (in_bytes % sizeof(double) != 0 || in_bytes < 3 * sizeof(double)) return 22; /* EINVAL */
  const size_t n = in_bytes / sizeof(double) - 2;
  if (out_capacity < n * sizeof(double)) return 22;
  const double *src = in;
  double *dst = out;
  for (size_t i = 0; i < n; ++i) dst[i] = (src[i] + src[i + 1] + src[i + 2]) / 3.0;
  *out_bytes = n * sizeof(double);
  return 0;
}

/* Input: struct spin_args. Output: uint64_t, a hash of `seed`, after keeping the core busy for
 * `spin_ns` nanoseconds. It spins on the clock instead of sleeping, so it models a compute task of
 * a known length; the output depends only on the seed, so it is the same wherever the task ran. */
struct spin_args {
  uint64_t spin_ns;
  uint64_t seed;
};

static uint64_t monotonic_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

SIDECORE_FUNCTION int spin_task(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes) {
  struct spin_args args;
  if (in_bytes != sizeof args || out_capacity < sizeof(uint64_t)) return 22; /* EINVAL */
  memcpy(&args, in, sizeof args);
  const uint64_t start = monotonic_ns();
  uint64_t x = args.seed + 0x9e3779b97f4a7c15u; /* splitmix64's finalizer */
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  x ^= x >> 31;
  while (monotonic_ns() - start < args.spin_ns) {
  }
  memcpy(out, &x, sizeof x);
  *out_bytes = sizeof x;
  return 0;
}
