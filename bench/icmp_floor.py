#!/usr/bin/env python3
"""The Python floor for Lifeline's echo pattern: a bare asyncio pinger, for bench_icmp.py.

It does the per-echo work every Python pinger must do and nothing else: one raw
ICMP socket, a 5 ms tick that sends the echoes due (N targets, PACKETS echoes
SPACING apart every INTERVAL, spread evenly, as Lifeline schedules them), one
``recvmsg`` per reply with the kernel's receive timestamp (SO_TIMESTAMPNS), the
reply matched on (source, sequence) in a dict, its RTT summed. No per-cycle
objects, timeouts (a once-a-second sweep drops what is older than TIMEOUT), no
metrics, no scrapes. Its CPU per echo, beside fping's burst mode in the same
run, says how much of Lifeline's distance to that floor is the language and
the event loop rather than Lifeline's own bookkeeping.

Prints one JSON line: echoes sent and answered in the window and the process's
CPU seconds over it (getrusage). Loopback addresses only: refuses anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import socket
import struct
import sys
import time

import ping3

TICK = 0.005
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_HEADER = struct.Struct(ping3.ICMP_HEADER_FORMAT)
_TIMESPEC = struct.Struct("@qq")
_ANC = socket.CMSG_SPACE(_TIMESPEC.size)
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class Floor:
    def __init__(self, addrs: list[str], interval: float, packets: int, spacing: float, timeout: float) -> None:
        self.addrs = addrs
        self.interval, self.packets, self.spacing, self.timeout = interval, packets, spacing, timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.ident = os.getpid() & 0xFFFF
        self.payload = bytes(range(56))
        # Checksum with sequence 0 (ping3's RFC 1071 helper, as Lifeline's engine uses); per packet it
        # is updated incrementally (RFC 1624), as the engine does.
        template = _HEADER.pack(8, 0, 0, self.ident, 0) + self.payload
        self.base = (~socket.htons(ping3.checksum(template))) & 0xFFFF
        self.seq = 0
        self.pending: dict[tuple[str, int], int] = {}
        self.sent = self.received = 0
        self.rtt_sum = 0
        slots = round(interval / TICK)
        # starts[s]: the targets whose cycle begins in slot s of the interval, spread evenly.
        self.starts: list[list[str]] = [[] for _ in range(slots)]
        for i, addr in enumerate(addrs):
            self.starts[i * slots // len(addrs)].append(addr)
        self.step = round(spacing / TICK)  # slots between two echoes of a cycle

    def send(self, addr: str) -> None:
        seq = self.seq = (self.seq + 1) & 0xFFFF
        total = self.base + seq
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        csum = ~total & 0xFFFF
        packet = _HEADER.pack(8, 0, csum, self.ident, seq) + self.payload
        self.pending[(addr, seq)] = time.time_ns()
        self.sock.sendto(packet, (addr, 0))
        self.sent += 1

    def on_readable(self) -> None:
        sock, pending, ident = self.sock, self.pending, self.ident
        unpack = _HEADER.unpack_from
        for _ in range(1024):
            try:
                data, anc, _flags, addr = sock.recvmsg(2048, _ANC)
            except BlockingIOError:
                return
            off = (data[0] & 0x0F) * 4
            kind, _code, _csum, rid, seq = unpack(data, off)
            if kind != 0 or rid != ident:
                continue
            sent = pending.pop((addr[0], seq), None)
            if sent is None:
                continue
            sec, nsec = _TIMESPEC.unpack_from(anc[0][2]) if anc else (0, 0)
            self.rtt_sum += sec * 1_000_000_000 + nsec - sent
            self.received += 1

    def tick(self, slot: int) -> None:
        slots = len(self.starts)
        for k in range(self.packets):
            for addr in self.starts[(slot - k * self.step) % slots]:
                self.send(addr)

    def sweep(self) -> None:
        cutoff = time.time_ns() - int(self.timeout * 1e9)
        for key in [k for k, sent in self.pending.items() if sent < cutoff]:
            del self.pending[key]

    async def run(self, warmup: float, window: float) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self.on_readable)
        start = loop.time()
        slot = await self._ticks(start, 0, start + warmup)
        cpu0, sent0, received0, t0 = _cpu(), self.sent, self.received, loop.time()
        await self._ticks(start, slot, t0 + window)
        cpu1, t1 = _cpu(), loop.time()
        loop.remove_reader(self.sock.fileno())
        return {"sent": self.sent - sent0, "received": self.received - received0, "cpu": cpu1 - cpu0,
                "wall": t1 - t0, "rtt_mean": self.rtt_sum / max(self.received, 1) / 1e9}

    async def _ticks(self, start: float, slot: int, until: float) -> int:
        """Run the 5 ms ticks of the grid from ``start`` (the pending-echo sweep once a second) until
        ``until``; returns the next slot."""
        loop = asyncio.get_running_loop()
        while True:
            delay = start + slot * TICK - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.tick(slot)
            slot += 1
            if slot % round(1 / TICK) == 0:
                self.sweep()
            if loop.time() >= until:
                return slot


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", required=True, help="addresses, one per line (127.0.0.0/8 only)")
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--packets", type=int, default=3)
    p.add_argument("--packet-interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--warmup", type=float, default=None, help="seconds before the window (default: one interval)")
    p.add_argument("--window", type=float, default=20.0)
    args = p.parse_args(argv)
    with open(args.file, encoding="utf-8") as fh:
        addrs = [line.strip() for line in fh if line.strip()]
    if not addrs or any(ipaddress.ip_address(a) not in LOOPBACK for a in addrs):
        print("icmp_floor: loopback (127.0.0.0/8) addresses only", file=sys.stderr)
        return 2
    floor = Floor(addrs, args.interval, args.packets, args.packet_interval, args.timeout)
    warmup = args.interval if args.warmup is None else args.warmup
    print(json.dumps(asyncio.run(floor.run(warmup, args.window))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
