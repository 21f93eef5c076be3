"""Status line and headers of the text protocols (HTTP/1.x, RTSP, SIP), read within byte limits.

A hostile or broken server must cost a bounded amount of memory and never
raise out of a probe: every limit overrun, truncation or garbage line is a
ProbeFailure with reason ``malformed``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from probes.base import REASON_MALFORMED
from probes.service import ProbeFailure

MAX_HEAD = 16 * 1024  # status line plus headers
MAX_HEADERS = 100
_STATUS_RE = re.compile(rb"(HTTP|RTSP|SIP)/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?")


@dataclass(frozen=True, slots=True)
class Head:
    protocol: str  # "HTTP", "RTSP" or "SIP"
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in order

    def get(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def content_length(self, limit: int) -> int:
        """Content-Length as an int (0 when absent); over ``limit`` or invalid is malformed."""
        raw = self.get("content-length")
        if raw is None:
            return 0
        if not raw.strip().isdigit():
            raise ProbeFailure(REASON_MALFORMED, f"bad Content-Length {raw[:20]!r}")
        n = int(raw)
        if n > limit:
            raise ProbeFailure(REASON_MALFORMED, f"body of {n} bytes is over the {limit}-byte limit")
        return n


def parse_head(data: bytes) -> Head:
    """Parse a status line and headers (ending at the blank line, which may be missing)."""
    if len(data) > MAX_HEAD:
        raise ProbeFailure(REASON_MALFORMED, f"headers over {MAX_HEAD} bytes")
    lines = data.split(b"\r\n")
    match = _STATUS_RE.fullmatch(lines[0])
    if match is None:
        raise ProbeFailure(REASON_MALFORMED, f"not a status line: {lines[0][:60]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            break
        if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip().decode("latin-1"))
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name.strip() != name:
            raise ProbeFailure(REASON_MALFORMED, f"bad header line {line[:60]!r}")
        headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        if len(headers) > MAX_HEADERS:
            raise ProbeFailure(REASON_MALFORMED, f"more than {MAX_HEADERS} headers")
    return Head(match.group(1).decode(), int(match.group(4)), (match.group(5) or b"").decode("latin-1"),
                tuple(headers))


async def read_head(reader: asyncio.StreamReader) -> Head:
    """Read up to the blank line; the reader's own limit (``open_stream(limit=)``) bounds the bytes."""
    try:
        data = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ProbeFailure(REASON_MALFORMED, "headers over the size limit") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ProbeFailure(REASON_MALFORMED, "connection closed before any reply") from None
        raise ProbeFailure(REASON_MALFORMED, "connection closed inside the headers") from None
    return parse_head(data[:-4])


async def read_body(reader: asyncio.StreamReader, length: int) -> bytes:
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProbeFailure(REASON_MALFORMED, f"connection closed inside a {length}-byte body") from None
