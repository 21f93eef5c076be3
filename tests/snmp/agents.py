"""Real and fake SNMP agents on loopback for the SNMP tests, plus Net-SNMP client helpers.

Only 127.0.0.1 is ever addressed. Real agents (Net-SNMP ``snmpd``,
``snmpsim-command-responder``) run on free high ports with generated
configuration; ``FakeAgent`` is a scriptable responder built on our codec so a
test can make uptime go back, counters wrap, or replies turn hostile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from probes.snmp import codec
from tests.helpers import free_port, require_tool, stop_process, wait_for

HOST = "127.0.0.1"
ENV = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}  # numeric OIDs only, no MIB warnings
V2_COMMUNITY = "lifeline-test-ro"
V3_USER, V3_AUTH, V3_PRIV = "lifeuser", "auth-pass-123", "priv-pass-456"


# --- Net-SNMP command-line clients: the reference the probe is compared with -----------

def net_snmp(tool: str, port: int, args: list[str], community: str = V2_COMMUNITY,
             security: list[str] | None = None) -> dict[str, str]:
    """Run snmpget/snmpbulkwalk (-On numeric, -OQ no types, -Ot raw ticks); {oid: value text}."""
    exe = require_tool(tool, "snmp")
    security = security or ["-v2c", "-c", community]
    out = subprocess.run([exe, *security, "-On", "-OQ", "-Ot", "-Oe", "-t", "1", "-r", "1", f"{HOST}:{port}", *args],
                         capture_output=True, text=True, env=ENV, timeout=20)
    if out.returncode != 0:
        raise AssertionError(f"{tool} failed: {out.stderr.strip()}")
    values = {}
    for line in out.stdout.splitlines():
        oid, _, value = line.partition(" = ")
        values[oid.lstrip(".")] = value.strip().strip('"')
    return values


def net_snmp_v3(tool: str, port: int, args: list[str], user: str, auth: str | None, auth_key: str | None,
                priv: str | None = None, priv_key: str | None = None) -> dict[str, str]:
    """snmpget/snmpbulkwalk -v3 with our protocol names (SHA256, AES192 ...) in Net-SNMP's spelling."""
    level = "authPriv" if priv else "authNoPriv" if auth else "noAuthNoPriv"
    sec = ["-v3", "-l", level, "-u", user]
    if auth:
        sec += ["-a", _dashed(auth), "-A", auth_key or ""]
    if priv:
        sec += ["-x", _dashed(priv), "-X", priv_key or ""]
    return net_snmp(tool, port, args, security=sec)


def _dashed(protocol: str) -> str:
    """Our SHA256/AES192 as Net-SNMP's SHA-256/AES-192 (SHA, MD5, AES, DES unchanged)."""
    for prefix in ("SHA", "AES"):
        if protocol.startswith(prefix) and protocol[len(prefix):].isdigit() and protocol != "AES128":
            return f"{prefix}-{protocol[len(prefix):]}"
    return "AES" if protocol == "AES128" else protocol


def snmpget(port: int, *oids: str, community: str = V2_COMMUNITY) -> dict[str, str]:
    return net_snmp("snmpget", port, list(oids), community)


def snmpbulkwalk(port: int, oid: str, community: str = V2_COMMUNITY) -> dict[str, str]:
    return net_snmp("snmpbulkwalk", port, [oid], community)


def _answers(port: int, community: str) -> bool:
    try:
        return bool(snmpget(port, "1.3.6.1.2.1.1.3.0", community=community))
    except AssertionError:
        return False


# --- Net-SNMP snmpd -----------------------------------------------------------------------

class Snmpd:
    """snmpd on a loopback port with a v2c community and a v3 authPriv (SHA/AES) user."""

    def __init__(self, workdir: Path, extra: str = "", persistent: bool = False) -> None:
        """``extra``: more snmpd.conf lines (v3 users, an ``engineID``).

        ``persistent``: read back the state snmpd saves on exit (its engine id and boots, as a
        real agent does across restarts). With ``-C`` snmpd skips that file, so the config is
        found through SNMPCONFPATH (our directory and the persistent one, nothing else) instead.
        """
        self.persistent = persistent
        self.exe = require_tool("snmpd", "snmpd")
        self.dir = workdir
        self.port = free_port(kind=socket.SOCK_DGRAM)
        (workdir / "persist").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "snmpd.conf"
        self.write_conf(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_conf(self, extra: str = "") -> None:
        self.conf.write_text(
            f"agentAddress udp:{HOST}:{self.port}\n"
            f"rocommunity {V2_COMMUNITY} {HOST}\n"
            f'createUser {V3_USER} SHA "{V3_AUTH}" AES "{V3_PRIV}"\n'
            f"rouser {V3_USER} priv\n" + extra)

    def start(self) -> None:
        log = open(self.dir / "snmpd.log", "ab")
        # -C: only our config; -f: foreground so the test owns the process.
        persist = str(self.dir / "persist")
        env = {**ENV, "SNMP_PERSISTENT_DIR": persist}
        config = ["-C", "-c", str(self.conf)]
        if self.persistent:
            env["SNMPCONFPATH"], config = f"{self.dir}:{persist}", ["-I", "-smux"]
        self.proc = subprocess.Popen([self.exe, "-f", *config, "-Lf", str(self.dir / "snmpd.log"),
                                      "-p", str(self.dir / "snmpd.pid")], stdout=log, stderr=log, env=env)
        log.close()
        wait_for(self._ready, 15, f"snmpd on {HOST}:{self.port} (log {self.dir / 'snmpd.log'})")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"snmpd exited: {(self.dir / 'snmpd.log').read_text()}")
        return _answers(self.port, V2_COMMUNITY)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused agent cannot act on SIGTERM
        stop_process(self.proc)
        self.proc = None


