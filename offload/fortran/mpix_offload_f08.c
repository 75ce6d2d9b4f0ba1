/* The C side of the Fortran module mpix_offload (mpix_offload.f90): MPI handles arrive as Fortran
 * integers and are converted with the MPI_*_f2c/c2f calls; choice buffers arrive as C descriptors
 * (ISO_Fortran_binding.h), which say whether the buffer is contiguous and how many bytes it holds,
 * so that a strided array section or a byte count beyond the buffer is refused (BAD_ARG) before
 * anything could be read or written out of bounds. */
#include <ISO_Fortran_binding.h>
#include <mpi.h>
#include <stdio.h>

#include "mpix_offload.h"

/* libsidecore_mpix: raises BAD_ARG for `why` on the function's communicator, as the C calls do. */
int sidecore_mpix_refuse(MPIX_Offload_function fn, const char *why);

#define SIDECORE_F08_API __attribute__((visibility("default")))

_Static_assert(sizeof(MPI_Count) == sizeof(long long), "the module passes MPI_Count as c_long_long");

enum { kNotContiguous = -1, kUnknownSize = -2 };

/* The bytes a buffer holds: kNotContiguous for a strided section, kUnknownSize for an assumed-size
 * array (its last extent is unknown to the callee). */
static MPI_Count buffer_bytes(const CFI_cdesc_t *buffer) {
  if (buffer->rank > 0 && !CFI_is_contiguous(buffer)) return kNotContiguous;
  MPI_Count bytes = (MPI_Count)buffer->elem_len;
  for (int r = 0; r < buffer->rank; ++r) {
    if (buffer->dim[r].extent < 0) return kUnknownSize;
    bytes *= (MPI_Count)buffer->dim[r].extent;
  }
  return bytes;
}

/* BAD_ARG when `name` cannot carry `count` bytes; MPI_SUCCESS otherwise. */
static int check_buffer(MPIX_Offload_function fn, const char *name, const CFI_cdesc_t *buffer, MPI_Count count) {
  char why[200];
  const MPI_Count holds = buffer_bytes(buffer);
  if (holds == kNotContiguous) {
    snprintf(why, sizeof why, "submit: %s is not contiguous (a strided array section?): pass a contiguous copy", name);
    return sidecore_mpix_refuse(fn, why);
  }
  if (holds >= 0 && count > holds) {
    snprintf(why, sizeof why, "submit: %s_bytes is %lld, larger than %s (%lld bytes)", name, (long long)count, name,
             (long long)holds);
    return sidecore_mpix_refuse(fn, why);
  }
  return MPI_SUCCESS;
}

SIDECORE_F08_API int sidecore_f08_pool_create(MPI_Fint comm, MPI_Fint info, MPIX_Offload_pool *pool) {
  return MPIX_Offload_pool_create(MPI_Comm_f2c(comm), MPI_Info_f2c(info), pool);
}

SIDECORE_F08_API int sidecore_f08_pool_free(MPIX_Offload_pool *pool) { return MPIX_Offload_pool_free(pool); }

SIDECORE_F08_API int sidecore_f08_pool_size(MPIX_Offload_pool pool, int *local_workers, int *total_workers) {
  return MPIX_Offload_pool_size(pool, local_workers, total_workers);
}

SIDECORE_F08_API int sidecore_f08_function_lookup(MPIX_Offload_pool pool, const char *library, const char *symbol,
                                                  MPIX_Offload_function *fn) {
  return MPIX_Offload_function_lookup(pool, library, symbol, fn);
}

SIDECORE_F08_API int sidecore_f08_function_free(MPIX_Offload_function *fn) { return MPIX_Offload_function_free(fn); }

SIDECORE_F08_API int sidecore_f08_submit(MPIX_Offload_function fn, const CFI_cdesc_t *in, MPI_Count in_bytes,
                                         CFI_cdesc_t *out, MPI_Count out_bytes, MPI_Fint *request) {
  *request = MPI_Request_c2f(MPI_REQUEST_NULL); /* whatever fails, MPI_Wait on it returns at once */
  int rc = check_buffer(fn, "in", in, in_bytes);
  if (rc == MPI_SUCCESS) rc = check_buffer(fn, "out", out, out_bytes);
  if (rc != MPI_SUCCESS) return rc;
  MPI_Request started = MPI_REQUEST_NULL;
  rc = MPIX_Offload_submit(fn, in->base_addr, in_bytes, out->base_addr, out_bytes, &started);
  *request = MPI_Request_c2f(started);
  return rc;
}

SIDECORE_F08_API int sidecore_f08_error_kind(int errorcode, int *kind) {
  return MPIX_Offload_error_kind(errorcode, kind);
}
