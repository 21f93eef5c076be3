"""Small services the demo runs on loopback, so its service probes have something real to check.

An HTTP endpoint (``/health`` answers 200 "ok", anything else 503) and a SIP
UDP responder that answers OPTIONS with 200, or 503 when the To user is
``maintenance`` (a hotline whose SIP server is "down" while its line answers
pings). Both listen on 127.0.0.1 only, on ports the operating system picks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

_SIP_ECHOED = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
        ok = path == b"/health"
        body = b"ok\n" if ok else b"unavailable\n"
        status = b"200 OK" if ok else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (status, len(body), body))
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        pass
    finally:
        writer.close()


class _SipResponder(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if not head or not head[0].startswith(b"OPTIONS "):
            return
        echoed = [line for line in head[1:] if line.split(b":", 1)[0].strip().lower() in _SIP_ECHOED]
        status = b"503 Service Unavailable" if b"sip:maintenance@" in head[0] else b"200 OK"
        reply = b"\r\n".join([b"SIP/2.0 " + status, *echoed, b"Server: lifeline-demo", b"Content-Length: 0", b"", b""])
        self.transport.sendto(reply, addr)  # type: ignore[attr-defined]


@dataclass
class DemoServers:
    http_port: int = 0
    sip_port: int = 0
    _closers: tuple = ()

    async def start(self) -> DemoServers:
        loop = asyncio.get_running_loop()
        http = await asyncio.start_server(_http, "127.0.0.1", 0)
        self.http_port = http.sockets[0].getsockname()[1]
        sip, _ = await loop.create_datagram_endpoint(_SipResponder, local_addr=("127.0.0.1", 0))
        self.sip_port = sip.get_extra_info("sockname")[1]
        self._closers = (http.close, sip.close)
        return self

    def close(self) -> None:
        for close in self._closers:
            close()
