#!/usr/bin/env python3
"""Writes the seed corpus in tests/fuzz/corpus/<target>/: a few valid inputs per target, so the fuzzers
start from messages, cards, cpulists, settings and plugin options that the decoders accept (and a few
they must refuse). The files are committed;
run this again (python3 tests/fuzz/make-seeds.py) only when a format changes, and commit the result.
The layouts mirror runtime/src/protocol.hpp (little-endian, fixed sizes)."""
import pathlib
import struct

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"
MAGIC, VERSION = 0x52434453, 1
HELLO, WELCOME, REFUSED, LOOKUP, LOOKUP_REPLY, TASK, RESULT, GOODBYE = range(1, 9)
INPUT_REMOTE, OUTPUT_REMOTE = 1, 2
TOKEN = b"0123456789abcdef0123456789abcdef"  # 32 hex digits, as generate_token() makes
ADDRESS = bytes([0x02, 0x00, 0x1F, 0x90, 127, 0, 0, 1]) + bytes(8)  # a sockaddr_in, as tcp names look
DOORBELL = b"/sidecore-0123456789abcdef"


def header(kind, peer_id=0, session=0):
    return struct.pack("<IHHIIQ", MAGIC, VERSION, kind, peer_id, 0, session)


HELLO_RING_OFFER = 1
WELCOME_RINGS, WELCOME_CMA = 1, 2
RING_INLINE_LIMIT = 16 << 10  # transport/ring.hpp: kRingInlineLimit


def ring_offer(key, key_address, pid, fd, pair):
    return struct.pack("<QQIiII", key, key_address, pid, fd, pair, 0)


def hello(nonce, token, address, doorbell=b"", offer=None):
    flags = HELLO_RING_OFFER if offer is not None else 0
    return header(HELLO) + struct.pack("<QHHHH", nonce, len(token), len(address), len(doorbell), flags) + token + \
        address + doorbell + (offer or b"")


def welcome(credits, worker_index, flags):
    return header(WELCOME, 3, 0x1234) + struct.pack("<QIIII", 1, credits, worker_index, flags, 0)


def lookup(library, symbol):
    return header(LOOKUP, 3, 0x1234) + struct.pack("<QHHI", 11, len(library), len(symbol), 0) + library + symbol


def task(flags, in_bytes, out_capacity, inline=b"", remote_in=None, remote_out=None):
    message = header(TASK, 3, 0x1234) + struct.pack("<QIIQQ", 12, 0, flags, in_bytes, out_capacity)
    for remote in (remote_in, remote_out):
        if remote is not None:
            message += struct.pack("<QQ", *remote)
    return message + inline


def result(error, function_return, out_bytes, inline=b""):
    return header(RESULT, 3, 0x1234) + struct.pack("<QIiQ", 12, error, function_return, out_bytes) + inline


