! Built against an installed Sidecore with mpifort and pkg-config sidecore-fortran, and with
! find_package(sidecore) (sidecore::mpif08).
program fortran_consumer
  use, intrinsic :: iso_fortran_env, only: int64
  use mpi_f08
  use mpix_offload
  implicit none
  character(len=4096) :: library
  type(MPIX_Offload_pool) :: pool
  type(MPIX_Offload_function) :: echo
  type(MPI_Request) :: request
  integer(int64), asynchronous :: in(4), out(4)
  integer :: local, total, ierror
  logical :: ok
  call MPI_Init()
  if (command_argument_count() /= 1) call MPI_Abort(MPI_COMM_WORLD, 2)
  call get_command_argument(1, library)
  call MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, pool)
  call MPIX_Offload_function_lookup(pool, library, 'echo', echo)
  in = [1_int64, 2_int64, 3_int64, 4_int64]
  out = 0
  call MPIX_Offload_submit(echo, in, 32_MPI_COUNT_KIND, out, 32_MPI_COUNT_KIND, request)
  call MPI_Wait(request, MPI_STATUS_IGNORE, ierror)
  call MPIX_Offload_pool_size(pool, local, total)
  ok = ierror == MPI_SUCCESS .and. all(out == in) .and. local > 0
  call MPIX_Offload_function_free(echo)
  call MPIX_Offload_pool_free(pool)
  if (ok) then
    print '(a)', 'fortran consumer: ok'
  else
    print '(a)', 'fortran consumer: wrong result'
  end if
  call MPI_Finalize()
  if (.not. ok) stop 1
end program fortran_consumer
