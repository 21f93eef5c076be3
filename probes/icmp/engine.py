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

Targets with ICMP options (source, size, don't-fragment, DSCP, TTL; see
``options.py``) get a socket of their own per distinct option set, with the
options set once on the socket and its own identifier, so the kernel filter of
every other socket drops its replies; the per-echo path is the same code for
both. Targets without options never see any of it: same shared socket, same
packets. Why sockets rather than per-packet ancillary data (IP_TTL/IP_TOS
cmsgs) on the shared socket: IPv4 has no per-packet don't-fragment, a source
needs IP_PKTINFO and a size its own payload, so per-packet settings would still
need a socket for DF and would put option branches in the shared send path,
while the kernel cost of sendmsg with cmsgs and of sendto was the same when
measured (6.2 vs 6.3 µs per loopback echo). The price is a small kernel cost
per raw option socket (see MAX_OPTION_SOCKETS).
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

from common.errqueue import EXTENDED_ERR, offender_address
from common.errors import ProbeUnavailable
from common.ticker import Ticker, TickerCall, grid_floor
from probes.base import REASON_FRAG_NEEDED, REASON_SEND, REASON_TIMEOUT, REASON_TTL_EXCEEDED, REASON_UNREACHABLE
from probes.icmp.options import DEFAULT_SIZE, IcmpOptions

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_TIME_EXCEEDED = 8, 0, 3, 11
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY, ICMP6_UNREACH, ICMP6_TIME_EXCEEDED = 128, 129, 1, 3
ICMP_FRAG_NEEDED_CODE, ICMP6_PACKET_TOO_BIG = 4, 2
# REASON_FRAG_NEEDED: an echo too big for the path with don't-fragment set: refused by the local
# interface's MTU (EMSGSIZE, or the path MTU the kernel learnt from an earlier error), or by a
# router with ICMP "fragmentation needed" (IPv4 type 3 code 4) / "packet too big" (ICMPv6 type 2).
# One reason for all three, so an MTU black-hole alert does not depend on which hop is small.

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_RECVERR, IPV6_RECVERR = getattr(socket, "IP_RECVERR", 11), getattr(socket, "IPV6_RECVERR", 25)
SO_EE_ORIGIN_LOCAL, SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6 = 1, 2, 3  # linux/errqueue.h: who raised it
IP_MTU_DISCOVER, IP_PMTUDISC_DONT, IP_PMTUDISC_DO = 10, 0, 2
IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
SOL_RAW, ICMP_FILTER = 255, 1  # linux/icmp.h: drop unwanted types in the kernel
ICMP6_FILTER = 1
_TIMESPEC = struct.Struct("@qq")
_HEADER = struct.Struct(ping3.ICMP_HEADER_FORMAT)
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
PAYLOAD_SIZE = DEFAULT_SIZE  # like ping(8): 64-byte ICMP messages
RCVBUF = 4 * 1024 * 1024
# Echo spacing shorter than this keeps exact asyncio timers: rounding to a 5 ms tick would distort it.
EXACT_SPACING_BELOW = 0.05

# Option sockets: at most this many per engine; one idle this long and not in use by a running
# cycle is closed when a new option set needs a socket. Each raw one costs every ICMP packet the
# host receives a kernel clone before its filter drops it: measured 0.25-0.3 µs of system time
# per echo of the shared path per option socket (3,000 loopback targets; 16 sockets: 8.5 -> 13.2
# µs), i.e. ~0.1 % of a core per option set at 10k targets. Datagram sockets have no such cost.
MAX_OPTION_SOCKETS = 64
OPTION_SOCKET_IDLE = 600.0

