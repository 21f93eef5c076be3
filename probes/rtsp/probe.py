"""One RTSP cycle: OPTIONS then DESCRIBE on one TCP connection, under one deadline.

The target is up when DESCRIBE's final status is one of ``valid_status_codes``
and, for a 200, the body is an SDP description (Content-Type application/sdp,
starting with ``v=0``). A 401 is answered once when credentials are set.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from common.model import Target, Tier
from common.resolver import Resolver
from probes.base import (REASON_AUTH, REASON_BODY_MISMATCH, REASON_MALFORMED, REASON_STATUS, REASON_TIMEOUT, Probe,
                         ProbeResult)
from probes.rtsp.auth import Basic, Digest, answer, parse_challenges
from probes.rtsp.config import RtspSettings
from probes.service import Phases, ProbeFailure, close, open_stream, resolve, timeout_of
from probes.textproto import MAX_HEAD, Head, read_body, read_head

PHASES = ("resolve", "connect", "options", "describe")
MAX_BODY = 64 * 1024  # an SDP is 0.3-3 KiB; more is a broken or hostile server
USER_AGENT = "lifeline"


@dataclass(slots=True)
class RtspResult(ProbeResult):
    status: int = 0  # DESCRIBE's final status; 0 when no DESCRIBE answer arrived


class Session:
    """The request/response exchange over an open stream; knows nothing of sockets or deadlines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, settings: RtspSettings) -> None:
        self.reader, self.writer, self.settings = reader, writer, settings
        self.cseq = 0
        self.auth: Basic | Digest | None = None
        self.answered = False  # a challenge is answered once per cycle
        self.unanswerable = ""  # why a challenge could not be answered

    async def request(self, method: str) -> tuple[Head, bytes]:
        """Send ``method`` to the URL; on a first 401 with credentials, answer it and send again."""
        s = self.settings
        while True:
            self.cseq += 1
            lines = [f"{method} {s.url} RTSP/1.0", f"CSeq: {self.cseq}", f"User-Agent: {USER_AGENT}"]
            if method == "DESCRIBE":
                lines.append("Accept: application/sdp")
            if self.auth is not None:
                lines.append(f"Authorization: {self.auth.header(method, s.url)}")
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head, body = await self._response()
            if head.status != 401 or s.password is None or self.answered:
                return head, body
            self.answered = True
            challenges = parse_challenges(v for k, v in head.headers if k == "www-authenticate")
            self.auth, self.unanswerable = answer(challenges, s.username or "", s.password.value)
            if self.auth is None:
                return head, body

    async def _response(self) -> tuple[Head, bytes]:
        head = await read_head(self.reader)
        if head.protocol != "RTSP":
            raise ProbeFailure(REASON_MALFORMED, f"a {head.protocol} reply, not RTSP")
        cseq = head.get("cseq")
        if cseq is not None and cseq.strip() != str(self.cseq):
            raise ProbeFailure(REASON_MALFORMED, f"CSeq {cseq[:12]!r} answers request {self.cseq}")
        body = await read_body(self.reader, head.content_length(MAX_BODY))
        return head, body


async def exchange(session: Session, phases: Phases, result: RtspResult) -> None:
    """OPTIONS, then DESCRIBE; fills ``result`` or raises ProbeFailure."""
    await session.request("OPTIONS")  # its status is not judged: some cameras refuse OPTIONS yet stream
    phases.end("options")
    head, body = await session.request("DESCRIBE")
    phases.end("describe")
    result.status = head.status
    settings = session.settings
    if head.status not in settings.valid_status_codes:
        if head.status == 401:
            raise ProbeFailure(REASON_AUTH, f"401: {session.unanswerable}" if session.unanswerable
                               else "401 after answering the challenge" if session.answered
                               else "401 and no credentials configured")
        raise ProbeFailure(REASON_STATUS, f"DESCRIBE {head.status} {head.reason[:60]}")
    if head.status == 200:
        ctype = (head.get("content-type") or "").partition(";")[0].strip().lower()
        if ctype != "application/sdp":
            raise ProbeFailure(REASON_BODY_MISMATCH, f"Content-Type {ctype[:40]!r}, not application/sdp")
        if not body.lstrip(b"\r\n\t ").startswith(b"v=0"):
            raise ProbeFailure(REASON_BODY_MISMATCH, "the body does not start with v=0")
    result.ok = True


class RtspProbe(Probe):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def run(self, target: Target, tier: Tier, state: object) -> RtspResult:
        settings: RtspSettings = target.setting("rtsp")
        phases = Phases.start()
        result = RtspResult(ok=False)
        writer = None
        try:
            async with asyncio.timeout(timeout_of(tier, settings)):
                _, ip = await resolve(self.resolver, target.address, phases)
                reader, writer, _ = await open_stream(ip, settings.port, phases, limit=MAX_HEAD)
                await exchange(Session(reader, writer, settings), phases, result)
        except ProbeFailure as exc:
            result.reason, result.detail = exc.reason, exc.detail
        except TimeoutError:
            result.reason, result.detail = REASON_TIMEOUT, f"deadline passed during {PHASES[min(len(phases.done), 3)]}"
        except OSError as exc:  # reset or broken pipe after connecting: the server dropped us mid-exchange
            result.reason, result.detail = REASON_MALFORMED, f"connection lost: {exc.strerror or type(exc).__name__}"
        finally:
            close(writer)
        result.phases = tuple(phases.done)
        result.duration = phases.total()
        return result
