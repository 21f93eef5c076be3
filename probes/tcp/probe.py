"""One tcp cycle: resolve, connect, TLS if asked, send, then wait for ``expect`` in the first 4 KiB."""

from __future__ import annotations

import asyncio

from common.model import Target, Tier
from common.resolver import Resolver
from probes.base import REASON_SEND, REASON_TIMEOUT, Probe, ProbeResult, TlsInfo
from probes.service import ProbeFailure, Phases, close, open_stream, resolve, timeout_of
from probes.tcp.config import TcpSettings
from probes.tls import TlsClient

REASON_EXPECT_MISMATCH = "expect_mismatch"
MAX_BANNER = 4096  # an SMTP/SSH/FTP greeting fits many times over; a chatty server cannot grow us


class TcpProbe(Probe):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.tls = TlsClient()

    async def run(self, target: Target, tier: Tier, state: object) -> ProbeResult:
        settings: TcpSettings = target.setting("tcp")
        phases = Phases.start()
        seen = bytearray()  # what the server sent, kept outside the deadline to explain a timeout
        writer = None
        tls_info: TlsInfo | None = None
        try:
            async with asyncio.timeout(timeout_of(tier, settings)):
                _, ip = await resolve(self.resolver, target.address, phases)
                options = settings.tls
                reader, writer, tls_info = await open_stream(
                    ip, settings.port, phases, tls=self.tls.context(options) if options else None,
                    server_name=(options.server_name or target.address) if options else None, chains=self.tls.chains)
                if settings.send:
                    writer.write(settings.send)
                    await writer.drain()
                if settings.expect is not None:
                    await _expect(reader, settings, seen)
                    phases.end("expect")
        except TimeoutError:
            if seen and settings.expect is not None:  # it spoke, but never what we wait for
                return _failed(phases, REASON_EXPECT_MISMATCH, f"no match in {len(seen)} bytes", tls_info)
            return _failed(phases, REASON_TIMEOUT, "", tls_info)
        except ProbeFailure as exc:
            return _failed(phases, exc.reason, exc.detail, tls_info)
        except OSError as exc:  # reset while sending or waiting for the banner (ssl.SSLError included)
            reason = REASON_EXPECT_MISMATCH if settings.expect is not None else REASON_SEND
            return _failed(phases, reason, repr(exc), tls_info)
        finally:
            close(writer)
        return ProbeResult(ok=True, duration=phases.total(), phases=tuple(phases.done), tls=tls_info)


async def _expect(reader: asyncio.StreamReader, settings: TcpSettings, seen: bytearray) -> None:
    pattern = settings.expect
    while len(seen) < MAX_BANNER:
        chunk = await reader.read(MAX_BANNER - len(seen))
        if not chunk:
            raise ProbeFailure(REASON_EXPECT_MISMATCH, f"closed after {len(seen)} bytes without a match")
        seen += chunk
        if pattern.search(seen.decode("utf-8", "replace")):
            return
    raise ProbeFailure(REASON_EXPECT_MISMATCH, f"no match in the first {MAX_BANNER} bytes")


def _failed(phases: Phases, reason: str, detail: str, tls: TlsInfo | None) -> ProbeResult:
    return ProbeResult(ok=False, reason=reason, detail=detail, duration=phases.total(), phases=tuple(phases.done),
                       tls=tls)
