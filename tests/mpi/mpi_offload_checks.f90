! The mpi tier's checks in Fortran, through the module mpix_offload (mpi_f08 style):
!   mpi_offload_checks_f08 executor|inline LIBRARY
! executor: an executor serves the ranks (sidecore-run); inline: none, tasks run in the rank.
! Every rank checks sizes from 0 B to 4 MiB, offload requests completed by one MPI_Waitall with a
! halo exchange, 1 000 tasks in flight, error kinds (FUNCTION with the return value in MPI_TAG,
! NOT_FOUND), a timeout (executor only) and bad arguments (a strided section, a byte count beyond
! the buffer: BAD_ARG, nothing written). Prints "ok" on rank 0 when every rank passed.
program mpi_offload_checks_f08
  use, intrinsic :: iso_fortran_env, only: int8, int32, int64, error_unit
  use mpi_f08
  use mpix_offload
  implicit none

  character(len=4096) :: mode, library
  integer :: rank, nranks, failures, total_failures
  type(MPIX_Offload_pool) :: pool
  type(MPIX_Offload_function) :: echo, ret, sleeper

  call MPI_Init()
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks)
  call MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN)
  if (command_argument_count() /= 2) then
    write (error_unit, '(a)') 'usage: mpi_offload_checks_f08 executor|inline LIBRARY'
    call MPI_Abort(MPI_COMM_WORLD, 2)
  end if
  call get_command_argument(1, mode)
  call get_command_argument(2, library)
  failures = 0

  call MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, pool)
  call check_pool_size()
  call MPIX_Offload_function_lookup(pool, library, 'echo', echo)
  call MPIX_Offload_function_lookup(pool, library, 'return_value', ret)
  call MPIX_Offload_function_lookup(pool, library, 'sleep_us', sleeper)

  call check_sizes()
  call check_halo_and_offload()
  call check_many_in_flight()
  call check_error_kinds()
  if (trim(mode) == 'executor') call check_timeout()
  call check_bad_arguments()

  call MPIX_Offload_function_free(echo)
  call MPIX_Offload_function_free(ret)
  call MPIX_Offload_function_free(sleeper)
  call MPIX_Offload_pool_free(pool)
  if (.not. pool_is_null(pool)) call fail('pool_free left the handle set')

  call MPI_Allreduce(failures, total_failures, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD)
  if (rank == 0 .and. total_failures == 0) print '(a)', 'ok'
  call MPI_Finalize()
  if (total_failures /= 0) stop 1