# The reason of each ICMP error type quoting an echo of ours (IPv4 type 3 code 4: frag_needed).
_ERROR_TYPES = {
    socket.AF_INET: {ICMP_UNREACH: REASON_UNREACHABLE, ICMP_TIME_EXCEEDED: REASON_TTL_EXCEEDED},
    socket.AF_INET6: {ICMP6_UNREACH: REASON_UNREACHABLE, ICMP6_TIME_EXCEEDED: REASON_TTL_EXCEEDED,
                      ICMP6_PACKET_TOO_BIG: REASON_FRAG_NEEDED},
}
_ERROR_NAMES = {
    socket.AF_INET: {ICMP_UNREACH: "destination unreachable", ICMP_TIME_EXCEEDED: "time exceeded"},
    socket.AF_INET6: {ICMP6_UNREACH: "destination unreachable", ICMP6_TIME_EXCEEDED: "time exceeded",
                      ICMP6_PACKET_TOO_BIG: "packet too big"},
}


@dataclass(slots=True)
class EchoStats:
    """What one cycle of echoes to one address saw. ``rtts`` holds None for lost echoes."""

    sent: int
    rtts: list[float | None]
    errors: list[str] = field(default_factory=list)  # reasons for echoes that got no reply
    detail: str = ""  # the first error's context: who sent the ICMP error, the errno of a failed send

    @property
    def received(self) -> int:
        return sum(r is not None for r in self.rtts)


