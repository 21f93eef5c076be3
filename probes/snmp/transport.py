"""One UDP socket per address family for every v1/v2c request, demultiplexed by request id.

A reply is accepted only if it comes from the address the request went to,
carries a pending request id and the same SNMP version; anything else is
dropped. Undecodable datagrams from a target are remembered so that a request
which then times out reports ``malformed`` rather than ``timeout``. Timers are
plain ``call_later`` callbacks (no task per request) because at a thousand
devices the per-request overhead is what the CPU budget is spent on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from probes.base import REASON_INTERNAL, REASON_MALFORMED, REASON_REFUSED, REASON_SEND, REASON_TIMEOUT
from probes.snmp.codec import RESPONSE, Malformed, Response, decode, encode_request

RCVBUF = 4 * 1024 * 1024
MAX_DATAGRAM = 65535
# SNMP's own failure reasons, beside the shared ones in probes.base.
REASON_AGENT_ERROR = "agent_error"  # the device answered with an error-status
REASON_NO_SUCH_OBJECT = "no_such_object"  # sysUpTime.0 missing: not an SNMP agent we can poll


class SnmpFailure(Exception):
    """An expected per-request failure; ``reason`` becomes the probe result's reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def normalize(host: str) -> str:
    """Canonical text of an IP literal, so reply addresses compare equal to targets."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).compressed
    except ValueError:
        return host


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Response]
    addr: tuple[str, int]
    message: bytes
    version: int
    timeout: float
    retries_left: int
    timer: asyncio.TimerHandle | None = None
    malformed: bool = False


@dataclass
class TransportStats:
    sent: int = 0
    received: int = 0
    malformed: int = 0
    unexpected: int = 0  # decodable but unknown id, wrong source or version
    extra: dict[str, int] = field(default_factory=dict)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: SnmpUdpClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # Unconnected UDP sockets get no per-destination ICMP errors on Linux;
        # nothing here can be tied to a request, so pending ones simply time out.
        self.client.stats.extra["socket_errors"] = self.client.stats.extra.get("socket_errors", 0) + 1


class SnmpUdpClient:
    """Send v1/v2c requests and await their responses; one instance per event loop."""

    def __init__(self, socket_factory: Callable[[int], socket.socket] | None = None) -> None:
        self._socket_factory = socket_factory or _udp_socket
        self._socks: dict[int, socket.socket] = {}
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._pending: dict[int, _Pending] = {}
        self._next_id = random.randrange(1, 2**30)
        self.stats = TransportStats()

    async def _socket(self, family: int) -> socket.socket:
        sock = self._socks.get(family)
        if sock is None:
            sock = self._socket_factory(family)
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Protocol(self), sock=sock)
            self._socks[family] = sock
            self._transports[family] = transport
        return sock

    async def close(self) -> None:
        for pending in list(self._pending.values()):
            if pending.timer:
                pending.timer.cancel()
            if not pending.future.done():
                pending.future.set_exception(SnmpFailure(REASON_INTERNAL, "client closed"))
        self._pending.clear()
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        self._socks.clear()

    def _request_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1 if rid < 2**31 - 1 else 1
        return rid

    async def request(self, host: str, port: int, version: int, community: bytes, pdu_type: int,
                      varbinds: bytes, timeout: float, retries: int, non_repeaters: int = 0,
                      max_repetitions: int = 0) -> Response:
        """One request with retries; raises SnmpFailure (timeout, malformed, send_error)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self._socks.get(family) or await self._socket(family)
        rid = self._request_id()
        while rid in self._pending:
            rid = self._request_id()
        message = encode_request(version, community, pdu_type, rid, varbinds, non_repeaters,
                                 max_repetitions)
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), (normalize(host), port), message, version, timeout,
                           retries)
        self._pending[rid] = pending
        try:
            self._send(sock, pending)
            pending.timer = loop.call_later(timeout, self._expire, rid)
            return await pending.future
        finally:
            if pending.timer:
                pending.timer.cancel()
            self._pending.pop(rid, None)

    def _send(self, sock: socket.socket, pending: _Pending) -> None:
        try:
            sock.sendto(pending.message, pending.addr)
        except BlockingIOError:
            # Socket buffer full: count it as a lost packet, the retry timer resends.
            self.stats.extra["send_blocked"] = self.stats.extra.get("send_blocked", 0) + 1
        except OSError as exc:
            reason = REASON_REFUSED if exc.errno in (111,) else REASON_SEND
            raise SnmpFailure(reason, exc.strerror or str(exc)) from None
        self.stats.sent += 1

    def _expire(self, rid: int) -> None:
        pending = self._pending.get(rid)
        if pending is None or pending.future.done():
            return
        if pending.retries_left > 0:
            pending.retries_left -= 1
            family = socket.AF_INET6 if ":" in pending.addr[0] else socket.AF_INET
            try:
                self._send(self._socks[family], pending)
            except SnmpFailure as exc:
                pending.future.set_exception(exc)
                return
            pending.timer = asyncio.get_running_loop().call_later(pending.timeout, self._expire, rid)
            return
        reason = REASON_MALFORMED if pending.malformed else REASON_TIMEOUT
        pending.future.set_exception(SnmpFailure(reason, f"no valid reply from {pending.addr[0]}"))

    def _received(self, data: bytes, addr: Any) -> None:
        source = (normalize(addr[0]), addr[1])
        try:
            response = decode(data)
        except Malformed:
            self.stats.malformed += 1
            for pending in self._pending.values():
                if pending.addr == source:
                    pending.malformed = True
            return
        pending = self._pending.get(response.request_id)
        if (pending is None or pending.addr != source or pending.version != response.version
                or response.pdu_type != RESPONSE or pending.future.done()):
            self.stats.unexpected += 1
            return
        self.stats.received += 1
        pending.future.set_result(response)


def _udp_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    except OSError:
        pass  # the kernel caps it at net.core.rmem_max; the default still works
    sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
    return sock
