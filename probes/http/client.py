"""One HTTP/1.1 exchange on an open stream: write the request, read the head, read the body within a cap.

Written for the probe rather than borrowed so each phase is timed where it
happens and every read is bounded: the head by the stream's limit
(``textproto.MAX_HEAD``), the body by ``body_limit``. A body over the limit is
not an error; reading simply stops there, since only ``body_regex`` needs it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from probes.base import REASON_MALFORMED
from probes.http.config import Header
from probes.service import ProbeFailure
from probes.textproto import Head, read_head

USER_AGENT = "Lifeline-HTTP/1"
CHUNK = 64 * 1024
MAX_INTERIM = 8  # 1xx answers skipped before the real one
MAX_TRAILERS = 100
NO_BODY = (204, 304)


@dataclass(slots=True)
class Body:
    data: bytes  # the first body_limit bytes, or b"" when nobody needs them
    length: int  # bytes read (chunked framing excluded), at most body_limit
    declared: int | None  # Content-Length, when the server sent one
    truncated: bool  # the body went on past body_limit


def request(method: str, host_header: str, target: str, headers: tuple[Header, ...]) -> bytes:
    """The request head; the caller's headers replace the defaults of the same name."""
    own = {h.name.lower() for h in headers}
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}"]
    lines += [f"{name}: {value}" for name, value in (("User-Agent", USER_AGENT), ("Accept", "*/*"),
                                                     ("Accept-Encoding", "identity"))
              if name.lower() not in own]
    lines += [f"{h.name}: {h.value}" for h in headers]
    if method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")
    lines.append("Connection: close")  # one exchange per connection: the body may end at EOF
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


async def read_response_head(reader: asyncio.StreamReader) -> Head:
    """The final response's head, skipping interim 1xx answers (100 Continue, 103 Early Hints)."""
    for _ in range(MAX_INTERIM):
        head = await read_head(reader)
        if head.protocol != "HTTP":
            raise ProbeFailure(REASON_MALFORMED, f"not an HTTP status line ({head.protocol})")
        if not 100 <= head.status <= 199 or head.status == 101:
            return head
    raise ProbeFailure(REASON_MALFORMED, f"more than {MAX_INTERIM} interim 1xx responses")


def body_framing(head: Head, method: str) -> tuple[str, int | None]:
    """("none" | "chunked" | "length" | "close", declared length)."""
    if method == "HEAD" or head.status in NO_BODY or head.status == 101:
        return "none", None
    encoding = head.get("transfer-encoding")
    if encoding is not None:
        codings = [c.strip().lower() for c in encoding.split(",")]
        if codings[-1] != "chunked":  # RFC 9112 6.3: then the body runs to the close
            return "close", None
        return "chunked", None
    raw = head.get("content-length")
    if raw is None:
        return "close", None
    values = {x.strip() for x in raw.split(",")}  # repeated identical values are allowed
    value = values.pop()
    if values or not value.isdigit() or len(value) > 19:
        raise ProbeFailure(REASON_MALFORMED, f"bad Content-Length {raw[:20]!r}")
    return "length", int(value)


async def read_body(reader: asyncio.StreamReader, head: Head, method: str, limit: int, keep: bool) -> Body:
    """Read the body up to ``limit`` bytes; ``keep`` False counts bytes without storing them."""
    framing, declared = body_framing(head, method)
    sink = _Sink(limit, keep)
    if framing == "length":
        await _read_exact(reader, min(declared, limit), sink)
        sink.truncated = declared > limit
    elif framing == "chunked":
        await _read_chunked(reader, sink)
    elif framing == "close":
        while not sink.full:
            chunk = await reader.read(min(CHUNK, sink.room))
            if not chunk:
                break
            sink.add(chunk)
        sink.truncated = sink.full and not reader.at_eof()
    return Body(bytes(sink.data), sink.length, declared, sink.truncated)


class _Sink:
    __slots__ = ("data", "length", "limit", "keep", "truncated")

    def __init__(self, limit: int, keep: bool) -> None:
        self.data = bytearray()
        self.length, self.limit, self.keep, self.truncated = 0, limit, keep, False

    @property
    def room(self) -> int:
        return self.limit - self.length

    @property
    def full(self) -> bool:
        return self.length >= self.limit

    def add(self, chunk: bytes) -> None:
        self.length += len(chunk)
        if self.keep:
            self.data += chunk


async def _read_exact(reader: asyncio.StreamReader, n: int, sink: _Sink) -> None:
    while n > 0:
        chunk = await reader.read(min(CHUNK, n))
        if not chunk:
            raise ProbeFailure(REASON_MALFORMED, f"connection closed {n} bytes short of the body's length")
        sink.add(chunk)
        n -= len(chunk)


async def _line(reader: asyncio.StreamReader, what: str) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise ProbeFailure(REASON_MALFORMED, f"{what} line over the size limit") from None
    except asyncio.IncompleteReadError:
        raise ProbeFailure(REASON_MALFORMED, f"connection closed inside a chunked body ({what})") from None


def chunk_size(line: bytes) -> int:
    """The size of a chunk from its header line (extensions after ';' ignored)."""
    text = line.split(b";", 1)[0].strip()
    if not text or len(text) > 15 or any(c not in b"0123456789abcdefABCDEF" for c in text):
        raise ProbeFailure(REASON_MALFORMED, f"bad chunk size line {line[:40]!r}")
    return int(text, 16)


async def _read_chunked(reader: asyncio.StreamReader, sink: _Sink) -> None:
    while True:
        size = chunk_size(await _line(reader, "chunk size"))
        if size == 0:
            break
        take = min(size, sink.room)
        await _read_exact(reader, take, sink)
        if take < size:  # the cap falls inside this chunk: stop here
            sink.truncated = True
            return
        if await _line(reader, "chunk end") not in (b"\r\n", b"\n"):
            raise ProbeFailure(REASON_MALFORMED, "chunk longer than its size line says")
    for _ in range(MAX_TRAILERS):
        if await _line(reader, "trailer") in (b"\r\n", b"\n"):
            return
    raise ProbeFailure(REASON_MALFORMED, f"more than {MAX_TRAILERS} trailer lines")