class _Cycle:
    """One cycle of ``count`` echoes to one address; ends when every echo is settled or timed out."""

    __slots__ = ("fam", "ip", "dest", "count", "spacing", "timeout", "timeout_ns", "rtts", "sent_ns", "keys",
                 "outstanding", "sent", "errors", "detail", "done", "on_done", "start", "timer")

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
        self.detail = ""
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
            self._send_failed(exc, len(packet))
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

    def _send_failed(self, exc: OSError, length: int) -> None:
        err = exc.errno
        if err == errno.EMSGSIZE:
            self.errors.append(REASON_FRAG_NEEDED)
            header = 20 if self.fam.family == socket.AF_INET else 40
            problem = f"message too long: the {length + header}-byte packet exceeds the path MTU"
        else:
            self.errors.append(REASON_UNREACHABLE if err in (errno.ENETUNREACH, errno.EHOSTUNREACH) else REASON_SEND)
            problem = (exc.strerror or str(exc)).lower()
        if not self.detail:
            self.detail = f"send to {self.ip}: {problem}"

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
        self.on_done(EchoStats(sent=self.count, rtts=self.rtts, errors=errors, detail=self.detail))

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
    """One ICMP socket for one address family (and one option set) and the replies it is waiting for."""

    def __init__(self, family: int, sock: socket.socket, raw: bool, engine: IcmpEngine, ident: int | None = None,
                 size: int = PAYLOAD_SIZE) -> None:
        self.family = family
        self.sock = sock
        self.raw = raw
        self.engine = engine
        # Unprivileged (datagram) ICMP sockets: the kernel rewrites the identifier
        # to the socket's port and only hands us our own replies.
        self.ident = (engine.ident if ident is None else ident) if raw else sock.getsockname()[1]
        self.last_used = 0.0  # loop time an option socket last started a cycle
        self.seq = 0
        self.pending: dict[tuple[str, int], tuple[_Cycle, int]] = {}
        v4 = family == socket.AF_INET
        self.echo_request = ICMP_ECHO_REQUEST if v4 else ICMP6_ECHO_REQUEST
        self.echo_reply = ICMP_ECHO_REPLY if v4 else ICMP6_ECHO_REPLY
        self.errors = _ERROR_TYPES[family]
        self.strip_ip_header = v4 and raw  # raw IPv4 sockets deliver the IP header, IPv6 ones do not
        # Payloads shorter than the cookie carry what fits of it (size 0: none; replies are then
        # matched on source, identifier and sequence only).
        self.cookie = engine.cookie[:size]
        self.payload = self.cookie + bytes(i & 0xFF for i in range(size - len(self.cookie)))
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
        cookie, ident, echo_reply = self.cookie, self.ident, self.echo_reply
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
                self._on_error(data, off, kind, _code, addr[0])
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
            ee = next((payload for level, _t, payload in anc
                       if level in (socket.IPPROTO_IP, socket.IPPROTO_IPV6) and len(payload) >= 8), b"")
            reason, detail, origin = self._queued_error(ee)
            if len(data) < 8:
                # A local error (EMSGSIZE) queues only an IP header; the failed send already reported it.
                if origin != SO_EE_ORIGIN_LOCAL:
                    self.engine.ignored["malformed"] += 1
                continue
            # The queued message is our own echo request (the kernel already matched it to
            # this socket); its destination is the message's address.
            _kind, _code, _csum, _rid, seq = _HEADER.unpack_from(data, 0)
            dest = addr[0].split("%", 1)[0] if isinstance(addr, tuple) else ""
            entry = self.pending.pop((dest, seq), None)
            if entry is None:
                if origin != SO_EE_ORIGIN_LOCAL:  # a local error was already reported by the failed send
                    self.engine.ignored["unmatched"] += 1
                continue
            cycle = entry[0]
            cycle.errors.append(reason)
            if not cycle.detail:
                cycle.detail = detail
            cycle.settle()

    def _queued_error(self, ee: bytes) -> tuple[str, str, int]:
        """(reason, detail, origin) of one error-queue entry's ``sock_extended_err``."""
        if len(ee) < EXTENDED_ERR.size:
            origin = ee[4] if len(ee) > 4 else 0
            return (REASON_SEND if origin == SO_EE_ORIGIN_LOCAL else REASON_UNREACHABLE), "", origin
        err, origin, kind, code, info, _data = EXTENDED_ERR.unpack_from(ee)
        if origin == SO_EE_ORIGIN_LOCAL:
            if err == errno.EMSGSIZE:
                return REASON_FRAG_NEEDED, f"message too long (path MTU {info})", origin
            return REASON_SEND, os.strerror(err).lower() if err else "local error", origin
        offender = offender_address(ee[EXTENDED_ERR.size:])
        reason, detail = self._classify(kind, code, info)
        return reason, detail + (f" from {offender}" if offender else ""), origin

    def _classify(self, kind: int, code: int, mtu: int) -> tuple[str, str]:
        """Reason and description of ICMP error ``kind``/``code`` (``mtu``: the next-hop MTU it carries)."""
        if self.family == socket.AF_INET and kind == ICMP_UNREACH and code == ICMP_FRAG_NEEDED_CODE:
            return REASON_FRAG_NEEDED, f"fragmentation needed (next-hop MTU {mtu})"
        name = _ERROR_NAMES[self.family].get(kind, f"ICMP type {kind}")
        reason = self.errors.get(kind, REASON_UNREACHABLE)
        if reason == REASON_TTL_EXCEEDED and code != 0:  # code 1: fragments lost, not a TTL/hop limit
            return REASON_UNREACHABLE, "fragment reassembly time exceeded"
        if reason == REASON_FRAG_NEEDED:
            return reason, f"{name} (MTU {mtu})"
        return reason, name if reason == REASON_TTL_EXCEEDED else f"{name} (code {code})"

    def _on_error(self, data: bytes, off: int, kind: int, code: int, source: str) -> None:
        """An ICMP error quoting one of our echo requests: that echo failed; ``source`` sent the error."""
        inner = data[off + 8:]
        if self.family == socket.AF_INET:
            if len(inner) < 28:
                self.engine.ignored["malformed"] += 1
                return
            ihl = (inner[0] & 0x0F) * 4
            dest = ping3.read_ipv4_header(inner[:20])["dest_addr"]
            mtu = int.from_bytes(data[off + 6:off + 8], "big")  # RFC 1191: next-hop MTU in the unused word
        else:
            if len(inner) < 48:
                self.engine.ignored["malformed"] += 1
                return
            ihl = 40
            dest = ping3.read_ipv6_header(inner[:40])["dest_addr"]
            mtu = int.from_bytes(data[off + 4:off + 8], "big")  # RFC 4443: Packet Too Big's MTU
        quoted = inner[ihl:ihl + 8]
        if len(quoted) < 8:
            self.engine.ignored["malformed"] += 1
            return
        echo = ping3.read_icmp_header(quoted)
        if echo["type"] != self.echo_request or echo["id"] != self.ident:
            if echo["type"] != self.echo_request or echo["id"] not in self.engine.raw_idents:
                self.engine.ignored["foreign"] += 1
            return  # else it quotes an echo of another socket of ours, which reads the same error
        entry = self.pending.pop((dest, echo["seq"]), None)
        if entry is None:
            self.engine.ignored["unmatched"] += 1
            return
        reason, detail = self._classify(kind, code, mtu)
        cycle = entry[0]
        cycle.errors.append(reason)
        if not cycle.detail:
            cycle.detail = f"{detail} from {source.split('%', 1)[0]}"
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


