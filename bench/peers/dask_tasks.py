"""The tasks of the Dask peer (bench/peers/dask_bench.py), in a module of their own so that the
worker imports them by name (cloudpickle sends a reference, not the code) and loads the bench
function library once per process.

spin_us is the C function that Sidecore's executor and the MPI-only worker ranks run for the
harvest figure (libsidecore_bench_functions.so, bench/bench_functions.c), called through ctypes:
T microseconds of wall-clock and thread CPU time, the same machine code in every system.
"""
import ctypes
import os

_library = ctypes.CDLL(os.environ["SIDECORE_BENCH_LIBRARY"])
_spin_us = _library.spin_us
_spin_us.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                     ctypes.POINTER(ctypes.c_size_t)]
_spin_us.restype = ctypes.c_int


def echo(payload):
    """The round-trip and throughput task: its input comes back as its result."""
    return payload


def spin_us(us):
    """The harvest task: busy for `us` microseconds of wall-clock and CPU time (ctypes releases the
    GIL for the call, so the worker's event loop thread is not held off by more than the CPU)."""
    argument = ctypes.c_uint64(us)
    out_bytes = ctypes.c_size_t(0)
    if _spin_us(ctypes.byref(argument), ctypes.sizeof(argument), None, 0, ctypes.byref(out_bytes)) != 0:
        raise RuntimeError("spin_us failed")
