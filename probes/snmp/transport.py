"""One UDP socket per address family for every SNMP request, demultiplexed by request id.

v1/v2c replies are matched on their request-id; SNMPv3 replies on their
msgID, which is in the clear (the request-id sits in the encrypted scopedPDU),
and the v3 client's ``accept`` then checks and opens them (``v3``). Both
share the id counter, the timers and the ICMP error handling below.

A reply is accepted only if it comes from the address the request went to,
carries a pending request id and the same SNMP version; anything else is
dropped. Undecodable datagrams from a target are remembered so that a request
which then times out reports ``malformed`` rather than ``timeout``. Timers are
plain ``call_later`` callbacks (no task per request) because at a thousand
devices the per-request overhead is what the CPU budget is spent on.

A closed port or a dead route answers with an ICMP error, which an unconnected
socket never sees unless asked: with IP_RECVERR (IPV6_RECVERR) the kernel
queues it on the socket's error queue with the destination of the datagram it
quotes, and every pending request to that destination ends at once as
``refused`` (port unreachable) or ``unreachable`` (any other ICMP error)
instead of timing out after all its retries. The reader only looks at the
queue when the kernel flags an error, so replies cost nothing extra.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.errqueue import EXTENDED_ERR, offender_address
from probes.base import (REASON_INTERNAL, REASON_MALFORMED, REASON_REFUSED, REASON_SEND, REASON_TIMEOUT,
                         REASON_UNREACHABLE)
from probes.snmp.codec import RESPONSE, Malformed, Response, decode, encode_request
from probes.snmp.v3msg import V3Message, is_v3
from probes.snmp.v3msg import parse as parse_v3

RCVBUF = 4 * 1024 * 1024
MAX_DATAGRAM = 65535
# Datagrams read per wakeup: more than one saves a trip through the event loop per reply
# under load; bounded so a flood cannot starve the loop (the socket stays readable).
READ_BATCH = 64
IP_RECVERR, IPV6_RECVERR = getattr(socket, "IP_RECVERR", 11), getattr(socket, "IPV6_RECVERR", 25)
SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 2, 3  # linux/errqueue.h: who raised a queued error
# (origin, type): the port-unreachable code, and the "too big" errors a retry gets past (the
# kernel has learnt the path MTU and fragments the resend), which therefore end nothing.
_PORT_UNREACHABLE = {(SO_EE_ORIGIN_ICMP, 3): 3, (SO_EE_ORIGIN_ICMP6, 1): 4}
_TOO_BIG = {(SO_EE_ORIGIN_ICMP, 3, 4), (SO_EE_ORIGIN_ICMP6, 2, 0)}
_ICMP_NAMES = {
    (SO_EE_ORIGIN_ICMP, 3): ("destination unreachable", {0: "net unreachable", 1: "host unreachable",
                                                        3: "port unreachable", 9: "net prohibited",
                                                        10: "host prohibited", 13: "administratively prohibited"}),
    (SO_EE_ORIGIN_ICMP, 11): ("time exceeded", {}),
    (SO_EE_ORIGIN_ICMP6, 1): ("destination unreachable", {0: "no route", 1: "administratively prohibited",
                                                         3: "address unreachable", 4: "port unreachable"}),
    (SO_EE_ORIGIN_ICMP6, 3): ("time exceeded", {}),
}
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
    future: asyncio.Future[Any]
    addr: tuple[str, int]
    message: bytes
    version: int
    timeout: float
    retries_left: int
    timer: asyncio.TimerHandle | None = None
    malformed: bool = False
    accept: Callable[[V3Message], Any] | None = None  # SNMPv3: checks and opens the reply


@dataclass
class TransportStats:
    sent: int = 0
    received: int = 0
    malformed: int = 0
    unexpected: int = 0  # decodable but unknown id, wrong source or version
    extra: dict[str, int] = field(default_factory=dict)


class SnmpUdpClient:
    """Send v1/v2c requests and await their responses; one instance per event loop."""

    def __init__(self, socket_factory: Callable[[int], socket.socket] | None = None) -> None:
        self._socket_factory = socket_factory or _udp_socket
        self._socks: dict[int, socket.socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = random.randrange(1, 2**30)
        self.stats = TransportStats()

    async def _socket(self, family: int) -> socket.socket:
        sock = self._socks.get(family)
        if sock is None:
            sock = self._socket_factory(family)
            sock.setblocking(False)
            try:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            except OSError:
                pass  # no ICMP errors then: refused and unreachable ports time out, as before
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)
            self._socks[family] = sock
        return sock

    async def close(self) -> None:
        for pending in list(self._pending.values()):
            if pending.timer:
                pending.timer.cancel()
            if not pending.future.done():
                pending.future.set_exception(SnmpFailure(REASON_INTERNAL, "client closed"))
        self._pending.clear()
        for sock in self._socks.values():
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()

    def _request_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1 if rid < 2**31 - 1 else 1
        return rid

    async def request(self, host: str, port: int, version: int, community: bytes, pdu_type: int,
                      varbinds: bytes, timeout: float, retries: int, non_repeaters: int = 0,
                      max_repetitions: int = 0) -> Response:
        """One request with retries; raises SnmpFailure (timeout, malformed, refused, unreachable, send_error)."""
        return await self._exchange(host, port, version, timeout, retries, None, lambda rid: encode_request(
            version, community, pdu_type, rid, varbinds, non_repeaters, max_repetitions))

    async def exchange_v3(self, host: str, port: int, build: Callable[[int], bytes],
                          accept: Callable[[V3Message], Any], timeout: float, retries: int) -> Any:
        """An SNMPv3 request: ``build(msgID)`` is the message, resent as is on retries.

        A reply carrying that msgID from the target goes to ``accept``, which checks its
        security (digest, decryption) and returns what the request resolves to, or raises
        Malformed to drop it (the request keeps waiting and ends ``malformed`` if nothing
        better arrives). Failures are the same as ``request``'s.
        """
        return await self._exchange(host, port, 3, timeout, retries, accept, build)

    async def _exchange(self, host: str, port: int, version: int, timeout: float, retries: int,
                        accept: Callable[[V3Message], Any] | None, build: Callable[[int], bytes]) -> Any:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = self._socks.get(family) or await self._socket(family)
        rid = self._request_id()
        while rid in self._pending:
            rid = self._request_id()
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), (normalize(host), port), build(rid), version, timeout,
                           retries, accept=accept)
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
            try:
                sock.sendto(pending.message, pending.addr)
            except BlockingIOError:
                raise
            except OSError:
                # With RECVERR an ICMP error for any earlier datagram is also the socket's
                # pending error, which the next sendto (to whatever target) returns instead
                # of sending. That error is in the error queue: attribute it, then send
                # again; a real problem with this send fails the second time too.
                self._drain_errors(sock)
                if pending.future.done():  # the queued error was for this very destination
                    return
                sock.sendto(pending.message, pending.addr)
        except BlockingIOError:
            # Socket buffer full: count it as a lost packet, the retry timer resends.
            self.stats.extra["send_blocked"] = self.stats.extra.get("send_blocked", 0) + 1
        except OSError as exc:
            raise SnmpFailure(_send_reason(exc.errno), exc.strerror or str(exc)) from None
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

    def _on_readable(self, sock: socket.socket) -> None:
        for i in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                if i == 0:
                    # Woken with nothing to read: the kernel flags a queued ICMP error
                    # whose pending socket error a sendto has already taken.
                    self._drain_errors(sock)
                return
            except OSError:
                # The pending socket error of a queued ICMP error (ECONNREFUSED, ...).
                self._drain_errors(sock)
                continue
            self._received(data, addr)

    def _drain_errors(self, sock: socket.socket) -> None:
        """Fail the pending requests that queued ICMP errors name (by the destination they quote)."""
        extra = self.stats.extra
        for _ in range(1024):
            try:
                _data, anc, _flags, addr = sock.recvmsg(0, 512, socket.MSG_ERRQUEUE)
            except OSError:  # BlockingIOError: the queue is empty
                return
            ee = next((payload for level, _kind, payload in anc
                       if level in (socket.IPPROTO_IP, socket.IPPROTO_IPV6) and len(payload) >= EXTENDED_ERR.size),
                      None)
            if ee is None or not isinstance(addr, tuple):
                extra["icmp_other"] = extra.get("icmp_other", 0) + 1
                continue
            _err, origin, kind, code, _info, _ = EXTENDED_ERR.unpack_from(ee)
            if origin not in (SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6) or (origin, kind, code) in _TOO_BIG:
                # A local error (its sendto failed and said so) or a path MTU update (the retry fits).
                extra["icmp_other"] = extra.get("icmp_other", 0) + 1
                continue
            dest = (normalize(addr[0]), addr[1])
            refused = _PORT_UNREACHABLE.get((origin, kind)) == code
            reason = REASON_REFUSED if refused else REASON_UNREACHABLE
            failed = None
            for pending in self._pending.values():
                if pending.addr == dest and not pending.future.done():
                    if failed is None:
                        failed = SnmpFailure(reason, _describe(origin, kind, code, ee[EXTENDED_ERR.size:], dest))
                    pending.future.set_exception(failed)
            key = reason if failed is not None else "icmp_unmatched"  # late: its request already ended
            extra[key] = extra.get(key, 0) + 1

    def _received(self, data: bytes, addr: Any) -> None:
        source = (normalize(addr[0]), addr[1])
        if is_v3(data):
            self._received_v3(data, source)
            return
        try:
            response = decode(data)
        except Malformed:
            self._malformed(source)
            return
        pending = self._pending.get(response.request_id)
        if (pending is None or pending.addr != source or pending.version != response.version
                or response.pdu_type != RESPONSE or pending.future.done()):
            self.stats.unexpected += 1
            return
        self.stats.received += 1
        pending.future.set_result(response)

    def _received_v3(self, data: bytes, source: tuple[str, int]) -> None:
        try:
            message = parse_v3(data)
        except Malformed:
            self._malformed(source)
            return
        pending = self._pending.get(message.msg_id)
        if pending is None or pending.addr != source or pending.accept is None or pending.future.done():
            self.stats.unexpected += 1
            return
        try:
            result = pending.accept(message)
        except Malformed:
            self.stats.malformed += 1
            pending.malformed = True
            return
        self.stats.received += 1
        pending.future.set_result(result)

    def _malformed(self, source: tuple[str, int]) -> None:
        self.stats.malformed += 1
        for pending in self._pending.values():
            if pending.addr == source:
                pending.malformed = True


def _send_reason(err: int | None) -> str:
    if err == errno.ECONNREFUSED:
        return REASON_REFUSED
    if err in (errno.ENETUNREACH, errno.EHOSTUNREACH):  # e.g. an "unreachable" route on this host
        return REASON_UNREACHABLE
    return REASON_SEND


def _describe(origin: int, kind: int, code: int, offender: bytes, dest: tuple[str, int]) -> str:
    """``port unreachable from 127.0.0.1 (to 127.0.0.1:161)``: the ICMP error, who sent it, for what."""
    icmp = "ICMPv6" if origin == SO_EE_ORIGIN_ICMP6 else "ICMP"
    name, codes = _ICMP_NAMES.get((origin, kind), (f"{icmp} type {kind}", {}))
    what = codes.get(code) or f"{name} (code {code})"
    source = offender_address(offender)
    return f"{what}{f' from {source}' if source else ''} (to {dest[0]}:{dest[1]})"


def _udp_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    except OSError:
        pass  # the kernel caps it at net.core.rmem_max; the default still works
    sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
    return sock
