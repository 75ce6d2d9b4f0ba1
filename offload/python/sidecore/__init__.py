"""Sidecore for mpi4py programs: offload tasks to executors on the job's idle cores, as MPI requests.

    from mpi4py import MPI
    import sidecore

    with sidecore.Pool(MPI.COMM_WORLD, info={"sidecore_timeout_ms": "1000"}) as pool:
        echo = pool.lookup("/abs/path/libf.so", "echo")
        request = echo.submit(numpy_array, out_array)      # an mpi4py.MPI.Request
        status = MPI.Status()
        request.Wait(status)                               # or MPI.Request.Waitall([...]) with others
        status.Get_count(MPI.BYTE)                         # the output bytes
        status.Get_tag()                                   # the function's return value

A failed task raises, from the Wait or Test that completes it, the MPI.Exception mpi4py raises for
any failed request; `sidecore.error_kind(exception)` says what it was (TIMEOUT, EXECUTOR_LOST,
FUNCTION, NOT_FOUND, NO_EXECUTOR, AUTH, BAD_ARG). Calls that fail raise sidecore.Error, an
MPI.Exception with the same error code and a message that names the problem.

Buffers are any objects with the buffer protocol (bytes, bytearray, array.array, numpy arrays),
C-contiguous; `out` must be writable. Like any nonblocking MPI buffer, neither may change until the
request completes; the request keeps both alive until then.

This is a binding of the C library libsidecore_mpix (<mpix_offload.h>) through ctypes: it needs the
same MPI library as mpi4py.
"""
import ctypes

from mpi4py import MPI

from . import _library

__all__ = ["Pool", "Function", "Error", "error_kind", "NONE", "NO_EXECUTOR", "NOT_FOUND", "FUNCTION",
           "EXECUTOR_LOST", "TIMEOUT", "AUTH", "BAD_ARG"]

# Error kinds, as in mpix_offload.h.
NONE = 0
NO_EXECUTOR = 1
NOT_FOUND = 2
FUNCTION = 3
EXECUTOR_LOST = 4
TIMEOUT = 5
AUTH = 6
BAD_ARG = 7
_KIND_NAMES = {NONE: "NONE", NO_EXECUTOR: "NO_EXECUTOR", NOT_FOUND: "NOT_FOUND", FUNCTION: "FUNCTION",
               EXECUTOR_LOST: "EXECUTOR_LOST", TIMEOUT: "TIMEOUT", AUTH: "AUTH", BAD_ARG: "BAD_ARG"}


def _handle_type(mpi_class):
    """The ctypes type of an MPI handle of this MPI library (a pointer in Open MPI, an int in MPICH)."""
    size = MPI._sizeof(mpi_class)
    if size == ctypes.sizeof(ctypes.c_void_p):
        return ctypes.c_void_p
    if size == ctypes.sizeof(ctypes.c_int):
        return ctypes.c_int
    raise ImportError(f"sidecore: MPI handles of {size} bytes are not supported")


_Comm = _handle_type(MPI.Comm)
_Info = _handle_type(MPI.Info)
_Request = _handle_type(MPI.Request)
_Count = ctypes.c_longlong  # MPI_Count in Open MPI and MPICH

_lib = ctypes.CDLL(_library.PATH, mode=ctypes.RTLD_GLOBAL)
_lib.MPIX_Offload_pool_create.argtypes = [_Comm, _Info, ctypes.POINTER(ctypes.c_void_p)]
_lib.MPIX_Offload_pool_free.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
_lib.MPIX_Offload_pool_size.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
_lib.MPIX_Offload_function_lookup.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                              ctypes.POINTER(ctypes.c_void_p)]
_lib.MPIX_Offload_function_free.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
_lib.MPIX_Offload_submit.argtypes = [ctypes.c_void_p, ctypes.c_void_p, _Count, ctypes.c_void_p, _Count,
                                     ctypes.POINTER(_Request)]
_lib.MPIX_Offload_error_kind.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
_lib.sidecore_mpix_refuse.argtypes = [ctypes.c_void_p, ctypes.c_char_p]


class Error(MPI.Exception):
    """A Sidecore call failed: the MPI error code (error_kind() classifies it) and what went wrong."""

    def __init__(self, code, message):
        super().__init__(code)
        self.message = message

    def __str__(self):
        return f"{_KIND_NAMES.get(error_kind(self), 'MPI error')}: {self.message}"


def error_kind(exception):
    """The kind (TIMEOUT, EXECUTOR_LOST, ...) of a failed request's or call's MPI.Exception, or of
    an MPI error code; None for an error that is not Sidecore's."""
    code = exception if isinstance(exception, int) else exception.Get_error_code()
    kind = ctypes.c_int(NONE)
    if _lib.MPIX_Offload_error_kind(code, ctypes.byref(kind)) != MPI.SUCCESS:
        return None
    return kind.value


def _check(code, message):
    if code != MPI.SUCCESS:
        raise Error(code, message)


def _handle(obj, ctype):
    """The C handle inside an mpi4py object."""
    return ctype.from_address(MPI._addressof(obj)).value


