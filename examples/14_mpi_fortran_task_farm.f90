! 14: a task farm in Fortran. Each rank cuts its vector into chunks, offloads the sum of squares
! of every chunk (sum_of_squares, a function written in Fortran itself: functions/
! fortran_functions.f90) while it exchanges a halo with its neighbours, completes everything with
! one MPI_Waitall, and checks the total against its own computation. It prints the norm and where
! the chunks ran, and exits non-zero when a result is wrong.
!
!   sidecore-run --cores 1 -- mpirun -n 2 ./14_mpi_fortran_task_farm ./libsidecore_examples_fortran.so [CHUNKS] [CHUNK]
!       (defaults: 64 chunks of 4096 values per rank)
program mpi_fortran_task_farm
  use, intrinsic :: iso_fortran_env, only: real64, error_unit
  use mpi_f08
  use mpix_offload
  implicit none

  character(len=4096) :: library, argument
  integer :: rank, nranks, chunks, chunk, c, local, total, left, right, ierror
  real(real64), allocatable, asynchronous :: values(:), partial(:)
  real(real64), asynchronous :: halo_out, halo_in(2)
  real(real64) :: offloaded, expected, global
  type(MPIX_Offload_pool) :: pool
  type(MPIX_Offload_function) :: sum_of_squares
  type(MPI_Request), allocatable :: requests(:)

  call MPI_Init()
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks)
  if (command_argument_count() < 1) then
    write (error_unit, '(a)') 'usage: 14_mpi_fortran_task_farm LIBRARY [CHUNKS] [CHUNK]'
    call MPI_Abort(MPI_COMM_WORLD, 2)
  end if
  call get_command_argument(1, library)
  chunks = 64
  chunk = 4096
  if (command_argument_count() >= 2) then
    call get_command_argument(2, argument)
    read (argument, *) chunks
  end if
  if (command_argument_count() >= 3) then
    call get_command_argument(3, argument)
    read (argument, *) chunk
  end if

  allocate (values(chunks * chunk), partial(chunks), requests(chunks + 2))
  values = [(real(modulo(c * 37 + rank, 1000), real64) / 1000, c = 1, chunks * chunk)]
  partial = -1

  call MPIX_Offload_pool_create(MPI_COMM_WORLD, MPI_INFO_NULL, pool)
  call MPIX_Offload_pool_size(pool, local, total)
  call MPIX_Offload_function_lookup(pool, library, 'sum_of_squares', sum_of_squares)

  ! Every chunk goes out at once; contiguous slices of `values` are passed as they are.
  do c = 1, chunks
    call MPIX_Offload_submit(sum_of_squares, values((c - 1) * chunk + 1:c * chunk), int(8 * chunk, MPI_COUNT_KIND), &
                             partial(c), 8_MPI_COUNT_KIND, requests(c))
  end do
  ! Meanwhile, a halo with the neighbours on a ring: the same MPI_Waitall completes it.
  left = modulo(rank - 1, nranks)
  right = modulo(rank + 1, nranks)
  halo_out = values(1)
  call MPI_Irecv(halo_in, 1, MPI_DOUBLE_PRECISION, left, 1, MPI_COMM_WORLD, requests(chunks + 1))
  call MPI_Isend(halo_out, 1, MPI_DOUBLE_PRECISION, right, 1, MPI_COMM_WORLD, requests(chunks + 2))
  call MPI_Waitall(chunks + 2, requests, MPI_STATUSES_IGNORE, ierror)

  offloaded = sum(partial)
  expected = sum(values**2)
  call MPI_Allreduce(offloaded, global, 1, MPI_DOUBLE_PRECISION, MPI_SUM, MPI_COMM_WORLD)
  if (rank == 0 .and. total > 0) then
    print '(a,es22.15,a,i0,a,i0,a)', 'norm ', sqrt(global), ': chunks offloaded to ', total, ' worker(s), ', local, &
      ' on rank 0''s node'
  else if (rank == 0) then
    print '(a,es22.15,a)', 'norm ', sqrt(global), ': no executor, the chunks ran in the ranks (inline fallback)'
  end if
  call MPIX_Offload_function_free(sum_of_squares)
  call MPIX_Offload_pool_free(pool)
  if (abs(offloaded - expected) > 1e-9_real64 * max(1.0_real64, abs(expected))) then
    write (error_unit, '(a,i0,a,es22.15,a,es22.15)') 'rank ', rank, ': offloaded ', offloaded, ' expected ', expected
    call MPI_Finalize()
    stop 1
  end if
  call MPI_Finalize()
end program mpi_fortran_task_farm