def _error_types(family: int, options: bool) -> tuple[int, ...]:
    """ICMP error types a socket listens for; option sockets (IPv6) add Packet Too Big for don't-fragment."""
    if family == socket.AF_INET:  # "fragmentation needed" is a code of type 3
        return ICMP_UNREACH, ICMP_TIME_EXCEEDED
    return (ICMP6_UNREACH, ICMP6_TIME_EXCEEDED, *((ICMP6_PACKET_TOO_BIG,) if options else ()))


def _ident_filter(family: int, ident: int, errors: tuple[int, ...] | None = None) -> list[tuple[int, int, int, int]]:
    """BPF program: keep echo replies carrying ``ident`` and the ICMP errors we listen for; drop the rest."""
    errors = errors or _error_types(family, False)
    if family == socket.AF_INET:  # raw IPv4 sockets see the IP header: X = its length
        first, reply = (_BPF_LDX_MSH, 0, 0, 0), ICMP_ECHO_REPLY
    else:  # raw IPv6 sockets start at the ICMPv6 header
        first, reply = (_BPF_LDX_IMM, 0, 0, 0), ICMP6_ECHO_REPLY
    n = len(errors)
    return [
        first,
        (_BPF_LDB_IND, 0, 0, 0),  # A = type
        (_BPF_JEQ_K, 0, 2, reply),  # echo reply? check the identifier : check for an error type
        (_BPF_LDH_IND, 0, 0, 4),  # A = identifier
        (_BPF_JEQ_K, n, n + 1, ident),  # ours? accept : drop
        # One test per error type: equal jumps to accept, else to the next test (the last: to drop).
        *((_BPF_JEQ_K, n - 1 - i, 0 if i < n - 1 else 1, kind) for i, kind in enumerate(errors)),
        (_BPF_RET_K, 0, 0, 0x40000),  # accept the whole packet
        (_BPF_RET_K, 0, 0, 0),  # drop
    ]


