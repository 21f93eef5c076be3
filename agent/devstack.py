"""Prometheus, Alertmanager and a webhook receiver on loopback: the local stack and the tests' stack.

``scripts/stack`` runs them for a person to look at; the integration tests
(tests/test_e2e_alerting.py, tests/test_report*.py) run the same classes, so
what the stack shows is what the tests prove. Nothing here is used by
``lifeline run``.

Each component runs the Debian package's binary (``prometheus``,
``prometheus-alertmanager``) from a temporary directory on a 127.0.0.1 port
and is stopped by its owner. The configs are the shipped ones
(rules/lifeline.rules.yml, deploy/alertmanager.yml, read from the source tree)
with only what a local run must change: receivers' webhooks point at our
receiver, e-mail is dropped (no SMTP here), and optional shorter
scrape/evaluation intervals.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
# The source tree: rules/ and deploy/ are not in the installed package.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "rules", "lifeline.rules.yml")
ALERTMANAGER_CONFIG = os.path.join(ROOT, "deploy", "alertmanager.yml")
HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A component is missing, did not start or did not answer."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1, *,
             error: type[Exception] = StackError, fatal: tuple[type[Exception], ...] = (StackError,)) -> T:
    """Poll ``check`` until it returns something truthy; ``error`` naming ``what`` after ``timeout`` s.

    Exceptions from ``check`` count as "not yet" (the last one is reported), except ``fatal`` ones,
    which end the wait at once. The tests use it with AssertionError and nothing fatal.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:  # checked at least once: a deadline already past (a scenario's late phase) still looks
        try:
            value = check()
            if value:
                return value
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last problem
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise error(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def require_tool(tool: str, package: str) -> str:
    """Path of ``tool``, or StackError with the install hint."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        raise StackError(f"{tool} not found: apt-get install -y {package}")
    return path


def unwind(steps: list[Callable[[], object]], report: Callable[[BaseException], None] | None = None) -> None:
    """Run the clean-up ``steps`` last first, every one even when one fails: a failed stop must
    not leave the namespaces and processes after it behind. Each failure goes to ``report``;
    without one, the first is raised once every step has run."""
    failed: list[BaseException] = []
    for step in reversed(steps):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - keep stopping the rest
            failed.append(exc)
            if report is not None:
                report(exc)
    if failed and report is None:
        raise failed[0]


def _write_yaml(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """Terminate ``proc`` and wait; kill it if it has not gone within ``timeout`` seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- webhook receiver

@dataclass
class Notification:
    received: float  # time.monotonic()
    receiver: str  # from the URL path, which names the Alertmanager receiver
    payload: dict[str, Any]

    @property
    def status(self) -> str:
        return self.payload.get("status", "")

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.payload.get("alerts", [])
                if all(a.get("labels", {}).get(k) == v for k, v in labels.items())]


@dataclass
class WebhookReceiver:
    """Records every Alertmanager webhook POST; ``url(name)`` is the address for receiver ``name``."""

    on_notification: Callable[[Notification], None] | None = None
    notifications: list[Notification] = field(default_factory=list)

    port: int = 0  # 0: any free port

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                note = Notification(time.monotonic(), self.path.strip("/"), json.loads(body or b"{}"))
                with receiver._lock:
                    receiver.notifications.append(note)
                if receiver.on_notification:
                    receiver.on_notification(note)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    def url(self, receiver: str) -> str:
        return f"http://{HOST}:{self.port}/{receiver}"

    def matching(self, receiver: str | None = None, status: str | None = None, **labels: str) -> list[Notification]:
        with self._lock:
            notes = list(self.notifications)
        return [n for n in notes if (receiver is None or n.receiver == receiver)
                and (status is None or n.status == status) and n.alerts(**labels)]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---------------------------------------------------------------- processes