# --- buffers: the buffer protocol through the C API, so read-only objects (bytes) work for `in` ---
class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_PyBUF_WRITABLE = 0x0001
_PyBUF_ND = 0x0008
_PyBUF_STRIDES = 0x0010 | _PyBUF_ND
_PyBUF_C_CONTIGUOUS = 0x0020 | _PyBUF_STRIDES
_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]


class _Pinned:
    """A buffer held (and its object kept alive) until released."""

    def __init__(self, obj, writable):
        self.view = _PyBuffer()
        flags = _PyBUF_C_CONTIGUOUS | (_PyBUF_WRITABLE if writable else 0)
        _get_buffer(obj, ctypes.byref(self.view), flags)  # raises BufferError, TypeError
        self.held = True

    def release(self):
        if self.held:
            self.held = False
            _release_buffer(ctypes.byref(self.view))

    def __del__(self):
        self.release()


class _OffloadRequest(MPI.Request):
    """An mpi4py request that keeps its task's buffers until it is garbage: it completes through
    any mpi4py Wait or Test, alone or with other requests."""


class Function:
    """A function looked up in a pool (Pool.lookup)."""

    def __init__(self, pool, handle, library, symbol):
        self._pool = pool
        self._handle = handle
        self.library = library
        self.symbol = symbol

    def _refuse(self, why):
        code = _lib.sidecore_mpix_refuse(self._handle, why.encode())
        raise Error(code, why)

    def submit(self, in_, out=None, in_bytes=None, out_bytes=None):
        """Starts the task on `in_` (all of it, or its first `in_bytes`), its output going to `out`
        (at most `out_bytes`); never blocks. Returns an mpi4py.MPI.Request. `None` stands for an
        empty buffer."""
        if not self._handle.value:
            self._refuse("submit: the function was freed")
        pinned = []
        try:
            addresses, sizes = [], []
            for name, obj, count, writable in (("in", in_, in_bytes, False), ("out", out, out_bytes, True)):
                if obj is None:
                    held = 0
                    addresses.append(None)
                else:
                    try:
                        view = memoryview(obj)
                    except TypeError:
                        self._refuse(f"submit: {name} ({type(obj).__name__}) does not support the buffer protocol")
                    if writable and view.readonly:
                        self._refuse(f"submit: out ({type(obj).__name__}) is read-only: out must be writable")
                    if not view.c_contiguous:
                        self._refuse(f"submit: {name} ({type(obj).__name__}) is not C-contiguous: pass a contiguous copy")
                    view.release()
                    buffer = _Pinned(obj, writable)
                    pinned.append(buffer)
                    held = buffer.view.len
                    addresses.append(buffer.view.buf)
                if count is None:
                    count = held
                elif count < 0 or count > held:
                    self._refuse(f"submit: {name}_bytes is {count}, but {name} holds {held} bytes")
                sizes.append(count)
            c_request = _Request()
            _check(_lib.MPIX_Offload_submit(self._handle, addresses[0], sizes[0], addresses[1], sizes[1],
                                            ctypes.byref(c_request)),
                   f"submit of '{self.symbol}' failed")
            request = _OffloadRequest()
            _Request.from_address(MPI._addressof(request)).value = c_request.value
            request._sidecore_buffers = pinned  # released when the request object goes
            return request
        except BaseException:
            for buffer in pinned:
                buffer.release()
            raise

    def free(self):
        """Frees the function (its requests in flight complete as usual)."""
        if self._handle.value:
            _check(_lib.MPIX_Offload_function_free(ctypes.byref(self._handle)), "function_free failed")


class Pool:
    """An offload pool over `comm` (collective over it, like its free). `info`: the info keys of
    MPIX_Offload_pool_create, as a dict of strings (sidecore_scope, sidecore_fallback,
    sidecore_timeout_ms, ...), or an MPI.Info."""

    def __init__(self, comm, info=None):
        self._handle = ctypes.c_void_p()
        owned = None
        if info is None:
            mpi_info = MPI.INFO_NULL
        elif isinstance(info, MPI.Info):
            mpi_info = info
        else:
            owned = mpi_info = MPI.Info.Create()
            for key, value in dict(info).items():
                mpi_info.Set(str(key), str(value))
        try:
            _check(_lib.MPIX_Offload_pool_create(_handle(comm, _Comm), _handle(mpi_info, _Info),
                                                 ctypes.byref(self._handle)),
                   "pool_create failed")
        finally:
            if owned is not None:
                owned.Free()

    def size(self):
        """(workers on this rank's node, workers in all) that the pool can use now."""
        local, total = ctypes.c_int(), ctypes.c_int()
        _check(_lib.MPIX_Offload_pool_size(self._handle, ctypes.byref(local), ctypes.byref(total)),
               "pool_size failed")
        return local.value, total.value

    def lookup(self, library, symbol):
        """The function `symbol` of the shared library at `library` (a path on the executors' hosts)."""
        handle = ctypes.c_void_p()
        _check(_lib.MPIX_Offload_function_lookup(self._handle, str(library).encode(), str(symbol).encode(),
                                                 ctypes.byref(handle)),
               f"lookup of '{symbol}' in '{library}' failed")
        return Function(self, handle, library, symbol)

    def free(self):
        """Frees the pool: collective over its communicator."""
        if self._handle.value:
            _check(_lib.MPIX_Offload_pool_free(ctypes.byref(self._handle)), "pool_free failed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()
        return False
