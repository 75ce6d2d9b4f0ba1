"""The mpi tier's checks in Python, through the package sidecore and mpi4py:
    python3 mpi_offload_checks.py executor|inline LIBRARY
executor: an executor serves the ranks (sidecore-run); inline: none, tasks run in the rank. Every
rank checks sizes from 0 B to 4 MiB (bytes, bytearray, numpy), offload requests completed with a
halo exchange by one Waitall, 1 000 tasks in flight, error kinds (FUNCTION with the return value in
the status tag, NOT_FOUND), a timeout (executor only) and bad arguments (a read-only out, a
non-contiguous array, a size beyond the buffer: BAD_ARG naming the argument, nothing written).
Prints "ok" on rank 0 when every rank passed; exits 1 otherwise."""
import sys

import numpy
from mpi4py import MPI

import sidecore

comm = MPI.COMM_WORLD
rank, nranks = comm.Get_rank(), comm.Get_size()
mode, library = sys.argv[1], sys.argv[2]
failures = []


def fail(what):
    failures.append(what)
    print(f"rank {rank}: {what}", file=sys.stderr, flush=True)


def expect_kind(call, kind, what):
    """Runs `call`, which must raise an MPI exception of Sidecore kind `kind`; returns it."""
    try:
        call()
    except MPI.Exception as e:
        if sidecore.error_kind(e) != kind:
            fail(f"{what}: kind {sidecore.error_kind(e)} instead of {kind} ({e})")
        return e
    fail(f"{what}: no error")
    return None


def check_sizes(echo):
    for n in (0, 1, 7, 4096, 4097, 65536, 1 << 20, 4 << 20):
        data = numpy.arange(n, dtype=numpy.uint32).astype(numpy.uint8) ^ numpy.uint8(rank)
        for source in (data, data.tobytes(), bytearray(data.tobytes())):
            out = numpy.full(n + 16, 0xAB, dtype=numpy.uint8)
            status = MPI.Status()
            echo.submit(source, out, out_bytes=n).Wait(status)
            if status.Get_count(MPI.BYTE) != n or status.Get_tag() != 0:
                fail(f"echo {n} B from {type(source).__name__}: count {status.Get_count(MPI.BYTE)}")
            elif not numpy.array_equal(out[:n], data):
                fail(f"echo {n} B from {type(source).__name__}: output differs")
            if (out[n:] != 0xAB).any():
                fail(f"echo {n} B wrote past out_bytes")


def check_halo(echo):
    tasks = 16
    inputs = [numpy.array([rank * 1000 + t], dtype=numpy.int64) for t in range(tasks)]
    outputs = [numpy.zeros(1, dtype=numpy.int64) for _ in range(tasks)]
    requests = [echo.submit(i, o) for i, o in zip(inputs, outputs)]
    left, right = (rank - 1) % nranks, (rank + 1) % nranks
    send = numpy.full(64, rank, dtype=numpy.int64)
    from_left, from_right = numpy.empty(64, dtype=numpy.int64), numpy.empty(64, dtype=numpy.int64)
    requests += [comm.Irecv(from_left, left, 7), comm.Irecv(from_right, right, 8),
                 comm.Isend(send, right, 7), comm.Isend(send, left, 8)]
    MPI.Request.Waitall(requests)
    if any(int(o[0]) != int(i[0]) for i, o in zip(inputs, outputs)):
        fail("halo: an offload result is wrong")
    if (from_left != left).any() or (from_right != right).any():
        fail("halo: wrong halo")


def check_many(echo):
    inputs = numpy.arange(1000, dtype=numpy.int64) * 7919 + rank
    outputs = numpy.zeros(1000, dtype=numpy.int64)
    requests = [echo.submit(inputs[t:t + 1], outputs[t:t + 1]) for t in range(1000)]
    MPI.Request.Waitall(requests)
    if not numpy.array_equal(inputs, outputs):
        fail("many: a result is wrong")


def check_errors(pool, ret):
    status = MPI.Status()
    request = ret.submit(numpy.array([42], dtype=numpy.int32))
    expect_kind(lambda: request.Wait(status), sidecore.FUNCTION, "return 42")
    if status.Get_tag() != 42:
        fail(f"return 42: tag {status.Get_tag()}")
    expect_kind(lambda: pool.lookup(library, "no_such_symbol"), sidecore.NOT_FOUND, "missing symbol")


def check_timeout():
    with sidecore.Pool(comm, info={"sidecore_timeout_ms": "200"}) as short:
        slow = short.lookup(library, "sleep_us")
        request = slow.submit(numpy.array([3_000_000], dtype=numpy.uint32))
        expect_kind(request.Wait, sidecore.TIMEOUT, "3 s task")
        slow.free()


def check_bad_arguments(echo):
    data = numpy.arange(16, dtype=numpy.int64)
    out = numpy.full(16, -1, dtype=numpy.int64)
    e = expect_kind(lambda: echo.submit(data, b"\0" * 128), sidecore.BAD_ARG, "read-only out")
    if e is not None and "out" not in str(e):
        fail(f"read-only out: the message does not name out: {e}")
    e = expect_kind(lambda: echo.submit(data[::2], out), sidecore.BAD_ARG, "strided in")
    if e is not None and "in" not in str(e):
        fail(f"strided in: the message does not name in: {e}")
    expect_kind(lambda: echo.submit(data, out[::2]), sidecore.BAD_ARG, "strided out")
    expect_kind(lambda: echo.submit(data, out, out_bytes=129), sidecore.BAD_ARG, "out_bytes beyond out")
    expect_kind(lambda: echo.submit(data, out, in_bytes=129), sidecore.BAD_ARG, "in_bytes beyond in")
    expect_kind(lambda: echo.submit(object(), out), sidecore.BAD_ARG, "in without the buffer protocol")
    if (out != -1).any():
        fail("a refused submit wrote its output")


with sidecore.Pool(comm) as pool:
    local, total = pool.size()
    if mode == "executor" and (local < 1 or total < local):
        fail(f"pool size {local}, {total}")
    if mode == "inline" and total != 0:
        fail(f"pool size {local}, {total} without an executor")
    echo, ret = pool.lookup(library, "echo"), pool.lookup(library, "return_value")
    check_sizes(echo)
    check_halo(echo)
    check_many(echo)
    check_errors(pool, ret)
    if mode == "executor":
        check_timeout()
    check_bad_arguments(echo)
    echo.free()
    ret.free()

total_failures = comm.allreduce(len(failures))
if rank == 0 and total_failures == 0:
    print("ok")
sys.exit(1 if total_failures else 0)