class _Process:
    name = "process"

    def __init__(self, workdir: str, port: int | None = None) -> None:
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = os.path.join(workdir, f"{self.name}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self, args: list[str]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        try:
            wait_for(self._ready, 30, f"{self.name} on {self.url} (log {self.log_path})", interval=0.1)
        except BaseException:
            self.stop()  # never leave a half-started component behind
            raise

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        return get(f"{self.url}/-/ready", timeout=1)[0] == 200

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def alertmanager_config(webhook: WebhookReceiver, source: str = ALERTMANAGER_CONFIG) -> dict[str, Any]:
    """The shipped config with every receiver's webhooks pointed at ``webhook``, other configs (e-mail,
    WeCom) removed, and its message templates loaded from the source tree."""
    with open(source, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    config["global"] = {k: v for k, v in config.get("global", {}).items() if not k.startswith("smtp_")}
    # Template globs are relative to the config file, which is rewritten elsewhere: anchor them to the source.
    base = os.path.dirname(os.path.abspath(source))
    config["templates"] = [os.path.join(base, t) for t in config.get("templates", [])]
    for receiver in config["receivers"]:
        name = receiver["name"]
        hooks = receiver.get("webhook_configs") or [{}]
        receiver.clear()
        receiver["name"] = name
        receiver["webhook_configs"] = [{**hooks[0], "url": webhook.url(name), "send_resolved": True}]
    return config


class Alertmanager(_Process):
    name = "alertmanager"

    def __init__(self, workdir: str, config: dict[str, Any], port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.exe = require_tool("prometheus-alertmanager", "prometheus-alertmanager")
        self.config_path = os.path.join(workdir, "alertmanager.yml")
        _write_yaml(self.config_path, config)

    def start(self) -> Alertmanager:
        # An empty cluster address turns gossip off: no listener beyond our loopback port.
        self._start([self.exe, f"--config.file={self.config_path}", f"--storage.path={self.dir}/data",
                     f"--web.listen-address={HOST}:{self.port}", "--cluster.listen-address=",
                     "--log.level=info"])
        return self


def rules_with_interval(interval: str | None, source: str = RULES) -> dict[str, Any]:
    """The shipped rules; with ``interval``, every group evaluated that often (tests need minutes, not hours)."""
    with open(source, encoding="utf-8") as fh:
        rules = yaml.safe_load(fh)
    if interval:
        for group in rules["groups"]:
            group["interval"] = interval
    return rules


class Prometheus(_Process):
    name = "prometheus"

    def __init__(self, workdir: str, agent_targets: list[str], alertmanager_url: str | None, *,
                 scrape_interval: str = "5s", evaluation_interval: str = "5s",
                 rule_interval: str | None = None, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self.exe = require_tool("prometheus", "prometheus")
        rules_path = os.path.join(workdir, "lifeline.rules.yml")
        _write_yaml(rules_path, rules_with_interval(rule_interval))
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
            "rule_files": [rules_path],
            "scrape_configs": [{
                "job_name": "lifeline",  # the rules' agent alerts select this job
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "static_configs": [{"targets": agent_targets}],
            }],
        }
        if alertmanager_url:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{
                "targets": [urllib.parse.urlparse(alertmanager_url).netloc]}]}]}
        self.config_path = os.path.join(workdir, "prometheus.yml")
        _write_yaml(self.config_path, config)

    def start(self) -> Prometheus:
        self._start([self.exe, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.dir}/data",
                     f"--web.listen-address={HOST}:{self.port}", "--storage.tsdb.retention.time=1d",
                     "--log.level=info"])
        return self

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (or raises with Prometheus's error)."""
        status, body = get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
        data = json.loads(body)
        if status != 200 or data.get("status") != "success":
            raise StackError(f"query {expr!r} failed: {data.get('error', body[:200])}")
        result = data["data"]["result"]
        return result if data["data"]["resultType"] == "vector" else [{"value": result}]

    def targets_up(self) -> bool:
        return bool(self.query('up{job="lifeline"} == 1'))


@dataclass
class AlertingStack:
    """What stands between an agent and the pager: Prometheus with the shipped rules scraping the
    agent(s), Alertmanager with the shipped routing, and a webhook receiver in place of the pager."""

    hook: WebhookReceiver
    alertmanager: Alertmanager
    prometheus: Prometheus

    @classmethod
    def start(cls, workdir: str, agent_targets: list[str], *, interval: str = "5s",
              rule_interval: str | None = None) -> AlertingStack:
        """Scrape and evaluate every ``interval``; ``rule_interval`` overrides the rule groups' own."""
        hook = WebhookReceiver()
        started: list[Any] = [hook]
        try:
            am = Alertmanager(os.path.join(workdir, "alertmanager"), alertmanager_config(hook)).start()
            started.append(am)
            prom = Prometheus(os.path.join(workdir, "prometheus"), agent_targets, am.url, scrape_interval=interval,
                              evaluation_interval=interval, rule_interval=rule_interval).start()
        except BaseException:
            unwind([thing.stop for thing in started], report=lambda exc: None)  # the start's error is the news
            raise
        return cls(hook, am, prom)

    def stop(self) -> None:
        self.prometheus.stop()
        self.alertmanager.stop()
        self.hook.stop()


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def clean(workdir: str) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