contains

  subroutine fail(what)
    character(len=*), intent(in) :: what
    write (error_unit, '(a,i0,a,a)') 'rank ', rank, ': ', what
    failures = failures + 1
  end subroutine fail

  logical function pool_is_null(p)
    use, intrinsic :: iso_c_binding, only: c_associated
    type(MPIX_Offload_pool), intent(in) :: p
    pool_is_null = .not. c_associated(p%handle)
  end function pool_is_null

  ! A failed call or request whose error code is of kind `expected`.
  subroutine expect_kind(code, expected, what)
    integer, intent(in) :: code, expected
    character(len=*), intent(in) :: what
    integer :: kind
    if (code == MPI_SUCCESS) then
      call fail(what // ' (it succeeded)')
      return
    end if
    call MPIX_Offload_error_kind(code, kind)
    if (kind /= expected) call fail(what)
  end subroutine expect_kind

  subroutine check_pool_size()
    integer :: local, total
    call MPIX_Offload_pool_size(pool, local, total)
    if (trim(mode) == 'executor' .and. (local < 1 .or. total < local)) call fail('pool_size: no local worker')
    if (trim(mode) == 'inline' .and. total /= 0) call fail('pool_size: workers without an executor')
  end subroutine check_pool_size

  ! Echo of every size class: empty, tiny, around the inline limit, and MiBs (RMA).
  subroutine check_sizes()
    integer, parameter :: sizes(8) = [0, 1, 7, 4096, 4097, 65536, 1048576, 4194304]
    integer(int8), allocatable, asynchronous :: in(:), out(:)
    type(MPI_Request) :: request
    type(MPI_Status) :: status
    integer :: s, n, j, count, ierror
    do s = 1, size(sizes)
      n = sizes(s)
      allocate (in(max(n, 1)), out(n + 16))
      in = int(modulo([(i_of(s, j), j = 1, size(in))], 256) - 128, int8)
      out = -1_int8
      call MPIX_Offload_submit(echo, in, int(n, MPI_COUNT_KIND), out, int(n, MPI_COUNT_KIND), request, ierror)
      if (ierror /= MPI_SUCCESS) call fail('submit failed for an echo')
      call MPI_Wait(request, status, ierror)
      call MPI_Get_count(status, MPI_BYTE, count)
      if (ierror /= MPI_SUCCESS .or. count /= n) then
        call fail('echo: wrong completion')
      else if (n > 0) then
        if (any(out(1:n) /= in(1:n))) call fail('echo: output differs from input')
      end if
      if (any(out(n + 1:) /= -1_int8)) call fail('echo wrote past out_bytes')
      deallocate (in, out)
    end do
  end subroutine check_sizes

  integer function i_of(s, j)
    integer, intent(in) :: s, j
    i_of = j * 31 + s * 7
  end function i_of

  ! Offload requests and a ring halo exchange completed together by one MPI_Waitall.
  subroutine check_halo_and_offload()
    integer, parameter :: tasks = 16
    integer(int64), asynchronous :: in(tasks), out(tasks)
    integer(int64), asynchronous :: halo_out(64), halo_left(64), halo_right(64)
    type(MPI_Request) :: requests(tasks + 4)
    type(MPI_Status) :: statuses(tasks + 4)
    integer :: t, left, right, ierror
    left = modulo(rank - 1, nranks)
    right = modulo(rank + 1, nranks)
    halo_out = rank
    do t = 1, tasks
      in(t) = int(rank, int64) * 1000 + t
      out(t) = -1
      call MPIX_Offload_submit(echo, in(t), 8_MPI_COUNT_KIND, out(t), 8_MPI_COUNT_KIND, requests(t))
    end do
    call MPI_Irecv(halo_left, 64, MPI_INTEGER8, left, 7, MPI_COMM_WORLD, requests(tasks + 1))
    call MPI_Irecv(halo_right, 64, MPI_INTEGER8, right, 8, MPI_COMM_WORLD, requests(tasks + 2))
    call MPI_Isend(halo_out, 64, MPI_INTEGER8, right, 7, MPI_COMM_WORLD, requests(tasks + 3))
    call MPI_Isend(halo_out, 64, MPI_INTEGER8, left, 8, MPI_COMM_WORLD, requests(tasks + 4))
    call MPI_Waitall(tasks + 4, requests, statuses, ierror)
    if (ierror /= MPI_SUCCESS) call fail('halo: MPI_Waitall failed')
    if (any(out /= in)) call fail('halo: an offload result is wrong')
    if (any(halo_left /= left) .or. any(halo_right /= right)) call fail('halo: wrong halo')
  end subroutine check_halo_and_offload

  ! 1 000 tasks at once (more than the credits: the rest wait in the client), one MPI_Waitall.
  subroutine check_many_in_flight()
    integer, parameter :: tasks = 1000
    integer(int64), allocatable, asynchronous :: in(:), out(:)
    type(MPI_Request), allocatable :: requests(:)
    type(MPI_Status), allocatable :: statuses(:)
    integer :: t, ierror
    allocate (in(tasks), out(tasks), requests(tasks), statuses(tasks))
    do t = 1, tasks
      in(t) = int(t, int64) * 7919 + rank
      out(t) = 0
      call MPIX_Offload_submit(echo, in(t), 8_MPI_COUNT_KIND, out(t), 8_MPI_COUNT_KIND, requests(t))
    end do
    call MPI_Waitall(tasks, requests, statuses, ierror)
    if (ierror /= MPI_SUCCESS) call fail('many: MPI_Waitall failed')
    if (any(out /= in)) call fail('many: a result is wrong')
  end subroutine check_many_in_flight

  subroutine check_error_kinds()
    integer(int32), asynchronous :: value
    integer(int8), asynchronous :: nothing(1)
    type(MPI_Request) :: request
    type(MPI_Status) :: status
    type(MPIX_Offload_function) :: missing
    integer :: ierror, version_length
    logical :: done
    character(len=MPI_MAX_LIBRARY_VERSION_STRING) :: version
    value = 42
    call MPIX_Offload_submit(ret, value, 4_MPI_COUNT_KIND, nothing, 0_MPI_COUNT_KIND, request)
    call MPI_Get_library_version(version, version_length)
    if (index(version, 'Open MPI') > 0) then
      ! Open MPI 4.1's Fortran MPI_Wait (and Waitall, Test) copy the status back only when the
      ! call succeeds, so a failed request's tag is read with MPI_Request_get_status before the wait.
      done = .false.
      do while (.not. done)
        call MPI_Request_get_status(request, done, status)
      end do
      if (status%MPI_TAG /= 42) call fail('return 42: MPI_TAG is not the return value')
      call MPI_Wait(request, status, ierror)
    else
      ! MPICH's MPI_Request_get_status does not poll generalized requests, so below
      ! MPI_THREAD_MULTIPLE a loop on it alone would never see the task end (docs/mpi.md); its
      ! Fortran MPI_Wait returns the failed request's status.
      call MPI_Wait(request, status, ierror)
      if (status%MPI_TAG /= 42) call fail('return 42: MPI_TAG is not the return value')
    end if
    call expect_kind(ierror, MPIX_OFFLOAD_ERR_FUNCTION, 'return 42: not FUNCTION')
    call MPIX_Offload_function_lookup(pool, library, 'no_such_symbol', missing, ierror)
    call expect_kind(ierror, MPIX_OFFLOAD_ERR_NOT_FOUND, 'missing symbol: not NOT_FOUND')
  end subroutine check_error_kinds

  ! A pool whose tasks time out after 200 ms; a 3 s task gets TIMEOUT.
  subroutine check_timeout()
    type(MPI_Info) :: info
    type(MPIX_Offload_pool) :: short
    type(MPIX_Offload_function) :: slow
    integer(int32), asynchronous :: us
    integer(int8), asynchronous :: nothing(1)
    type(MPI_Request) :: request
    type(MPI_Status) :: status
    integer :: ierror
    call MPI_Info_create(info)
    call MPI_Info_set(info, 'sidecore_timeout_ms', '200')
    call MPIX_Offload_pool_create(MPI_COMM_WORLD, info, short)
    call MPI_Info_free(info)
    call MPIX_Offload_function_lookup(short, library, 'sleep_us', slow)
    us = 3000000
    call MPIX_Offload_submit(slow, us, 4_MPI_COUNT_KIND, nothing, 0_MPI_COUNT_KIND, request)
    call MPI_Wait(request, status, ierror)
    call expect_kind(ierror, MPIX_OFFLOAD_ERR_TIMEOUT, '3 s task: not TIMEOUT')
    call MPIX_Offload_function_free(slow)
    call MPIX_Offload_pool_free(short)
  end subroutine check_timeout

  ! A strided section and a byte count beyond the buffer: BAD_ARG, a null request, nothing written.
  subroutine check_bad_arguments()
    integer(int64), asynchronous :: in(8), out(8)
    type(MPI_Request) :: request
    integer :: ierror
    in = 5
    out = -1
    call MPIX_Offload_submit(echo, in(1:8:2), 32_MPI_COUNT_KIND, out, 32_MPI_COUNT_KIND, request, ierror)
    call expect_kind(ierror, MPIX_OFFLOAD_ERR_BAD_ARG, 'strided in: not BAD_ARG')
    if (request /= MPI_REQUEST_NULL) call fail('strided in: the request is not null')
    call MPIX_Offload_submit(echo, in, 64_MPI_COUNT_KIND, out(1:8:2), 32_MPI_COUNT_KIND, request, ierror)
    call expect_kind(ierror, MPIX_OFFLOAD_ERR_BAD_ARG, 'strided out: not BAD_ARG')
    call MPIX_Offload_submit(echo, in, 64_MPI_COUNT_KIND, out, 65_MPI_COUNT_KIND, request, ierror)
    call expect_kind(ierror, MPIX_OFFLOAD_ERR_BAD_ARG, 'out_bytes > out: not BAD_ARG')
    call MPIX_Offload_submit(echo, in, 65_MPI_COUNT_KIND, out, 64_MPI_COUNT_KIND, request, ierror)
    call expect_kind(ierror, MPIX_OFFLOAD_ERR_BAD_ARG, 'in_bytes > in: not BAD_ARG')
    if (any(out /= -1)) call fail('a refused submit wrote its output')
  end subroutine check_bad_arguments

end program mpi_offload_checks_f08