PROTOCOL = {
    "hello": hello(1, TOKEN, ADDRESS),
    "hello-doorbell": hello(2, TOKEN, ADDRESS, DOORBELL),
    "hello-rings": hello(3, TOKEN, ADDRESS, DOORBELL, ring_offer(0x9E3779B97F4A7C15, 0x7F0000003000, 4321, 17, 1)),
    "welcome": welcome(16, 0, 0),
    "welcome-rings": welcome(16, 1, WELCOME_RINGS | WELCOME_CMA),
    "refused": header(REFUSED) + struct.pack("<QII", 1, 6, 0),
    "lookup": lookup(b"/usr/lib/libsidecore_test_functions.so", b"sidecore_test_add"),
    "lookup-reply": header(LOOKUP_REPLY, 3, 0x1234) + struct.pack("<QII", 11, 0, 0),
    "lookup-reply-not-found": header(LOOKUP_REPLY, 3, 0x1234) + struct.pack("<QII", 11, 2, 0xFFFFFFFF),
    "task-inline": task(0, 8, 8, b"\x01\x00\x00\x00\x02\x00\x00\x00"),
    "task-empty": task(0, 0, 0),
    "task-input-remote": task(INPUT_REMOTE, 1 << 20, 64, remote_in=(0x7F0000001000, 0xABCD)),
    "task-output-remote": task(OUTPUT_REMOTE, 4, 1 << 20, b"abcd", remote_out=(0x7F0000002000, 0xBEEF)),
    "task-both-remote": task(INPUT_REMOTE | OUTPUT_REMOTE, 1 << 30, 1 << 30, remote_in=(0x1000, 1),
                             remote_out=(0x2000, 2)),
    "task-ring-inline": task(0, RING_INLINE_LIMIT, RING_INLINE_LIMIT, bytes(range(256)) * (RING_INLINE_LIMIT // 256)),
    "result-inline": result(0, 0, 4, b"\x03\x00\x00\x00"),
    "result-ring-inline": result(0, 0, 8192, b"\xab" * 8192),
    "result-function-error": result(3, -5, 0),
    "result-remote": result(0, 0, 1 << 20),  # valid only when the task's output was remote
    "goodbye": header(GOODBYE, 3, 0x1234),
}

CARD = {
    "tcp": "sidecore/1 id=0123456789abcdef host=node01 provider=tcp;ofi_rxm workers=2 doorbell=- "
           "addrs=02001f907f0000010000000000000000,02001f917f0000010000000000000000\n",
    "shm-doorbell": "sidecore/1 id=ffffffffffffffff host=login-2.cluster.example.org provider=shm workers=1 "
                    "doorbell=/sidecore-ffffffffffffffff addrs=00ff10",
    "fields-reordered": "sidecore/1 addrs=0a000001 workers=1 doorbell=- provider=verbs;ofi_rxm host=n1 "
                        "id=00000000deadbeef",
}

CORE_SET = {
    "single": "0",
    "list": "0-3,6,8-9",
    "unsorted": "7,1-2,4,1",
    "online": "0-127",
    "wide": "0,65535",
}

# FuzzedDataProvider strings: scope, fallback, transport, remote executors and retry each end with a
# backslash and another character; the rest is the timeout.
POOL_SETTINGS = {
    "node-error": "node\\;error\\;fabric\\;0\\;none\\;250",
    "job-inline": "job\\;inline\\;auto\\;16\\;lost\\;0",
    "defaults": "\\;\\;\\;\\;\\;",
    "max-timeout": "\\;error\\;\\;65536\\;\\;86400000",
    "bad-scope": "rack\\;inline\\;auto\\;1\\;\\;1",
    "bad-transport": "node\\;inline\\;rings\\;\\;\\;10",
    "bad-retry": "job\\;inline\\;auto\\;2\\;always\\;10",
}


# Rings as a worker finds them: head, tail minus head, the per-call limit, then the data from the
# head on (fuzz_ring.cpp). Records are an 8-byte header (bytes, kind: 1 message, 2 pad) padded to
# 64-byte cells.
RING_BYTES, CELL = 64 << 10, 64
MESSAGE, PAD = 1, 2


def record(payload, kind=MESSAGE):
    raw = struct.pack("<II", len(payload) if kind == MESSAGE else 0, kind) + payload
    return raw + bytes(-len(raw) % CELL)


def ring(head, records, limit=0, tail_delta=None):
    data = b"".join(records)
    delta = len(data) if tail_delta is None else tail_delta
    return struct.pack("<QQB", head, delta % (1 << 64), limit) + data


RING = {
    "empty": ring(0, []),
    "three-messages": ring(0, [record(b"one"), record(b""), record(bytes(100))]),
    "limit-two": ring(5 * CELL, [record(b"a"), record(b"b"), record(b"c")], limit=2),
    # A pad from the last cells to the end, then a message at the start (after two wraps).
    "wrap-with-pad": ring(3 * RING_BYTES - 2 * CELL, [record(b"", PAD) + bytes(CELL), record(b"after the pad")]),
    "full": ring(0, [record(bytes(1000 - 8))] * (RING_BYTES // 1024)),
    "unknown-kind": ring(0, [record(b"x"), struct.pack("<II", 1, 7) + bytes(CELL - 8)]),
    "past-tail": ring(0, [record(bytes(200))], tail_delta=CELL),
    "tail-behind-head": ring(10 * CELL, [record(b"x")], tail_delta=-CELL),
    "tail-off-cell": ring(0, [record(b"x")], tail_delta=CELL + 8),
}

# One input is both a plugstack.conf line (split at spaces, tabs, newlines and NULs) and, up to its
# first NUL, the value of every job option flag (--offload, --offload-poll, --offload-lib, ...).
SPANK_OPTIONS = {
    "every-key": "max_cores=4 default=idle poll=warm provider=auto executor=/usr/bin/sidecore-executor "
                 "allow_partitions=a,b start=async cgroup=v1 max_task_s=30 log_level=debug",
    "example-conf": "max_cores=16 default=off poll=adaptive provider=auto",  # slurm/plugstack.conf.d
    "wait-tcp": "max_cores=0 default=2 poll=hot provider=tcp;ofi_rxm executor=/opt/sidecore/bin/sidecore-executor "
                "allow_partitions=batch,,gpu, start=wait log_level=warning\n",
    "described": "max_cores=none default=off poll=adaptive provider=auto executor=/usr/bin/sidecore-executor "
                 "allow_partitions=* start=async cgroup=auto log_level=info",  # what describe() logs for the defaults
    "bad-values": "max_cores=many colour=blue novalue poll=lukewarm default=-1 executor=relative/path "
                  "log_level=loud start=sync provider= cgroup=v3 max_task_s=0 max_cores=2",
    "limits": "max_cores=65536\tdefault=65537\nmax_cores=00000000000000000007\x00default=0 executor==/x",
    "offload-idle": "idle",
    "offload-null": "(null)",  # how a valueless #SBATCH --offload reaches srun
    "offload-count": "3",
    "offload-too-many": "99999999999",
    "poll-adaptive": "adaptive",
    "lib-paths": "/a/libx.so,liby.so",
    "lib-none": ",",
    "lease-keys": "lease_partition=spare lease_max_cores=8 lease_time=120 lease_partition= lease_time=0 "
                  "lease_max_cores=65537 lease_time=525600",
}


CARD_REFERENCE = {
    "slurm": "@/tmp/sidecore-1234.0/card pid=4321 timeout_ms=30000",
    "spaces-in-path": "@/scratch/my job/card pid=7 timeout_ms=0",
    "pid-twice": "@/a pid=1 pid=2 timeout_ms=3",
    "no-pid": "@/tmp/card timeout_ms=100",
    "a-card": "sidecore/1 id=0123456789abcdef host=node01 provider=shm workers=1 doorbell=- worker=00",
}


def write(target, seeds):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


write("protocol", PROTOCOL)
write("card", CARD)
write("card_reference", CARD_REFERENCE)
write("core_set", CORE_SET)
write("pool_settings", POOL_SETTINGS)
write("ring", RING)
write("spank_options", SPANK_OPTIONS)
