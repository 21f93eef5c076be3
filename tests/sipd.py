"""Kamailio on loopback for the SIP tests: answers OPTIONS itself, never forwards anything.

The To user picks the answer, so one server covers every status case:
"busy" gets 503, "nobody" 404, anyone else 200.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

from tests.helpers import require_tool, stop_process, wait_for

MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
mpath="{modules}"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"

# Stateless and local only: every request is answered here, nothing is relayed.
request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (!is_method("OPTIONS")) {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    xlog("L_INFO", "OPTIONS from $si:$sp to-user '$tU'\\n");
    if ($tU == "busy") {{
        sl_send_reply("503", "Service Unavailable");
        exit;
    }}
    if ($tU == "nobody") {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    sl_send_reply("200", "OK");
    exit;
}}
"""


def free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP, as Kamailio listens on both."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise AssertionError("no loopback port free for both UDP and TCP")


def options(port: int, user: str = "", timeout: float = 0.5) -> bytes:
    """One plain OPTIONS over UDP, outside the code under test; the raw answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(timeout)
        local = s.getsockname()[1]
        uri = f"sip:{user + '@' if user else ''}127.0.0.1:{port}"
        s.send((f"OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};rport;branch=z9hG4bKready\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:test@127.0.0.1>;tag=1\r\nTo: <{uri}>\r\nCall-ID: ready-{local}\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode())
        return s.recv(65535)


class Kamailio:
    """``kamailio -DD -E`` in the foreground on 127.0.0.1:``port`` (UDP and TCP), from its own files."""

    def __init__(self, workdir: str, port: int | None = None) -> None:
        self.binary = require_tool("kamailio", "kamailio")
        self.workdir = workdir
        self.port = port or free_udp_tcp_port()
        self.config = os.path.join(workdir, "kamailio.cfg")
        self.log_path = os.path.join(workdir, "kamailio.log")
        self.rundir = os.path.join(workdir, "run")
        os.makedirs(self.rundir, exist_ok=True)
        with open(self.config, "w") as fh:
            fh.write(CONFIG.format(port=self.port, modules=MODULES))
        check = subprocess.run([self.binary, "-c", "-f", self.config], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"kamailio.cfg does not check:\n{check.stdout}{check.stderr}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-DD", "-E", "-f", self.config, "-P", os.path.join(self.rundir, "kamailio.pid"),
             "-Y", self.rundir, "-w", self.workdir], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_for(self._answers, 15, f"kamailio on 127.0.0.1:{self.port} to answer OPTIONS (log: {self.log_path})")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"kamailio exited with {self.proc.returncode}: {self.log()[-2000:]}")
        try:
            return options(self.port).startswith(b"SIP/2.0 200 ")
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        # Its children close their sockets a moment after the main process: wait until the port is free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", self.port))
                return
            except OSError:
                time.sleep(0.05)

    def log(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")
