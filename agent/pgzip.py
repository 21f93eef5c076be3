"""One gzip member compressed by several threads, the way pigz does it.

The exposition of 10k targets is ~26 MB of text; zlib at level 1 takes
43 ms for it on this class of machine (60-100 ms beside a busy probe loop),
most of a scrape; ISA-L's deflate (the ``isal`` package) takes 9 ms for the
same size of output, and its CRC-32 1 ms against zlib's 6, so it is used when
installed. Pieces of about 1 MB are deflated independently (both release the
GIL, so they run in parallel and beside the probe loop), each ended with a
full flush so the raw deflate streams concatenate into one valid stream; the
caller's thread computes the CRC-32 meanwhile. The result is a single
ordinary gzip member, readable by any client (Prometheus, curl, browsers),
not a multi-member file.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType

try:
    from isal import isal_zlib

    _zlib: ModuleType = isal_zlib
except ImportError:  # the pure-zlib path: slower, same bytes out once inflated
    _zlib = zlib

# 1 MB rather than 2: the render's transient memory at 10k targets fell from 13.7 to 6.2 MB
# (tracemalloc peak) and it was no slower with ISA-L (median 24 vs 30 ms in one process).
PIECE = 1024 * 1024
# Magic, deflate, no flags, no mtime, no extra flags, OS unknown (RFC 1952).
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def lower_priority() -> None:
    """Thread initializer: nice this worker so compressing never takes a core from the probe loop."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 10)  # Linux: who=0 is the calling thread
    except (OSError, AttributeError):
        pass


def _deflate(data: bytes, level: int, last: bool) -> bytes:
    z = _zlib.compressobj(level, _zlib.DEFLATED, -15)  # raw deflate: header and trailer are ours
    return z.compress(data) + z.flush(_zlib.Z_FINISH if last else _zlib.Z_FULL_FLUSH)


def compress(chunks: Iterable[bytes], pool: ThreadPoolExecutor | None, level: int = 1,
             piece: int = PIECE, in_flight: int = 2) -> bytes:
    """gzip ``chunks`` (joined) as one member; pieces go to ``pool`` (None: compress inline)."""
    out: list[bytes] = [_HEADER]
    pending: deque[Future[bytes]] = deque()
    crc = size = 0
    buf: list[bytes] = []
    buffered = 0

    def submit(last: bool) -> None:
        nonlocal crc, size, buf, buffered
        # One join and one CRC call per ~2 MB piece: every call that releases the GIL costs a
        # wait to take it back from the busy probe loop, so fewer, larger steps finish sooner
        # (per-chunk CRC and deflate: scrape p50 100-120 ms; per piece: 82-84 ms).
        data = b"".join(buf)
        buf, buffered = [], 0
        if pool is None:
            out.append(_deflate(data, level, last))
        else:
            while len(pending) >= in_flight:  # bound the pieces held at once
                out.append(pending.popleft().result())
            pending.append(pool.submit(_deflate, data, level, last))
        crc = _zlib.crc32(data, crc)  # overlaps the workers' deflate: both release the GIL
        size += len(data)

    for chunk in chunks:
        buf.append(chunk)
        buffered += len(chunk)
        if buffered >= piece:
            submit(last=False)
    submit(last=True)
    out.extend(f.result() for f in pending)
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(out)
