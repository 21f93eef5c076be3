"""One SIP OPTIONS cycle: resolve, (connect, TLS,) send, wait for the final response.

UDP uses one socket per cycle, connected to the target: the kernel then drops
datagrams from anyone else and hands an ICMP port unreachable back as
ECONNREFUSED, so a dead SIP service is ``refused`` at once rather than a
timeout. Requests are retransmitted per RFC 3261 timer E (non-INVITE): T1
(500 ms) doubling up to T2 (4 s), every T2 once a provisional response came,
until the cycle's deadline.
"""

from __future__ import annotations

import asyncio
from typing import Any

from common.model import Target, Tier
from common.resolver import Resolver
from probes.base import REASON_MALFORMED, REASON_STATUS, REASON_TIMEOUT, Probe
from probes.service import (Phases, ProbeFailure, close, connect_reason, open_stream, resolve,
                            timeout_of)
from probes.sip.config import SipSettings
from probes.sip.message import (STREAM_LIMIT, Request, build_options, matches, parse_datagram,
                                read_stream_message)
from probes.sip.result import SipResult
from probes.textproto import Head
from probes.tls import TlsClient

T1 = 0.5  # RFC 3261 timer values, seconds
T2 = 4.0
DEFAULT = SipSettings()


class SipProbe(Probe):
    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._tls = TlsClient()

    async def run(self, target: Target, tier: Tier, state: Any) -> SipResult:
        settings: SipSettings = target.setting("sip") or DEFAULT
        phases = Phases.start()
        result = SipResult(ok=False)
        udp = _UdpExchange() if settings.transport == "udp" else None
        writer = None
        try:
            async with asyncio.timeout(timeout_of(tier, settings)):
                family, ip = await resolve(self._resolver, target.address, phases)
                if udp is not None:
                    head = await self._udp(udp, settings, target.address, family, ip, result)
                else:
                    # A target named by host name is verified against that name, not the address it resolved to.
                    server_name = (settings.tls.server_name if settings.tls else None) or target.address
                    reader, writer, result.tls = await open_stream(
                        ip, settings.port, phases, tls=self._tls.context(settings.tls) if settings.tls else None,
                        server_name=server_name, chains=self._tls.chains, limit=STREAM_LIMIT)
                    head = await self._stream(reader, writer, settings, target.address, result)
                phases.end("response")
        except TimeoutError:
            # Garbage from the target is worth telling apart from silence.
            malformed = udp.malformed if udp is not None else ""
            result.reason = REASON_MALFORMED if malformed else REASON_TIMEOUT
            result.detail = malformed or f"no final response to {result.requests} request(s)"
        except ProbeFailure as exc:
            result.reason, result.detail = exc.reason, exc.detail
        else:
            result.status_code = head.status
            result.ok = settings.accepts(head.status)
            if not result.ok:
                result.reason, result.detail = REASON_STATUS, f"{head.status} {head.reason}"[:200]
        finally:
            if udp is not None:
                udp.close()
            close(writer)
        result.phases = tuple(phases.done)
        result.duration = phases.total()
        return result

    async def _udp(self, ex: _UdpExchange, settings: SipSettings, address: str, family: int, ip: str,
                   result: SipResult) -> Head:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: ex, remote_addr=(ip, settings.port),
                                                               family=family)
        except OSError as exc:  # no route: connect() fails at once
            raise ProbeFailure(connect_reason(exc), str(exc)) from None
        ex.request = build_options(settings, address, transport.get_extra_info("sockname")[:2])
        interval = T1
        while True:
            transport.sendto(ex.request.data)
            result.requests += 1
            done, _ = await asyncio.wait((ex.final,), timeout=interval)
            if done:
                return ex.final.result()
            interval = T2 if ex.provisional else min(2 * interval, T2)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, settings: SipSettings,
                      address: str, result: SipResult) -> Head:
        request = build_options(settings, address, writer.get_extra_info("sockname")[:2])
        writer.write(request.data)
        result.requests = 1
        while True:
            head = await read_stream_message(reader)
            if head.status >= 200 and matches(head, request):
                return head


class _UdpExchange(asyncio.DatagramProtocol):
    """The cycle's connected UDP socket: matching responses, ICMP errors, garbage seen."""

    def __init__(self) -> None:
        self.final: asyncio.Future[Head] = asyncio.get_running_loop().create_future()
        self.request: Request | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.provisional = False
        self.malformed = ""  # why the last unparsable datagram was refused

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.final.done() or self.request is None:
            return
        try:
            head = parse_datagram(data)
        except ProbeFailure as exc:
            self.malformed = exc.detail
            return
        if head is None or not matches(head, self.request):
            return
        if head.status < 200:
            self.provisional = True
        else:
            self.final.set_result(head)

    def error_received(self, exc: Exception) -> None:
        # On a connected socket this is the target's own ICMP error: port unreachable is ECONNREFUSED.
        if not self.final.done() and isinstance(exc, OSError):
            self.final.set_exception(ProbeFailure(connect_reason(exc), str(exc)))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.final.done():
            self.final.exception()  # retrieved, so asyncio never logs it as forgotten
        else:
            self.final.cancel()
