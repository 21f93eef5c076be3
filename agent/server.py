"""HTTP endpoints: /metrics, /-/healthy, /-/ready, /-/reload, the status page (/) and /status.json.

The server runs in its own threads (stdlib ``ThreadingHTTPServer``, as
prometheus_client's own exporter does), so rendering and slow clients never
block the probe loop. Concurrency is bounded: a scrape flood queues in the
listen backlog instead of spawning unbounded threads.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from agent.webconfig import WebConfig

log = structlog.get_logger("lifeline.server")

@dataclass
class Routes:
    """What the server needs from the agent; plain callables keep the server testable alone."""

    metrics: Callable[[bool], bytes]  # gzipped? -> body
    ready: Callable[[], bool]
    reload: Callable[[], tuple[bool, str]]
    version: str = ""
    status_json: Callable[[bool], bytes] = lambda problems_only: b"{}"
    status_page: Callable[[], bytes] = lambda: b""
    config: Callable[[], bytes] = lambda: b'{"status":"success","data":{"yaml":""}}'  # /api/v1/status/config


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may take to send its request (slow clients cannot pin threads)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http_request", client=self.client_address[0], request=format % args)

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in self.server.web.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.server.web.authorized(self.headers.get("Authorization")):
            return True
        self._send(401, b"Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="lifeline"'})
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if not self._authorized():
            return
        routes = self.server.routes
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            gz = "gzip" in self.headers.get("Accept-Encoding", "")
            body = routes.metrics(gz)
            self._send(200, body, "text/plain; version=0.0.4; charset=utf-8",
                       {"Content-Encoding": "gzip"} if gz else None)
        elif path == "/-/healthy":
            self._send(200, b"Healthy\n")
        elif path == "/-/ready":
            ok = routes.ready()
            self._send(200 if ok else 503, b"Ready\n" if ok else b"Not ready\n")
        elif path == "/":
            self._send(200, routes.status_page(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})
        elif path == "/status.json":
            problems_only = "only=problems" in self.path.partition("?")[2]
            self._send(200, routes.status_json(problems_only), "application/json", {"Cache-Control": "no-store"})
        elif path == "/api/v1/status/config":  # Prometheus's path; secrets redacted (agent/inventory/render.py)
            self._send(200, routes.config(), "application/json", {"Cache-Control": "no-store"})
        elif path == "/-/reload":
            self._send(405, b"Use POST to reload\n", headers={"Allow": "POST"})
        else:
            self._send(404, b"Not found\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        if path != "/-/reload":
            self._send(405 if path in ("/metrics", "/", "/status.json", "/-/healthy", "/-/ready") else 404,
                       b"Not allowed\n")
            return
        ok, message = self.server.routes.reload()
        self._send(200 if ok else 500, (message + "\n").encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], routes: Routes, max_threads: int, web: WebConfig) -> None:
        self.routes = routes
        self.web = web
        self._slots = threading.BoundedSemaphore(max_threads)
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()  # back-pressure: wait here rather than start thread number 1000
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.web.tls is not None:
                # Handshake here, in the connection's own thread, so a slow or broken
                # client cannot hold up accepting the next connection.
                request.settimeout(_Handler.timeout)
                try:
                    request = self.web.tls.wrap_socket(request, server_side=True)
                except (OSError, ValueError) as exc:
                    log.debug("tls_handshake_failed", client=client_address[0], error=str(exc))
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def parse_listen_address(value: str) -> tuple[str, int]:
    """'127.0.0.1:9123', '[::1]:9123' or ':9123' (all interfaces)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT (got {value!r})")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


class HttpServer:
    def __init__(self, listen: str, routes: Routes, max_threads: int = 32, web: WebConfig | None = None) -> None:
        self._server = _Server(parse_listen_address(listen), routes, max_threads, web or WebConfig())
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.server_address[:2]

    def start(self) -> None:
        self._thread.start()

    def set_web(self, web: WebConfig) -> None:
        self._server.web = web  # one attribute swap: a request sees the old or the new, never a mix

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
