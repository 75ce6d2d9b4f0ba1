"""15: a task farm in Python with mpi4py. Each rank offloads the sums of the rows of a numpy array
(`sum_doubles`, functions/example_functions.c), one task per row, while a halo goes round the
ranks; one MPI.Request.Waitall completes both, and every sum is checked against numpy. It exits
non-zero when a result is wrong.

    sidecore-run --cores 1 -- mpirun -n 2 python3 15_mpi_python_task_farm.py ./libsidecore_examples.so [CHUNKS]
"""
import sys

import numpy
from mpi4py import MPI

import sidecore

comm = MPI.COMM_WORLD
rank, nranks = comm.Get_rank(), comm.Get_size()
library = sys.argv[1]
chunks = int(sys.argv[2]) if len(sys.argv) > 2 else 64

rng = numpy.random.default_rng(rank)
data = rng.random((chunks, 1024))  # one row per task, contiguous
sums = numpy.zeros(chunks)

with sidecore.Pool(comm) as pool:
    local, total = pool.size()
    row_sum = pool.lookup(library, "sum_doubles")
    requests = [row_sum.submit(data[c], sums[c:c + 1]) for c in range(chunks)]
    left, right = (rank - 1) % nranks, (rank + 1) % nranks
    halo_out, halo_in = numpy.array([float(rank)]), numpy.empty(1)
    requests += [comm.Irecv(halo_in, left), comm.Isend(halo_out, right)]
    MPI.Request.Waitall(requests)
    row_sum.free()

ok = numpy.allclose(sums, data.sum(axis=1)) and halo_in[0] == left
everyone = comm.allreduce(int(ok), op=MPI.MIN)
if rank == 0:
    where = f"{total} worker(s)" if total else "the ranks themselves (no executor: inline fallback)"
    print(f"{chunks * nranks} row sums on {where}: {'ok' if everyone else 'WRONG'}")
sys.exit(0 if ok else 1)
