! Functions written in Fortran for Sidecore's executors: bind(C) procedures with the function ABI
! of <sidecore/function.h>,
!   int fn(const void *in, size_t in_bytes, void *out, size_t out_capacity, size_t *out_bytes);
! built into a shared library (libsidecore_examples_fortran.so) that executors load like any
! other. A function returns 0 on success and writes how many output bytes it produced; any other
! return value reaches the caller as a FUNCTION error with that value in MPI_TAG.
module sidecore_fortran_functions
  use, intrinsic :: iso_c_binding, only: c_int, c_size_t, c_ptr, c_double, c_f_pointer, c_associated
  implicit none
  private
  public :: sum_of_squares

contains

  ! The sum of the squares of the real(8) values in its input, as one real(8).
  integer(c_int) function sum_of_squares(in, in_bytes, out, out_capacity, out_bytes) bind(C, name="sum_of_squares")
    type(c_ptr), value :: in, out
    integer(c_size_t), value :: in_bytes, out_capacity
    integer(c_size_t), intent(out) :: out_bytes
    real(c_double), pointer :: values(:), result
    integer :: n
    out_bytes = 0
    if (out_capacity < 8 .or. modulo(in_bytes, 8_c_size_t) /= 0) then
      sum_of_squares = 1  ! the caller gets FUNCTION, with 1 in MPI_TAG
      return
    end if
    n = int(in_bytes / 8)
    call c_f_pointer(out, result)
    result = 0
    if (n > 0 .and. c_associated(in)) then
      call c_f_pointer(in, values, [n])
      result = sum(values**2)
    end if
    out_bytes = 8
    sum_of_squares = 0
  end function sum_of_squares

end module sidecore_fortran_functions
