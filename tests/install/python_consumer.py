"""Run against an installed Sidecore: the package sidecore as Debian's python3 finds it."""
import sys

import numpy
from mpi4py import MPI

import sidecore

with sidecore.Pool(MPI.COMM_WORLD) as pool:
    echo = pool.lookup(sys.argv[1], "echo")
    data = numpy.arange(8, dtype=numpy.float64)
    out = numpy.zeros(8)
    status = MPI.Status()
    echo.submit(data, out).Wait(status)
    local, _ = pool.size()
    ok = numpy.array_equal(data, out) and status.Get_count(MPI.BYTE) == 64 and local > 0
    echo.free()
print("python consumer:", "ok" if ok else "wrong result")
sys.exit(0 if ok else 1)