def _attach_ident_filter(sock: socket.socket, family: int, ident: int, errors: tuple[int, ...]) -> None:
    """Have the kernel drop other pingers' replies before they wake us.

    A raw ICMP socket gets a copy of every echo reply on the host: next to
    another busy pinger (smokeping, a second agent, fping) that doubles or
    triples the packets we read and parse only to discard (measured beside a
    3,000-target agent: 4 replies read per echo of ours). The user-space checks
    (identifier, cookie, source) still run on what passes; this only saves work,
    so a kernel that refuses the filter is not an error.
    """
    import ctypes

    program = _ident_filter(family, ident, errors)
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
        self._options: dict[tuple[int, IcmpOptions], _FamilySocket] = {}  # option sockets
        # Identifiers of this engine's raw sockets: an ICMP error quoting one of them reaches every
        # raw socket, and only the one that sent the echo counts it.
        self.raw_idents = {self.ident}

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

    def _setup(self, family: int, sock: socket.socket, raw: bool, ident: int | None = None,
               options: IcmpOptions | None = None) -> _FamilySocket:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF)
                break
            except OSError:
                continue
        errors = _error_types(family, options is not None)
        if raw and family == socket.AF_INET:
            keep = (1 << ICMP_ECHO_REPLY) | sum(1 << kind for kind in errors)
            sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~keep & 0xFFFFFFFF))
        if raw and family == socket.AF_INET6:
            words = [0xFFFFFFFF] * 8  # a set bit blocks that type
            for kind in (ICMP6_ECHO_REPLY, *errors):
                words[kind >> 5] &= ~(1 << (kind & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *words))
        if raw:
            _attach_ident_filter(sock, family, self.ident if ident is None else ident, errors)
        if not raw:
            if options is None or options.source is None:  # else already bound to its source
                sock.bind(("0.0.0.0", 0) if family == socket.AF_INET else ("::", 0))
            # Datagram sockets never see ICMP errors as packets; with RECVERR the kernel
            # queues them on the socket's error queue, quoting the echo they answer.
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        fam = _FamilySocket(family, sock, raw, self, ident,
                            PAYLOAD_SIZE if options is None else options.payload_size)
        self._loop = asyncio.get_running_loop()
        if self._ticker is None or self._ticker.loop is not self._loop:
            self._ticker = Ticker(self._loop)
        self._loop.add_reader(sock.fileno(), fam.on_readable)
        return fam

    # --- option sockets: one per (family, option set), opened on first use ---------------

    def _option_socket(self, ip: str, family: int, options: IcmpOptions) -> _FamilySocket:
        """The socket for ``options``; raises _Unusable (the cycle fails with send_error) when there is none."""
        if options.source is not None and (":" in options.source) != (family == socket.AF_INET6):
            raise _Unusable(f"source {options.source} and address {ip} are of different IP versions")
        key = (family, options)
        fam = self._options.get(key)
        if fam is None:
            if len(self._options) >= MAX_OPTION_SOCKETS:
                self._close_idle_option_sockets()
            if len(self._options) >= MAX_OPTION_SOCKETS:
                raise _Unusable(f"more than {MAX_OPTION_SOCKETS} distinct ICMP option sets in use")
            fam = self._options[key] = self._open_options(family, options)
        fam.last_used = self._loop.time()
        return fam

    def _open_options(self, family: int, options: IcmpOptions) -> _FamilySocket:
        shared = self._family(family)  # same kind (raw or datagram) as the shared socket
        proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
        try:
            sock = self._socket_factory(family, socket.SOCK_RAW if shared.raw else socket.SOCK_DGRAM, proto)
        except OSError as exc:
            raise _Unusable(f"cannot open an ICMP socket: {exc.strerror or exc}") from exc
        try:
            _apply_options(sock, family, options)
            ident = None
            while shared.raw and (ident is None or ident in self.raw_idents):
                ident = int.from_bytes(os.urandom(2), "big")
            fam = self._setup(family, sock, shared.raw, ident, options)
        except BaseException:
            sock.close()
            raise
        if fam.raw:
            self.raw_idents.add(fam.ident)
        return fam

    def _close_idle_option_sockets(self) -> None:
        now, busy = self._loop.time(), {cycle.fam for cycle in self._cycles}
        for key, fam in list(self._options.items()):
            if fam not in busy and now - fam.last_used > OPTION_SOCKET_IDLE:
                del self._options[key]
                self._close_socket(fam)

    def _close_socket(self, fam: _FamilySocket) -> None:
        if self._loop is not None:
            self._loop.remove_reader(fam.sock.fileno())
        fam.sock.close()
        if fam.raw and fam is not self._families.get(fam.family):
            self.raw_idents.discard(fam.ident)

    def open(self, family: int) -> None:
        """Open the socket for ``family`` now, so permission problems show at start-up."""
        self._family(family)

    def begin(self, ip: str, family: int, count: int, spacing: float, timeout: float,
              on_done: Callable[[EchoStats], None], options: IcmpOptions | None = None) -> _Cycle | _Failed:
        """Start a cycle without a coroutine; ``on_done(stats)`` is called once, from the loop, at its end.

        The returned cycle can be ``cancel()``ed, after which ``on_done`` is never called. With
        ``options`` it runs on that option set's socket; when that socket cannot be had (a source
        that is not local, ...) the cycle fails with send_error and the reason in its detail.
        """
        if options is None:
            fam = self._family(family)
        else:
            try:
                fam = self._option_socket(ip, family, options)
            except (_Unusable, OSError) as exc:
                detail = str(exc) if isinstance(exc, _Unusable) else _option_problem(exc, options)
                return _Failed(on_done, EchoStats(sent=0, rtts=[], errors=[REASON_SEND], detail=detail))
        cycle = _Cycle(fam, ip, count, spacing, timeout, on_done)
        # Planned from the tick this cycle started in, so cycles started in one tick send their
        # later echoes in one tick too (when the spacing is a multiple of it, as 200 ms is).
        cycle.start = grid_floor(self._loop.time(), self._ticker.tick)
        self._cycles.add(cycle)
        cycle.send()
        return cycle

    async def ping(self, ip: str, family: int, count: int, spacing: float, timeout: float,
                   options: IcmpOptions | None = None) -> EchoStats:
        """Send ``count`` echoes ``spacing`` seconds apart; wait up to ``timeout`` for each reply."""
        future: asyncio.Future[EchoStats] = asyncio.get_running_loop().create_future()

        def done(stats: EchoStats) -> None:
            if not future.done():  # the awaiting task may have been cancelled meanwhile
                future.set_result(stats)

        cycle = self.begin(ip, family, count, spacing, timeout, done, options)
        try:
            return await future
        finally:
            cycle.cancel()  # no-op when it finished

    async def close(self) -> None:
        for cycle in list(self._cycles):
            cycle.cancel()  # their timers find them done and do nothing
        for fam in (*self._options.values(), *self._families.values()):
            self._close_socket(fam)
        self._options.clear()
        self._families.clear()


