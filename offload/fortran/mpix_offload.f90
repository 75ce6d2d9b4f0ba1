! Sidecore's MPI extension for Fortran, in the style of mpi_f08:
!
!   use mpi_f08
!   use mpix_offload
!   type(MPIX_Offload_pool) :: pool
!   type(MPIX_Offload_function) :: fn
!   type(MPI_Request) :: request
!   call MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, pool)      ! collective
!   call MPIX_Offload_function_lookup(pool, "/path/libf.so", "integrate", fn)
!   call MPIX_Offload_submit(fn, x, 8_MPI_COUNT_KIND * n, y, 8_MPI_COUNT_KIND * n, request)
!   call MPI_Wait(request, status)                ! or MPI_Waitall with any other request
!   call MPIX_Offload_function_free(fn)
!   call MPIX_Offload_pool_free(pool)             ! collective
!
! Each call is the C call of the same name (mpix_offload.h) and behaves like it: errors go through
! the communicator's error handler, and `ierror`, when present, gets the code. Buffers are choice
! buffers of any type and rank; they must be contiguous (a non-contiguous array section is
! refused with BAD_ARG) and hold at least the byte counts given. Like any nonblocking MPI buffer,
! `in` and `out` must stay as they are until the request completes (declare them ASYNCHRONOUS where
! the compiler could otherwise move accesses across MPI_Wait).
module mpix_offload
  use, intrinsic :: iso_c_binding, only: c_ptr, c_null_ptr, c_int, c_char, c_null_char, c_long_long
  use mpi_f08, only: MPI_Comm, MPI_Info, MPI_Request, MPI_COUNT_KIND
  implicit none
  private

  type, public :: MPIX_Offload_pool
    type(c_ptr) :: handle = c_null_ptr
  end type MPIX_Offload_pool

  type, public :: MPIX_Offload_function
    type(c_ptr) :: handle = c_null_ptr
  end type MPIX_Offload_function

  ! What the free calls set handles to.
  type(MPIX_Offload_pool), parameter, public :: MPIX_OFFLOAD_POOL_NULL = MPIX_Offload_pool(c_null_ptr)
  type(MPIX_Offload_function), parameter, public :: MPIX_OFFLOAD_FUNCTION_NULL = MPIX_Offload_function(c_null_ptr)

  ! Error kinds (MPIX_Offload_error_kind), as in mpix_offload.h.
  integer, parameter, public :: MPIX_OFFLOAD_ERR_NONE = 0
  integer, parameter, public :: MPIX_OFFLOAD_ERR_NO_EXECUTOR = 1
  integer, parameter, public :: MPIX_OFFLOAD_ERR_NOT_FOUND = 2
  integer, parameter, public :: MPIX_OFFLOAD_ERR_FUNCTION = 3
  integer, parameter, public :: MPIX_OFFLOAD_ERR_EXECUTOR_LOST = 4
  integer, parameter, public :: MPIX_OFFLOAD_ERR_TIMEOUT = 5
  integer, parameter, public :: MPIX_OFFLOAD_ERR_AUTH = 6
  integer, parameter, public :: MPIX_OFFLOAD_ERR_BAD_ARG = 7

  public :: MPIX_Offload_pool_create, MPIX_Offload_pool_free, MPIX_Offload_pool_size
  public :: MPIX_Offload_function_lookup, MPIX_Offload_function_free
  public :: MPIX_Offload_submit, MPIX_Offload_error_kind

  ! The C side (mpix_offload_f08.c): MPI handles as Fortran integers, choice buffers as C
  ! descriptors (ISO_Fortran_binding.h).
  interface
    function f08_pool_create(comm, info, pool) bind(C, name="sidecore_f08_pool_create") result(rc)
      import :: c_int, c_ptr
      integer(c_int), value :: comm, info
      type(c_ptr), intent(inout) :: pool
      integer(c_int) :: rc
    end function f08_pool_create

    function f08_pool_free(pool) bind(C, name="sidecore_f08_pool_free") result(rc)
      import :: c_int, c_ptr
      type(c_ptr), intent(inout) :: pool
      integer(c_int) :: rc
    end function f08_pool_free

    function f08_pool_size(pool, local_workers, total_workers) bind(C, name="sidecore_f08_pool_size") result(rc)
      import :: c_int, c_ptr
      type(c_ptr), value :: pool
      integer(c_int), intent(out) :: local_workers, total_workers
      integer(c_int) :: rc
    end function f08_pool_size

    function f08_function_lookup(pool, library, symbol, fn) bind(C, name="sidecore_f08_function_lookup") result(rc)
      import :: c_int, c_ptr, c_char
      type(c_ptr), value :: pool
      character(kind=c_char), dimension(*), intent(in) :: library, symbol
      type(c_ptr), intent(inout) :: fn
      integer(c_int) :: rc
    end function f08_function_lookup

    function f08_function_free(fn) bind(C, name="sidecore_f08_function_free") result(rc)
      import :: c_int, c_ptr
      type(c_ptr), intent(inout) :: fn
      integer(c_int) :: rc
    end function f08_function_free

    function f08_submit(fn, in, in_bytes, out, out_bytes, request) bind(C, name="sidecore_f08_submit") result(rc)
      import :: c_int, c_ptr, c_long_long
      type(c_ptr), value :: fn
      type(*), dimension(..), intent(in), asynchronous :: in
      integer(c_long_long), value :: in_bytes  ! MPI_Count
      type(*), dimension(..), intent(inout), asynchronous :: out
      integer(c_long_long), value :: out_bytes
      integer(c_int), intent(out) :: request
      integer(c_int) :: rc
    end function f08_submit

    function f08_error_kind(errorcode, kind) bind(C, name="sidecore_f08_error_kind") result(rc)
      import :: c_int
      integer(c_int), value :: errorcode
      integer(c_int), intent(out) :: kind
      integer(c_int) :: rc
    end function f08_error_kind
  end interface