# --- snmpsim ------------------------------------------------------------------------------

def snmprec_line(oid: str, tag: int, value: object) -> str:
    return f"{oid}|{tag}|{value}"


class Snmpsim:
    """snmpsim-command-responder serving ``<community>.snmprec`` files written by the test."""

    def __init__(self, workdir: Path, records: dict[str, list[tuple[str, int, object]]]) -> None:
        self.exe = os.path.join(os.path.dirname(sys.executable), "snmpsim-command-responder")
        if not os.path.exists(self.exe):
            raise AssertionError("snmpsim-command-responder not found: pip install snmpsim pysmi "
                                 "into the project's .venv (or run `make test`)")
        self.dir = workdir
        self.port = free_port(kind=socket.SOCK_DGRAM)
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (workdir / "cache").mkdir(exist_ok=True)
        for community, rows in records.items():
            ordered = sorted(rows, key=lambda r: tuple(int(a) for a in r[0].split(".")))
            (data / f"{community}.snmprec").write_text(
                "".join(snmprec_line(*r) + "\n" for r in ordered))
        self.community = next(iter(records))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.exe, f"--data-dir={self.dir / 'data'}", f"--cache-dir={self.dir / 'cache'}",
                f"--agent-udpv4-endpoint={HOST}:{self.port}", "--log-level=error",
                f"--logging-method=file:{self.dir / 'snmpsim.log'}"]
        if os.geteuid() == 0:
            # As root snmpsim 1.2 insists on dropping privileges, then still imports stdlib
            # modules; our Python lives under a root-only home, where as nobody it fails
            # with a misleading "no dbm clone found". So "drop" to root rather than nobody.
            args += ["--process-user=root", "--process-group=root"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.dir / "stderr", "wb"))
        wait_for(self._ready, 30, f"snmpsim on {HOST}:{self.port} (log {self.dir})")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"snmpsim exited: {(self.dir / 'stderr').read_text()}")
        return _answers(self.port, self.community)

    def stop(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A loopback UDP port that is bound but never read: requests to it time out.

    A free (unbound) port would not do: the kernel answers it with port unreachable,
    which the probe reports as ``refused`` at once.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]


# --- a scriptable fake agent ----------------------------------------------------------------

def _tlv(tag: int, body: bytes) -> bytes:
    return codec._tlv(tag, body)


def integer(n: int) -> bytes:
    return codec._int(n)


def unsigned(tag: int, n: int) -> bytes:
    return _tlv(tag, n.to_bytes((n.bit_length() + 8) // 8 or 1, "big"))


def counter32(n: int) -> bytes:
    return unsigned(0x41, n)


def gauge32(n: int) -> bytes:
    return unsigned(0x42, n)


def ticks(n: int) -> bytes:
    return unsigned(0x43, n)


def counter64(n: int) -> bytes:
    return unsigned(0x46, n)


def octets(text: str | bytes) -> bytes:
    return _tlv(0x04, text.encode() if isinstance(text, str) else text)


NO_SUCH_INSTANCE = b"\x81\x00"
NO_SUCH_OBJECT = b"\x80\x00"
END_OF_MIB = b"\x82\x00"


def oid(text: str) -> tuple[int, ...]:
    return tuple(int(a) for a in text.split("."))


@dataclass
class FakeAgent(asyncio.DatagramProtocol):
    """Answers GET/GETNEXT/GETBULK from ``mib`` ({oid tuple: encoded value}); ``mode`` turns it hostile.

    Modes: normal, silent, garbage (random bytes), truncated (a real reply cut short),
    wrong_id (a real reply with another request id).
    """

    mib: dict[tuple[int, ...], bytes] = field(default_factory=dict)
    community: bytes = b"fake"
    mode: str = "normal"
    requests: int = 0
    transport: asyncio.DatagramTransport | None = None
    port: int = 0

    async def start(self) -> FakeAgent:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(HOST, 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self.transport:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests += 1
        if self.mode == "silent":
            return
        if self.mode == "garbage":
            self.transport.sendto(os.urandom(40) + b"\x30\x84\xff\xff", addr)
            return
        req = codec.decode(data)
        if req.community != self.community:
            return  # like real agents: wrong community is silently dropped
        reply = self.reply(req)
        if self.mode == "truncated":
            reply = reply[: len(reply) // 2]
        elif self.mode == "wrong_id":
            reply = self.reply(req, request_id=req.request_id ^ 0x5A5A)
        self.transport.sendto(reply, addr)

    def reply(self, req: codec.Response, request_id: int | None = None) -> bytes:
        keys = sorted(self.mib)
        out: list[bytes] = []
        names = [codec.oid_arcs(o) for o, _ in req.varbinds]
        if req.pdu_type == codec.GET:
            for name in names:
                out.append(self._vb(name, self.mib.get(name, NO_SUCH_INSTANCE)))
        else:
            reps = max(1, req.error_index) if req.pdu_type == codec.GETBULK else 1
            cursors = list(names)
            for _ in range(reps):
                for i, cur in enumerate(cursors):
                    nxt = next((k for k in keys if k > cur), None)
                    out.append(self._vb(cur, END_OF_MIB) if nxt is None else self._vb(nxt, self.mib[nxt]))
                    cursors[i] = nxt or cur
        body = b"".join(out)
        rid = req.request_id if request_id is None else request_id
        pdu = _tlv(codec.RESPONSE, integer(rid) + integer(0) + integer(0) + _tlv(0x30, body))
        return _tlv(0x30, integer(req.version) + octets(req.community) + pdu)

    @staticmethod
    def _vb(name: tuple[int, ...], value: bytes) -> bytes:
        return _tlv(0x30, _tlv(0x06, codec.oid_content(name)) + value)