class _Unusable(Exception):
    """An option set that cannot be sent with here; the message becomes the failed cycle's detail."""


class _Failed:
    """A cycle that failed before sending: reports from the loop, like a cycle, unless cancelled first."""

    __slots__ = ("handle",)

    def __init__(self, on_done: Callable[[EchoStats], None], stats: EchoStats) -> None:
        self.handle = asyncio.get_running_loop().call_soon(on_done, stats)

    def cancel(self) -> None:
        self.handle.cancel()


def _apply_options(sock: socket.socket, family: int, options: IcmpOptions) -> None:
    """Set ``options`` on a fresh ICMP socket (raw or datagram: both honour these per socket)."""
    v4 = family == socket.AF_INET
    level = socket.IPPROTO_IP if v4 else socket.IPPROTO_IPV6
    if options.ttl is not None:
        sock.setsockopt(level, socket.IP_TTL if v4 else socket.IPV6_UNICAST_HOPS, options.ttl)
    if options.dscp is not None:  # DSCP is the upper six bits; the ECN bits stay 0
        sock.setsockopt(level, socket.IP_TOS if v4 else socket.IPV6_TCLASS, options.dscp << 2)
    if options.dont_fragment is not None:
        if v4:
            sock.setsockopt(level, IP_MTU_DISCOVER, IP_PMTUDISC_DO if options.dont_fragment else IP_PMTUDISC_DONT)
        else:  # IPv6 routers never fragment; this only stops the sender from doing so
            sock.setsockopt(level, IPV6_DONTFRAG, int(options.dont_fragment))
    if options.source is not None:
        sock.bind((options.source, 0) if v4 else (options.source, 0, 0, 0))


def _option_problem(exc: OSError, options: IcmpOptions) -> str:
    text = (exc.strerror or str(exc)).lower()
    if options.source is not None and exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
        return f"cannot send from source {options.source}: {text} (not an address of this host?)"
    return f"cannot apply the ICMP options: {text}"
