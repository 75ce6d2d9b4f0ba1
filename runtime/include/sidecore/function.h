/* Sidecore function ABI: what a library must export for an executor to run it.
 *
 *   #include <sidecore/function.h>
 *   SIDECORE_FUNCTION int integrate(const void *in, size_t in_bytes,
 *                                   void *out, size_t out_capacity, size_t *out_bytes);
 *
 * The executor dlopen()s the library by path and resolves the symbol by name. The function reads
 * in_bytes from `in`, writes at most out_capacity bytes to `out` and stores how many it wrote in
 * *out_bytes (left at 0 if it writes nothing). It returns 0 on success; any other value completes the
 * caller's request with an error of kind FUNCTION, and that value reaches the caller. `in` may be
 * NULL when in_bytes is 0, `out` may be NULL when out_capacity is 0. A function may run on several
 * workers at once, so it must be reentrant. Usable from C and C++.
 */
#ifndef SIDECORE_FUNCTION_H
#define SIDECORE_FUNCTION_H

#include <stddef.h>

#define SIDECORE_ABI_VERSION 1

#ifdef __cplusplus
#define SIDECORE_EXTERN_C extern "C"
#else
#define SIDECORE_EXTERN_C
#endif

/* Exported with C linkage and default visibility, whatever the library's own settings. */
#define SIDECORE_FUNCTION SIDECORE_EXTERN_C __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

typedef int (*sidecore_function_t)(const void *in, size_t in_bytes, void *out, size_t out_capacity,
                                   size_t *out_bytes);

#ifdef __cplusplus
}
#endif

#endif /* SIDECORE_FUNCTION_H */
