"""Small helpers shared by tests: waiting on conditions, scraping, running the agent."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from agent import devstack
from agent.devstack import stop_process

T = TypeVar("T")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    return devstack.wait_for(check, timeout, what, interval, error=AssertionError, fatal=())


def free_port(family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(family, kind) as s:
        s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse an exposition into {(name, labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def series(text: str, name: str) -> dict[str, float]:
    """{label text: value} of every sample of ``name``; a fast scan for big expositions."""
    prefix = name + "{"
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, _, val = line[len(prefix):].rpartition("} ")
            out[labels] = float(val)
    return out


def value(text_or_samples: Any, name: str, **labels: str) -> float | None:
    """The value of the one sample named ``name`` whose labels include ``labels``, or None."""
    data = samples(text_or_samples) if isinstance(text_or_samples, str) else text_or_samples
    found = [v for (n, ls), v in data.items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None


def require_tool(tool: str, package: str) -> str:
    """Path of ``tool``; fail loudly (not skip) with the install hint when it is missing."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        raise AssertionError(f"{tool} not found: apt-get install -y {package} (or run `make test`)")
    return path


@contextlib.contextmanager
def ping_namespace(prefix: str) -> Iterator[list[str]]:
    """A fresh network namespace with loopback up and unprivileged ICMP allowed; yields the exec prefix.

    ping_group_range is per namespace, so the host's own setting is never touched.
    """
    ns = f"{prefix}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        nsexec = ["ip", "netns", "exec", ns]
        subprocess.run([*nsexec, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*nsexec, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"], check=True)
        yield nsexec
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def cyclic_garbage(main: Callable[[], Any], type_names: tuple[str, ...]) -> list[str]:
    """Run ``asyncio.run(main())`` and list objects of ``type_names`` that only the cyclic GC could free.

    At 10k targets such garbage meant 250-400 ms gen-2 collector pauses, so hot-path objects
    must be freed by reference counting alone.
    """
    import asyncio
    import gc

    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        asyncio.run(main())
        gc.collect()
        return [type(o).__name__ for o in gc.garbage if type(o).__name__ in type_names]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def require_root() -> None:
    if os.geteuid() != 0:
        raise AssertionError("this test needs root (raw ICMP sockets, network namespaces); run `make test` as root")


class AgentProcess:
    """``lifeline run`` as a real subprocess on a free loopback port."""

    def __init__(self, config_path: str, extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 ready_check: Callable[[AgentProcess], bool] | None = None, wrapper: list[str] | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        """``wrapper`` runs it inside something (``ip netns exec NS``); then give the ``host`` it listens on
        there, reachable from here, and any ``port`` (the namespace has its own)."""
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.log_path = config_path + f".{self.port}.log"
        self._log = open(self.log_path, "wb")
        self._ready_check = ready_check
        self.proc = subprocess.Popen(
            [*(wrapper or []), sys.executable, "-m", "agent.cli", "run", "--config.file", config_path,
             "--web.listen-address", f"{host}:{self.port}", "--log.format", "json", *(extra_args or [])],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})},
        )
        try:
            wait_for(self._ready, 20, f"agent on port {self.port} to become ready (log: {self.log_path})")
        except BaseException:
            self.stop()  # never leave an agent running behind a failed test
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited with {self.proc.returncode}: {self.log()}")
        if self._ready_check is not None:
            return self._ready_check(self)
        return http_get(self.url + "/-/ready", timeout=1)[0] == 200

    def metrics(self) -> str:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, status
        return body.decode()

    def log(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")

    def reload_signal(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 10) -> int:
        stop_process(self.proc, timeout)
        self._log.close()
        return self.proc.returncode
