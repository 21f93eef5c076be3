"""Shared ICMP echo engine: one socket per address family, one asyncio reader each.

Why not ``ping3.ping()``: it opens a socket per call, and every raw socket sees
every ICMP packet on the host, so concurrent pings parse each other's replies
and accept each other's answers (see LIBRARIES.md). Here each family has a
single socket whose reader demultiplexes replies by (source, identifier,
sequence) and checks a per-engine cookie in the payload. RTT is taken from the
kernel's receive timestamp (SO_TIMESTAMPNS), so a busy event loop does not
inflate it.

Cost per echo matters at 10k targets: a cycle of N echoes costs one future and
one timer, not one per echo.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
from dataclasses import dataclass, field

import ping3

from agent.errors import ProbeUnavailable
from probes.base import REASON_SEND, REASON_TIMEOUT, REASON_UNREACHABLE

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_TIME_EXCEEDED = 8, 0, 3, 11
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY, ICMP6_UNREACH, ICMP6_TIME_EXCEEDED = 128, 129, 1, 3

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SOL_RAW, ICMP_FILTER = 255, 1  # linux/icmp.h: drop unwanted types in the kernel
ICMP6_FILTER = 1
_TIMESPEC = struct.Struct("@qq")
_HEADER = struct.Struct(ping3.ICMP_HEADER_FORMAT)
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
PAYLOAD_SIZE = 56  # like ping(8): 64-byte ICMP messages
RCVBUF = 4 * 1024 * 1024

# Extra detail for error replies; both count as "unreachable" for the cycle.
_ERROR_TYPES = {
    socket.AF_INET: {ICMP_UNREACH: REASON_UNREACHABLE, ICMP_TIME_EXCEEDED: REASON_UNREACHABLE},
    socket.AF_INET6: {ICMP6_UNREACH: REASON_UNREACHABLE, ICMP6_TIME_EXCEEDED: REASON_UNREACHABLE},
}


@dataclass(slots=True)
class EchoStats:
    """What one cycle of echoes to one address saw. ``rtts`` holds None for lost echoes."""

    sent: int
    rtts: list[float | None]
    errors: list[str] = field(default_factory=list)  # reasons for echoes that got no reply

    @property
    def received(self) -> int:
        return sum(r is not None for r in self.rtts)


class _Cycle:
    __slots__ = ("rtts", "sent_ns", "outstanding", "future", "errors", "keys", "timeout_ns", "timer")

    def __init__(self, count: int, future: asyncio.Future[None], timeout: float) -> None:
        self.rtts: list[float | None] = [None] * count
        self.sent_ns = [0] * count
        self.outstanding = count
        self.future = future
        self.errors: list[str] = []
        self.keys: list[tuple[str, int]] = []
        self.timeout_ns = int(timeout * 1e9)
        self.timer: asyncio.TimerHandle | None = None

    def settle(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and not self.future.done():
            self.future.set_result(None)


class _FamilySocket:
    """One ICMP socket for one address family and the replies it is waiting for."""

    def __init__(self, family: int, sock: socket.socket, raw: bool, engine: IcmpEngine) -> None:
        self.family = family
        self.sock = sock
        self.raw = raw
        self.engine = engine
        # Unprivileged (datagram) ICMP sockets: the kernel rewrites the identifier
        # to the socket's port and only hands us our own replies.
        self.ident = engine.ident if raw else sock.getsockname()[1]
        self.seq = 0
        self.pending: dict[tuple[str, int], tuple[_Cycle, int]] = {}
        v4 = family == socket.AF_INET
        self.echo_request = ICMP_ECHO_REQUEST if v4 else ICMP6_ECHO_REQUEST
        self.echo_reply = ICMP_ECHO_REPLY if v4 else ICMP6_ECHO_REPLY
        self.errors = _ERROR_TYPES[family]
        self.strip_ip_header = v4 and raw  # raw IPv4 sockets deliver the IP header, IPv6 ones do not
        self.payload = engine.cookie + bytes(range(PAYLOAD_SIZE - len(engine.cookie)))
        # Checksum of the request with identifier and sequence zero, via ping3's
        # RFC 1071 helper; per packet it is updated incrementally (RFC 1624)
        # instead of summing 64 bytes again for every echo.
        template = _HEADER.pack(self.echo_request, 0, 0, 0, 0) + self.payload
        self.base_sum = (~socket.htons(ping3.checksum(template))) & 0xFFFF

    def packet(self, seq: int) -> bytes:
        total = self.base_sum + self.ident + seq
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        # The kernel fills in ICMPv6 checksums itself (they cover a pseudo-header).
        csum = 0 if self.family == socket.AF_INET6 else (~total) & 0xFFFF
        return _HEADER.pack(self.echo_request, 0, csum, self.ident, seq) + self.payload

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq

    def on_readable(self) -> None:
        sock, stats = self.sock, self.engine.ignored
        for _ in range(1024):  # bounded so a flood cannot starve the loop
            try:
                data, anc, _flags, addr = sock.recvmsg(2048, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Datagram sockets report queued ICMP errors this way; the echo
                # they belong to will time out, so there is nothing else to do.
                stats["socket_error"] += 1
                continue
            recv_ns = _kernel_time_ns(anc)
            if self.strip_ip_header:
                if len(data) < 20:
                    stats["malformed"] += 1
                    continue
                data = data[(data[0] & 0x0F) * 4:]
            if len(data) < 8:
                stats["malformed"] += 1
                continue
            header = ping3.read_icmp_header(data[:8])
            kind = header["type"]
            if kind == self.echo_reply:
                self._on_reply(addr[0], header, data, recv_ns)
            elif kind in self.errors:
                self._on_error(data[8:], self.errors[kind])
            else:
                stats["other_type"] += 1

    def _on_reply(self, source: str, header: dict[str, int], data: bytes, recv_ns: int) -> None:
        if header["id"] != self.ident or data[8:8 + len(self.engine.cookie)] != self.engine.cookie:
            self.engine.ignored["foreign"] += 1  # another pinger's reply, or spoofed
            return
        if "%" in source:
            source = source.split("%", 1)[0]
        entry = self.pending.pop((source, header["seq"]), None)
        if entry is None:
            # Duplicate, late (after its cycle ended), or from an address we did not ping.
            self.engine.ignored["unmatched"] += 1
            return
        cycle, index = entry
        rtt_ns = recv_ns - cycle.sent_ns[index]
        cycle.rtts[index] = max(rtt_ns, 0) / 1e9 if rtt_ns <= cycle.timeout_ns else None
        cycle.settle()

    def _on_error(self, inner: bytes, reason: str) -> None:
        """An ICMP error quoting one of our echo requests: that echo failed for ``reason``."""
        if self.family == socket.AF_INET:
            if len(inner) < 28:
                self.engine.ignored["malformed"] += 1
                return
            ihl = (inner[0] & 0x0F) * 4
            dest = ping3.read_ipv4_header(inner[:20])["dest_addr"]
        else:
            if len(inner) < 48:
                self.engine.ignored["malformed"] += 1
                return
            ihl = 40
            dest = ping3.read_ipv6_header(inner[:40])["dest_addr"]
        quoted = inner[ihl:ihl + 8]
        if len(quoted) < 8:
            self.engine.ignored["malformed"] += 1
            return
        echo = ping3.read_icmp_header(quoted)
        if echo["type"] != self.echo_request or echo["id"] != self.ident:
            self.engine.ignored["foreign"] += 1
            return
        entry = self.pending.pop((dest, echo["seq"]), None)
        if entry is None:
            self.engine.ignored["unmatched"] += 1
            return
        cycle, _ = entry
        cycle.errors.append(reason)
        cycle.settle()


def _kernel_time_ns(anc: list[tuple[int, int, bytes]]) -> int:
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


class IcmpEngine:
    """Sends echo cycles and collects replies; one instance per agent and event loop."""

    def __init__(self, *, mode: str = "auto", socket_factory=socket.socket) -> None:
        if mode not in ("auto", "raw", "dgram"):
            raise ValueError(f"mode must be auto, raw or dgram (got {mode!r})")
        self.mode = mode
        self._socket_factory = socket_factory
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.cookie = os.urandom(8)
        self.ignored: dict[str, int] = {k: 0 for k in ("malformed", "foreign", "unmatched", "other_type",
                                                      "socket_error")}
        self._families: dict[int, _FamilySocket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def socket_modes(self) -> dict[str, str]:
        return {("ipv4" if f == socket.AF_INET else "ipv6"): ("raw" if s.raw else "dgram")
                for f, s in self._families.items()}

    def _family(self, family: int) -> _FamilySocket:
        fam = self._families.get(family)
        if fam is None:
            fam = self._open(family)
            self._families[family] = fam
        return fam

    def _open(self, family: int) -> _FamilySocket:
        proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
        kinds = {"auto": (socket.SOCK_RAW, socket.SOCK_DGRAM), "raw": (socket.SOCK_RAW,),
                 "dgram": (socket.SOCK_DGRAM,)}[self.mode]
        problems = []
        for kind in kinds:
            try:
                sock = self._socket_factory(family, kind, proto)
            except OSError as exc:
                problems.append(f"{'raw' if kind == socket.SOCK_RAW else 'datagram'}: {exc.strerror}")
                continue
            return self._setup(family, sock, kind == socket.SOCK_RAW)
        fam_name = "IPv4" if family == socket.AF_INET else "IPv6"
        raise ProbeUnavailable(
            f"cannot open an ICMP socket for {fam_name} ({'; '.join(problems)}). Either run with "
            "CAP_NET_RAW (e.g. systemd AmbientCapabilities=CAP_NET_RAW, or setcap cap_net_raw+ep on the "
            "Python binary) or allow unprivileged ICMP for this user's group with "
            "sysctl net.ipv4.ping_group_range=\"0 2147483647\"")

    def _setup(self, family: int, sock: socket.socket, raw: bool) -> _FamilySocket:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                break
            except OSError:
                continue
        if raw and family == socket.AF_INET:
            keep = (1 << ICMP_ECHO_REPLY) | (1 << ICMP_UNREACH) | (1 << ICMP_TIME_EXCEEDED)
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~keep & 0xFFFFFFFF))
        if raw and family == socket.AF_INET6:
            words = [0xFFFFFFFF] * 8  # a set bit blocks that type
            for kind in (ICMP6_ECHO_REPLY, ICMP6_UNREACH, ICMP6_TIME_EXCEEDED):
                words[kind >> 5] &= ~(1 << (kind & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))
        if not raw:
            sock.bind(("0.0.0.0", 0) if family == socket.AF_INET else ("::", 0))
        fam = _FamilySocket(family, sock, raw, self)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), fam.on_readable)
        return fam

    def open(self, family: int) -> None:
        """Open the socket for ``family`` now, so permission problems show at start-up."""
        self._family(family)

    async def ping(self, ip: str, family: int, count: int, spacing: float, timeout: float) -> EchoStats:
        """Send ``count`` echoes ``spacing`` seconds apart; wait up to ``timeout`` for each reply."""
        fam = self._family(family)
        loop = asyncio.get_running_loop()
        cycle = _Cycle(count, loop.create_future(), timeout)
        dest = (ip, 0) if family == socket.AF_INET else (ip, 0, 0, 0)

        def send(index: int) -> None:
            seq = fam.next_seq()
            key = (ip, seq)
            packet = fam.packet(seq)
            cycle.sent_ns[index] = time.time_ns()
            try:
                fam.sock.sendto(packet, dest)
            except OSError as exc:
                cycle.errors.append(REASON_UNREACHABLE if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
                                    else REASON_SEND)
                cycle.settle()
            else:
                fam.pending[key] = (cycle, index)
                cycle.keys.append(key)
            if index + 1 < count:
                cycle.timer = loop.call_later(spacing, send, index + 1)
            else:
                cycle.timer = loop.call_later(timeout, _expire)

        def _expire() -> None:
            if not cycle.future.done():
                cycle.future.set_result(None)

        send(0)
        try:
            await cycle.future
        finally:
            if cycle.timer is not None:
                cycle.timer.cancel()
            for key in cycle.keys:
                entry = fam.pending.get(key)
                if entry is not None and entry[0] is cycle:
                    del fam.pending[key]
        lost = sum(r is None for r in cycle.rtts) - len(cycle.errors)
        errors = cycle.errors + [REASON_TIMEOUT] * max(lost, 0)
        return EchoStats(sent=count, rtts=cycle.rtts, errors=errors)

    async def close(self) -> None:
        for fam in self._families.values():
            if self._loop is not None:
                self._loop.remove_reader(fam.sock.fileno())
            fam.sock.close()
        self._families.clear()
