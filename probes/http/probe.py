"""One http cycle: resolve, connect, TLS, request, head, body; then redirects, all under one deadline."""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse

from common.model import Target, Tier
from common.resolver import Resolver
from probes.base import REASON_BODY_MISMATCH, REASON_MALFORMED, REASON_STATUS, REASON_TIMEOUT, REASON_TLS, Probe
from probes.http import client
from probes.http.config import MAX_REDIRECTS, HttpSettings, Url, split_url
from probes.http.result import HttpResult
from probes.service import ProbeFailure, Phases, close, open_stream, resolve, timeout_of
from probes.textproto import MAX_HEAD, Head
from probes.tls import TlsClient, TlsOptions

REDIRECTS = (301, 302, 303, 307, 308)
PHASE_ORDER = ("resolve", "connect", "tls", "first_byte", "transfer")


class HttpProbe(Probe):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.tls = TlsClient()

    async def run(self, target: Target, tier: Tier, state: object) -> HttpResult:
        settings: HttpSettings = target.setting("http")
        phases = Phases.start()
        result = HttpResult(ok=False)
        try:
            async with asyncio.timeout(timeout_of(tier, settings)):
                await self._cycle(target, settings, phases, result)
        except TimeoutError:
            result.reason = REASON_TIMEOUT
        except ProbeFailure as exc:
            result.reason, result.detail = exc.reason, exc.detail
        result.duration = phases.total()
        result.phases = _summed(phases.done)
        return result

    async def _cycle(self, target: Target, settings: HttpSettings, phases: Phases, result: HttpResult) -> None:
        url = Url(settings.scheme, settings.host, settings.port, settings.target)
        method = settings.method
        ip = None  # of the configured host: the target's address, resolved once
        while True:
            if url.host.lower() == settings.host.lower():
                if ip is None:
                    _, ip = await resolve(self.resolver, target.address, phases, settings.family)
                hop_ip = ip
            else:
                _, hop_ip = await resolve(self.resolver, url.host, phases, settings.family)
            head = await self._exchange(hop_ip, url, method, settings, phases, result)
            location = head.get("location")
            if not (settings.follow_redirects and head.status in REDIRECTS and location):
                break
            if result.redirects >= MAX_REDIRECTS:
                raise ProbeFailure(REASON_STATUS, f"more than {MAX_REDIRECTS} redirects")
            result.redirects += 1
            url = _next_url(url, location)
            if head.status == 303 or (head.status in (301, 302) and method == "POST"):
                method = "GET"  # what every client does; 307 and 308 keep the method
        if not settings.status_ok(head.status):
            raise ProbeFailure(REASON_STATUS, f"status {head.status}")
        if settings.body_regex is not None:
            text = result.body.decode("utf-8", "replace")
            if not settings.body_regex.search(text):
                raise ProbeFailure(REASON_BODY_MISMATCH, f"body_regex not found in {len(result.body)} bytes")
        result.ok = True

    async def _exchange(self, ip: str, url: Url, method: str, settings: HttpSettings, phases: Phases,
                        result: HttpResult) -> Head:
        tls = None
        server_name = None
        if url.scheme == "https":
            options = settings.tls or TlsOptions()
            same_host = url.host.lower() == settings.host.lower()
            tls = self.tls.context(options)
            server_name = (options.server_name if same_host else None) or url.host
        writer = None
        try:
            reader, writer, info = await open_stream(ip, url.port, phases, tls=tls, server_name=server_name,
                                                     chains=self.tls.chains, limit=MAX_HEAD + 4)
            if info is not None:
                result.tls = info
            default_port = 443 if url.scheme == "https" else 80
            host = f"[{url.host}]" if ":" in url.host else url.host
            host_header = host if url.port == default_port else f"{host}:{url.port}"
            try:
                writer.write(client.request(method, host_header, url.target, settings.headers))
                await writer.drain()
                head = await client.read_response_head(reader)
                phases.end("first_byte")
                result.status = head.status
                keep = settings.body_regex is not None
                body = await client.read_body(reader, head, method, settings.body_limit, keep)
                phases.end("transfer")
            except ssl.SSLError as exc:
                raise ProbeFailure(REASON_TLS, f"inside the exchange: {exc}") from None
            except OSError as exc:  # reset or broken pipe: the server dropped us mid-exchange
                raise ProbeFailure(REASON_MALFORMED, f"connection lost: {exc!r}") from None
        finally:
            close(writer)
        result.body, result.body_bytes, result.content_length = body.data, body.length, body.declared
        return head


def _next_url(current: Url, location: str) -> Url:
    base = f"{current.scheme}://{'[%s]' % current.host if ':' in current.host else current.host}:{current.port}"
    try:
        url = split_url(urllib.parse.urljoin(base + current.target, location.strip()))
    except ValueError as exc:  # urljoin splits the Location itself: "http://[::1/" ends here
        url = f"not a valid URL: {exc}"
    if isinstance(url, str):
        raise ProbeFailure(REASON_MALFORMED, f"redirect to {location[:80]!r}: {url}")
    return url


def _summed(done: list[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """One figure per phase, redirects' hops added up (as blackbox_exporter does)."""
    total: dict[str, float] = {}
    for name, seconds in done:
        total[name] = total.get(name, 0.0) + seconds
    return tuple((name, total[name]) for name in PHASE_ORDER if name in total)
