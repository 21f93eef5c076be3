"""The OPTIONS request and the reading of its responses: parse, frame and match, within byte limits.

A response belongs to our request only if its Call-ID, CSeq and top Via branch
are ours (RFC 3261 17.1.3 matches client transactions on branch and method);
anything else (a late answer to an earlier cycle, a stray packet) is ignored.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from probes.base import REASON_MALFORMED
from probes.service import ProbeFailure
from probes.sip.config import SipSettings
from probes.textproto import MAX_HEAD, Head, parse_head

MAX_BODY = 64 * 1024  # an OPTIONS answer may carry SDP; a few KB in practice
STREAM_LIMIT = MAX_HEAD + 4  # the reader's buffer: the head and its blank line
METHOD = "OPTIONS"
MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 branch prefix


@dataclass(frozen=True, slots=True)
class Request:
    data: bytes
    call_id: str
    cseq: int
    branch: str


def host_part(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def build_options(settings: SipSettings, address: str, local: tuple[str, int]) -> Request:
    """A fresh OPTIONS: new branch, tag and Call-ID every cycle, so no answer to an old one can match."""
    transport = settings.transport.upper()
    target = f"{host_part(address)}:{settings.port}"
    uri_params = "" if settings.transport == "udp" else f";transport={settings.transport}"
    user = f"{settings.to_user}@" if settings.to_user else ""
    me = f"{host_part(local[0])}:{local[1]}"
    branch = MAGIC_COOKIE + secrets.token_hex(8)
    call_id = secrets.token_hex(12)
    cseq = 1
    text = (f"{METHOD} sip:{user}{target}{uri_params} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {me};rport;branch={branch}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{settings.from_user}@{host_part(settings.from_domain or local[0])}>"
            f";tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{user}{target}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {METHOD}\r\n"
            f"Contact: <sip:{settings.from_user}@{me}{uri_params}>\r\n"
            "User-Agent: lifeline\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n")
    return Request(text.encode(), call_id, cseq, branch)


def parse_response(head: bytes) -> Head:
    """A status line and headers; a request, another protocol or a status outside 100..699 is malformed."""
    parsed = parse_head(head)
    if parsed.protocol != "SIP":
        raise ProbeFailure(REASON_MALFORMED, f"not a SIP response: {head[:40]!r}")
    if not 100 <= parsed.status <= 699:
        raise ProbeFailure(REASON_MALFORMED, f"status {parsed.status} is outside 100..699")
    return parsed


def parse_datagram(data: bytes) -> Head | None:
    """One UDP datagram; None for a keep-alive (RFC 5626 sends bare CRLFs)."""
    data = data.lstrip(b"\r\n")
    if not data:
        return None
    head, _, _ = data.partition(b"\r\n\r\n")
    return parse_response(head)


def _header(head: Head, name: str, compact: str) -> str | None:
    """The first header spelled ``name`` or in its compact form (RFC 3261 7.3.3)."""
    return next((v for k, v in head.headers if k == name or k == compact), None)


def top_via_branch(head: Head) -> str | None:
    via = _header(head, "via", "v")
    if via is None:
        return None
    for param in via.split(",", 1)[0].split(";")[1:]:
        key, _, val = param.partition("=")
        if key.strip().lower() == "branch":
            return val.strip()
    return None


def matches(head: Head, request: Request) -> bool:
    """Call-ID, CSeq (number and method) and the top Via's branch are all ours."""
    if _header(head, "call-id", "i") != request.call_id:
        return False
    cseq = (head.get("cseq") or "").split()
    if cseq != [str(request.cseq), METHOD]:
        return False
    return top_via_branch(head) == request.branch


def content_length(head: Head) -> int:
    raw = _header(head, "content-length", "l")
    if raw is None:
        return 0  # RFC 3261 wants it on streams; a server that leaves it out sends no body in practice
    raw = raw.strip()
    if not raw.isdigit() or not raw.isascii():
        raise ProbeFailure(REASON_MALFORMED, f"bad Content-Length {raw[:20]!r}")
    n = int(raw)
    if n > MAX_BODY:
        raise ProbeFailure(REASON_MALFORMED, f"body of {n} bytes is over the {MAX_BODY}-byte limit")
    return n


async def read_stream_message(reader: asyncio.StreamReader) -> Head:
    """The next response on a TCP/TLS stream, its body skipped by Content-Length.

    The reader's limit (STREAM_LIMIT) bounds the head: a server that never ends its
    headers overruns it and is malformed, not a memory sink.
    """
    while True:
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ProbeFailure(REASON_MALFORMED, f"headers over {MAX_HEAD} bytes") from None
        except asyncio.IncompleteReadError as exc:
            where = "inside a response" if exc.partial.strip(b"\r\n") else "before a final response"
            raise ProbeFailure(REASON_MALFORMED, f"connection closed {where}") from None
        data = data[:-4].lstrip(b"\r\n")
        if data:  # else a keep-alive
            break
    head = parse_response(data)
    length = content_length(head)
    if length:
        try:
            await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise ProbeFailure(REASON_MALFORMED, f"connection closed inside a {length}-byte body") from None
    return head
