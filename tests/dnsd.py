"""DNS servers for the dns kind's tests: a real unbound serving static data, and scripted fakes.

Everything listens on 127.0.0.1 only. unbound gets ``local-zone: "." refuse`` beside
its static zones, so no question can ever make it recurse to the internet.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rrset

from tests.helpers import free_port, require_tool, stop_process, wait_for

ZONE = "gov.example."
# 120 A records: ~2 KB of answer, more than the probe's 1232-byte EDNS payload, so unbound truncates.
BIG = [f'"big.{ZONE} 300 IN A 198.18.{i // 250}.{i % 250 + 1}"' for i in range(120)]
LOCAL_DATA = [
    f'"portal.{ZONE} 300 IN A 192.0.2.10"',
    f'"mail.{ZONE} 300 IN MX 10 portal.{ZONE}"',
    f'"www.{ZONE} 300 IN CNAME portal.{ZONE}"',
    *BIG,
]


class Unbound:
    """unbound on 127.0.0.1:<port>, foreground, its config and pidfile in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.port = free_port(socket.AF_INET, socket.SOCK_DGRAM)
        self.proc: subprocess.Popen | None = None
        self.conf = os.path.join(directory, "unbound.conf")
        data = "\n".join(f"  local-data: {rr}" for rr in LOCAL_DATA)
        with open(self.conf, "w") as fh:
            fh.write(f"""server:
  interface: 127.0.0.1@{self.port}
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "." refuse
  local-zone: "{ZONE}" static
{data}
remote-control:
  control-enable: no
""")

    def start(self) -> Unbound:
        binary = require_tool("unbound", "unbound")
        self.log = open(os.path.join(self.directory, "unbound.log"), "wb")
        self.proc = subprocess.Popen([binary, "-d", "-c", self.conf], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._answers, 10, f"unbound on 127.0.0.1:{self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"unbound exited with {self.proc.returncode}: "
                                 + open(self.log.name, errors="replace").read())
        reply = dns.query.udp(dns.message.make_query(f"portal.{ZONE}", "A"), "127.0.0.1", timeout=0.5,
                              port=self.port)
        return reply.rcode() == dns.rcode.NOERROR and len(reply.answer) == 1

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


# A fake's behaviour: the query's wire in, what to send back out.
#   UDP: a list of datagrams (none: stay silent).
#   TCP: raw bytes to write, length prefixes included (so framing can lie), and whether to
#        keep the connection open afterwards instead of closing it.
UdpScript = Callable[[bytes], list[bytes]]
TcpScript = Callable[[bytes], tuple[bytes, bool]]


class FakeDns:
    """A scripted DNS server on one loopback port, UDP and TCP, each in its own thread."""

    def __init__(self, udp: UdpScript | None = None, tcp: TcpScript | None = None) -> None:
        self.udp_script, self.tcp_script = udp, tcp
        self.stopping = threading.Event()
        self.queries: list[bytes] = []
        # One port number for both: the UDP one the kernel picked may be taken for TCP by some
        # other connection on this busy machine, so try a few.
        for attempt in range(20):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
                if attempt == 19:
                    raise
        self.tcp.listen(16)
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def _serve_udp(self) -> None:
        self.udp.settimeout(0.05)
        while not self.stopping.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries.append(data)
            for datagram in (self.udp_script(data) if self.udp_script else []):
                self.udp.sendto(datagram, peer)

    def _serve_tcp(self) -> None:
        self.tcp.settimeout(0.05)
        while not self.stopping.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._conversation, args=(conn,), daemon=True).start()

    def _conversation(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                head = _read(conn, 2)
                data = _read(conn, int.from_bytes(head, "big"))
                self.queries.append(data)
                if self.tcp_script is None:
                    return
                out, hold = self.tcp_script(data)
                conn.sendall(out)
                if hold:
                    self.stopping.wait(10)
            except OSError:
                return

    def close(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()


def _read(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


@contextmanager
def fake_dns(udp: UdpScript | None = None, tcp: TcpScript | None = None) -> Iterator[FakeDns]:
    server = FakeDns(udp, tcp)
    try:
        yield server
    finally:
        server.close()


def reply_to(wire: bytes, rcode: int = dns.rcode.NOERROR, answer: str | None = None,
             tc: bool = False) -> dns.message.Message:
    """A well-formed reply to the query in ``wire``; ``answer`` is one RR in text ("name ttl IN A ip")."""
    query = dns.message.from_wire(wire)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    if answer is not None:
        name, ttl, rdclass, rdtype, *rdata = answer.split()
        reply.answer.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, " ".join(rdata)))
    if tc:
        reply.flags |= dns.flags.TC
    return reply


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire
