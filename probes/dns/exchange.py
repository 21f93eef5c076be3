"""One DNS query on the wire: UDP on a connected socket, TCP with its length prefix, and reply filtering.

A reply counts only if dnspython parses it and it answers our query (same id,
QR set, same opcode and question). Anything else is ignored and the wait goes
on, so a spoofed or stale datagram cannot end the cycle; the caller's deadline
ends it, and ``Exchange.ignored`` then tells ``malformed`` from ``timeout``.

Each UDP query gets its own connected socket: the kernel then drops datagrams
from any other source and reports the server's ICMP port unreachable as
ECONNREFUSED on that socket, which is how a dead resolver is told from a slow one.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import dns.message

from probes.base import REASON_MALFORMED, REASON_REFUSED
from probes.service import Phases, ProbeFailure, close, connect_reason, open_stream

MAX_UDP = 65535


@dataclass(slots=True)
class Exchange:
    """The query of one cycle and what arrived that did not answer it."""

    query: dns.message.Message
    ignored: int = 0  # replies dropped: unparsable, or not an answer to this query
    last_problem: str = ""
    partial: int = 0  # bytes still owed by a TCP reply whose length prefix arrived

    @property
    def unusable(self) -> bool:
        """Something arrived, but nothing we could use: at the deadline that is ``malformed``, not ``timeout``."""
        return bool(self.ignored or self.partial)

    def accept(self, wire: bytes, *, udp: bool) -> dns.message.Message | None:
        """The reply in ``wire`` if it answers our query, else None (counted in ``ignored``).

        A truncated UDP reply may stop parsing half-way; its header and question
        still say whether it is ours, and the caller retries over TCP.
        """
        try:
            reply = dns.message.from_wire(wire, raise_on_truncation=udp)
        except dns.message.Truncated as exc:
            reply = exc.message()
        except Exception as exc:  # noqa: BLE001 - dozens of rdata decoders; hostile bytes must not crash a cycle
            return self._ignore(f"unparsable reply ({type(exc).__name__})")
        try:
            ours = self.query.is_response(reply)
        except Exception as exc:  # noqa: BLE001 - same boundary: a reply is data, never an exception
            return self._ignore(f"unreadable reply ({type(exc).__name__})")
        if not ours:
            return self._ignore("reply to another query (id, flags or question differ)")
        return reply

    def _ignore(self, problem: str) -> None:
        self.ignored += 1
        self.last_problem = problem
        return None


async def udp(ex: Exchange, family: int, ip: str, port: int, wire: bytes) -> dns.message.Message:
    """Send once and wait for our reply; the caller's deadline bounds the wait."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((ip, port))
        sock.send(wire)
        while True:
            reply = ex.accept(await loop.sock_recv(sock, MAX_UDP), udp=True)
            if reply is not None:
                return reply
    except ConnectionRefusedError:
        raise ProbeFailure(REASON_REFUSED, f"{ip} port {port}/udp unreachable (ICMP)") from None
    except OSError as exc:
        raise ProbeFailure(connect_reason(exc), f"udp: {exc.strerror or exc}") from None
    finally:
        sock.close()


async def tcp(ex: Exchange, ip: str, port: int, wire: bytes, phases: Phases) -> dns.message.Message:
    """Connect (phase "connect"), send the length-prefixed query and read framed replies until ours."""
    reader, writer, _ = await open_stream(ip, port, phases)
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)
        while True:
            size = int.from_bytes(await reader.readexactly(2), "big")
            # readexactly waits for all ``size`` bytes (at most 64 KiB): a server that announces
            # more than it sends is held only until the cycle's deadline.
            ex.partial = size
            body = await reader.readexactly(size)
            ex.partial = 0
            reply = ex.accept(body, udp=False)
            if reply is not None:
                return reply
    except asyncio.IncompleteReadError as exc:
        if exc.partial or ex.unusable:
            raise ProbeFailure(REASON_MALFORMED, "tcp: connection closed inside a reply") from None
        raise ProbeFailure(REASON_REFUSED, "tcp: connection closed without a reply") from None
    except ConnectionResetError:
        raise ProbeFailure(REASON_REFUSED, "tcp: connection reset") from None
    except OSError as exc:
        raise ProbeFailure(connect_reason(exc), f"tcp: {exc.strerror or exc}") from None
    finally:
        close(writer)