contains

  subroutine MPIX_Offload_pool_create(comm, info, pool, ierror)
    type(MPI_Comm), intent(in) :: comm
    type(MPI_Info), intent(in) :: info
    type(MPIX_Offload_pool), intent(out) :: pool
    integer, optional, intent(out) :: ierror
    integer :: rc
    pool%handle = c_null_ptr
    rc = f08_pool_create(comm%MPI_VAL, info%MPI_VAL, pool%handle)
    if (present(ierror)) ierror = rc
  end subroutine MPIX_Offload_pool_create

  subroutine MPIX_Offload_pool_free(pool, ierror)
    type(MPIX_Offload_pool), intent(inout) :: pool
    integer, optional, intent(out) :: ierror
    integer :: rc
    rc = f08_pool_free(pool%handle)
    if (present(ierror)) ierror = rc
  end subroutine MPIX_Offload_pool_free

  subroutine MPIX_Offload_pool_size(pool, local, total, ierror)
    type(MPIX_Offload_pool), intent(in) :: pool
    integer, intent(out) :: local, total
    integer, optional, intent(out) :: ierror
    integer :: rc
    rc = f08_pool_size(pool%handle, local, total)
    if (present(ierror)) ierror = rc
  end subroutine MPIX_Offload_pool_size

  subroutine MPIX_Offload_function_lookup(pool, library, symbol, fn, ierror)
    type(MPIX_Offload_pool), intent(in) :: pool
    character(len=*), intent(in) :: library, symbol
    type(MPIX_Offload_function), intent(out) :: fn
    integer, optional, intent(out) :: ierror
    integer :: rc
    fn%handle = c_null_ptr
    rc = f08_function_lookup(pool%handle, trim(library) // c_null_char, trim(symbol) // c_null_char, fn%handle)
    if (present(ierror)) ierror = rc
  end subroutine MPIX_Offload_function_lookup

  subroutine MPIX_Offload_function_free(fn, ierror)
    type(MPIX_Offload_function), intent(inout) :: fn
    integer, optional, intent(out) :: ierror
    integer :: rc
    rc = f08_function_free(fn%handle)
    if (present(ierror)) ierror = rc
  end subroutine MPIX_Offload_function_free

  subroutine MPIX_Offload_submit(fn, in, in_bytes, out, out_bytes, request, ierror)
    type(MPIX_Offload_function), intent(in) :: fn
    type(*), dimension(..), intent(in), asynchronous :: in
    integer(MPI_COUNT_KIND), intent(in) :: in_bytes
    type(*), dimension(..), intent(inout), asynchronous :: out
    integer(MPI_COUNT_KIND), intent(in) :: out_bytes
    type(MPI_Request), intent(out) :: request
    integer, optional, intent(out) :: ierror
    integer :: rc
    rc = f08_submit(fn%handle, in, int(in_bytes, c_long_long), out, int(out_bytes, c_long_long), request%MPI_VAL)
    if (present(ierror)) ierror = rc
  end subroutine MPIX_Offload_submit

  subroutine MPIX_Offload_error_kind(errorcode, kind, ierror)
    integer, intent(in) :: errorcode
    integer, intent(out) :: kind
    integer, optional, intent(out) :: ierror
    integer :: rc
    kind = MPIX_OFFLOAD_ERR_NONE
    rc = f08_error_kind(errorcode, kind)
    if (present(ierror)) ierror = rc
  end subroutine MPIX_Offload_error_kind

end module mpix_offload
