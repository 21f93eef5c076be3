"""Shared ICMP echo engine: one socket per address family, one asyncio reader each.

Why not ``ping3.ping()``: it opens a socket per call, and every raw socket sees
every ICMP packet on the host, so concurrent pings parse each other's replies
and accept each other's answers: measured with ping3 5.1 at 200 concurrent
pings on loopback, 72 of 200 were false timeouts and RTT p50 was 1.46 s for a
real 0.05 ms; ping3 matches replies on (identifier, sequence) only, never on
the source (kyan001/ping3#18, #20, #26). Here each family has a
single socket whose reader demultiplexes replies by (source, identifier,
sequence) and checks a per-engine cookie in the payload. RTT is taken from the
kernel's receive timestamp (SO_TIMESTAMPNS), so a busy event loop does not
inflate it.

Cost per echo matters at 10k targets. A cycle is one plain object driven by
callbacks (no task, no future unless a coroutine awaits it), and its spaced
echoes and timeout go through a ``Ticker`` that coalesces timers due in the
same 5 ms: at 3,000 echoes/s the process wakes ~200 times a second, not 6,000.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ping3

from common.errors import ProbeUnavailable
from common.ticker import Ticker, TickerCall
from probes.base import REASON_SEND, REASON_TIMEOUT, REASON_UNREACHABLE

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_TIME_EXCEEDED = 8, 0, 3, 11
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY, ICMP6_UNREACH, ICMP6_TIME_EXCEEDED = 128, 129, 1, 3

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_RECVERR, IPV6_RECVERR = getattr(socket, "IP_RECVERR", 11), getattr(socket, "IPV6_RECVERR", 25)
SO_EE_ORIGIN_LOCAL = 1  # linux/errqueue.h: the error was raised on this host, not by an ICMP reply
SOL_RAW, ICMP_FILTER = 255, 1  # linux/icmp.h: drop unwanted types in the kernel
ICMP6_FILTER = 1
_TIMESPEC = struct.Struct("@qq")
_HEADER = struct.Struct(ping3.ICMP_HEADER_FORMAT)
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
PAYLOAD_SIZE = 56  # like ping(8): 64-byte ICMP messages
RCVBUF = 4 * 1024 * 1024
# Echo spacing shorter than this keeps exact asyncio timers: rounding to a 5 ms tick would distort it.
EXACT_SPACING_BELOW = 0.05

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
    """One cycle of ``count`` echoes to one address; ends when every echo is settled or timed out."""

    __slots__ = ("fam", "ip", "dest", "count", "spacing", "timeout", "timeout_ns", "rtts", "sent_ns", "keys",
                 "outstanding", "sent", "errors", "done", "on_done", "start", "timer")

    def __init__(self, fam: _FamilySocket, ip: str, count: int, spacing: float, timeout: float,
                 on_done: Callable[[EchoStats], None]) -> None:
        self.fam = fam
        self.ip = ip
        self.dest = (ip, 0) if fam.family == socket.AF_INET else (ip, 0, 0, 0)
        self.count = count
        self.spacing = spacing
        self.timeout = timeout
        self.timeout_ns = int(timeout * 1e9)
        self.rtts: list[float | None] = [None] * count
        self.sent_ns = [0] * count
        self.keys: list[tuple[str, int]] = []
        self.outstanding = count  # echoes neither answered, failed nor timed out
        self.sent = 0
        self.errors: list[str] = []
        self.done = False
        self.on_done = on_done
        self.start = 0.0
        self.timer: TickerCall | None = None  # the timeout, cancelled when the cycle ends early

    def send(self) -> None:
        """Send the next echo, then schedule the one after it (or the timeout after the last)."""
        if self.done:
            return
        fam, index = self.fam, self.sent
        self.sent = index + 1
        seq = fam.seq = (fam.seq + 1) & 0xFFFF
        packet = fam.packet(seq)
        self.sent_ns[index] = time.time_ns()
        try:
            fam.sock.sendto(packet, self.dest)
        except OSError as exc:
            self.errors.append(REASON_UNREACHABLE if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
                               else REASON_SEND)
            self.settle()
            if self.done:
                return
        else:
            key = (self.ip, seq)
            fam.pending[key] = (self, index)
            self.keys.append(key)
        engine = fam.engine
        if self.sent < self.count:
            # Planned from the first send, so rounding to the tick never accumulates drift.
            when = self.start + self.sent * self.spacing
            if self.spacing < EXACT_SPACING_BELOW:
                engine._loop.call_at(when, self.send)
            else:
                engine._ticker.call_at(when, self.send)
        else:
            self.timer = engine._ticker.call_at(engine._loop.time() + self.timeout, self.finish)

    def reply(self, index: int, recv_ns: int) -> None:
        rtt_ns = recv_ns - self.sent_ns[index]
        self.rtts[index] = max(rtt_ns, 0) / 1e9 if rtt_ns <= self.timeout_ns else None
        self.settle()

    def settle(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:  # implies every echo was sent: only sent echoes settle
            self.finish()

    def cancel(self) -> None:
        """Stop sending and forget the outstanding echoes, without reporting."""
        if not self.done:
            self.done = True
            self._forget()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        self._forget()
        lost = sum(r is None for r in self.rtts) - len(self.errors)
        errors = self.errors + [REASON_TIMEOUT] * max(lost, 0)
        self.on_done(EchoStats(sent=self.count, rtts=self.rtts, errors=errors))

    def _forget(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None  # it refers back to us: leave no cycle for the garbage collector
        self.fam.engine._cycles.discard(self)
        pending = self.fam.pending
        for key in self.keys:
            entry = pending.get(key)
            if entry is not None and entry[0] is self:
                del pending[key]


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

    def on_readable(self) -> None:
        # The hot path: one call per reply at 10k targets, so header fields are
        # unpacked in place (same format as ping3's reader, without its dict) and
        # the attribute look-ups are hoisted out of the loop.
        sock, stats, pending = self.sock, self.engine.ignored, self.pending
        cookie, ident, echo_reply = self.engine.cookie, self.ident, self.echo_reply
        cookie_end = 8 + len(cookie)
        strip, v6 = self.strip_ip_header, self.family == socket.AF_INET6
        unpack_header = _HEADER.unpack_from
        if not self.raw:
            self._drain_error_queue()
        for _ in range(1024):  # bounded so a flood cannot starve the loop
            try:
                data, anc, _flags, addr = sock.recvmsg(2048, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # A datagram socket reports a queued ICMP error once this way; the
                # error itself is read (and attributed) from the error queue.
                stats["socket_error"] += 1
                if not self.raw:
                    self._drain_error_queue()
                continue
            off = 0
            if strip:
                if len(data) < 20:
                    stats["malformed"] += 1
                    continue
                off = (data[0] & 0x0F) * 4
            if len(data) - off < 8:
                stats["malformed"] += 1
                continue
            kind, _code, _csum, rid, seq = unpack_header(data, off)
            if kind == echo_reply:
                if rid != ident or data[off + 8:off + cookie_end] != cookie:
                    stats["foreign"] += 1  # another pinger's reply, or spoofed
                    continue
                source = addr[0]
                if v6 and "%" in source:
                    source = source.split("%", 1)[0]
                entry = pending.pop((source, seq), None)
                if entry is None:
                    # Duplicate, late (after its cycle ended), or from an address we did not ping.
                    stats["unmatched"] += 1
                    continue
                entry[0].reply(entry[1], _kernel_time_ns(anc))
            elif kind in self.errors:
                self._on_error(data[off + 8:], self.errors[kind])
            else:
                stats["other_type"] += 1

    def _drain_error_queue(self) -> None:
        """Datagram sockets: attribute queued ICMP errors to the echoes they quote."""
        for _ in range(1024):
            try:
                data, anc, _flags, addr = self.sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) < 8:
                self.engine.ignored["malformed"] += 1
                continue
            # The queued message is our own echo request (the kernel already matched it to
            # this socket); its destination is the message's address.
            _kind, _code, _csum, _rid, seq = _HEADER.unpack_from(data, 0)
            origin = next((payload[4] for level, _t, payload in anc
                           if level in (socket.IPPROTO_IP, socket.IPPROTO_IPV6) and len(payload) >= 8), 0)
            dest = addr[0].split("%", 1)[0] if isinstance(addr, tuple) else ""
            entry = self.pending.pop((dest, seq), None)
            if entry is None:
                self.engine.ignored["unmatched"] += 1
                continue
            cycle = entry[0]
            cycle.errors.append(REASON_SEND if origin == SO_EE_ORIGIN_LOCAL else REASON_UNREACHABLE)
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
        cycle = entry[0]
        cycle.errors.append(reason)
        cycle.settle()


def _kernel_time_ns(anc: list[tuple[int, int, bytes]]) -> int:
    if len(anc) == 1:  # the usual case: just our timestamp
        level, kind, payload = anc[0]
        if kind == SO_TIMESTAMPNS and level == socket.SOL_SOCKET and len(payload) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return sec * 1_000_000_000 + nsec
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(payload)
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


# Classic BPF opcodes (linux/filter.h) for the identifier filter below.
_BPF_LDX_MSH, _BPF_LDX_IMM, _BPF_LDB_IND, _BPF_LDH_IND = 0xB1, 0x01, 0x50, 0x48
_BPF_JEQ_K, _BPF_RET_K = 0x15, 0x06
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)


def _ident_filter(family: int, ident: int) -> list[tuple[int, int, int, int]]:
    """BPF program: keep echo replies carrying ``ident`` and the ICMP errors we listen for; drop the rest."""
    if family == socket.AF_INET:  # raw IPv4 sockets see the IP header: X = its length
        first, reply, errors = (_BPF_LDX_MSH, 0, 0, 0), ICMP_ECHO_REPLY, (ICMP_UNREACH, ICMP_TIME_EXCEEDED)
    else:  # raw IPv6 sockets start at the ICMPv6 header
        first, reply, errors = (_BPF_LDX_IMM, 0, 0, 0), ICMP6_ECHO_REPLY, (ICMP6_UNREACH, ICMP6_TIME_EXCEEDED)
    return [
        first,
        (_BPF_LDB_IND, 0, 0, 0),  # A = type
        (_BPF_JEQ_K, 0, 2, reply),  # echo reply? check the identifier : check for an error type
        (_BPF_LDH_IND, 0, 0, 4),  # A = identifier
        (_BPF_JEQ_K, 2, 3, ident),  # ours? accept : drop
        (_BPF_JEQ_K, 1, 0, errors[0]),
        (_BPF_JEQ_K, 0, 1, errors[1]),
        (_BPF_RET_K, 0, 0, 0x40000),  # accept the whole packet
        (_BPF_RET_K, 0, 0, 0),  # drop
    ]


def _attach_ident_filter(sock: socket.socket, family: int, ident: int) -> None:
    """Have the kernel drop other pingers' replies before they wake us.

    A raw ICMP socket gets a copy of every echo reply on the host: next to
    another busy pinger (smokeping, a second agent, fping) that doubles or
    triples the packets we read and parse only to discard (measured beside a
    3,000-target agent: 4 replies read per echo of ours). The user-space checks
    (identifier, cookie, source) still run on what passes; this only saves work,
    so a kernel that refuses the filter is not an error.
    """
    import ctypes

    program = _ident_filter(family, ident)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        pass


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
        self._ticker: Ticker | None = None
        self._cycles: set[_Cycle] = set()  # running, so close() can stop them

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
        if raw:
            _attach_ident_filter(sock, family, self.ident)
        if not raw:
            sock.bind(("0.0.0.0", 0) if family == socket.AF_INET else ("::", 0))
            # Datagram sockets never see ICMP errors as packets; with RECVERR the kernel
            # queues them on the socket's error queue, quoting the echo they answer.
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        fam = _FamilySocket(family, sock, raw, self)
        self._loop = asyncio.get_running_loop()
        if self._ticker is None or self._ticker.loop is not self._loop:
            self._ticker = Ticker(self._loop)
        self._loop.add_reader(sock.fileno(), fam.on_readable)
        return fam

    def open(self, family: int) -> None:
        """Open the socket for ``family`` now, so permission problems show at start-up."""
        self._family(family)

    def begin(self, ip: str, family: int, count: int, spacing: float, timeout: float,
              on_done: Callable[[EchoStats], None]) -> _Cycle:
        """Start a cycle without a coroutine; ``on_done(stats)`` is called once, from the loop, at its end.

        The returned cycle can be ``cancel()``ed, after which ``on_done`` is never called.
        """
        fam = self._family(family)
        cycle = _Cycle(fam, ip, count, spacing, timeout, on_done)
        # Planned from the tick this cycle started in, so cycles started in one tick send their
        # later echoes in one tick too (when the spacing is a multiple of it, as 200 ms is).
        cycle.start = self._loop.time() // self._ticker.tick * self._ticker.tick
        self._cycles.add(cycle)
        cycle.send()
        return cycle

    async def ping(self, ip: str, family: int, count: int, spacing: float, timeout: float) -> EchoStats:
        """Send ``count`` echoes ``spacing`` seconds apart; wait up to ``timeout`` for each reply."""
        future: asyncio.Future[EchoStats] = asyncio.get_running_loop().create_future()

        def done(stats: EchoStats) -> None:
            if not future.done():  # the awaiting task may have been cancelled meanwhile
                future.set_result(stats)

        cycle = self.begin(ip, family, count, spacing, timeout, done)
        try:
            return await future
        finally:
            cycle.cancel()  # no-op when it finished

    async def close(self) -> None:
        for cycle in list(self._cycles):
            cycle.cancel()  # their timers find them done and do nothing
        for fam in self._families.values():
            if self._loop is not None:
                self._loop.remove_reader(fam.sock.fileno())
            fam.sock.close()
        self._families.clear()
