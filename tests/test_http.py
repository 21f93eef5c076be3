"""The http kind against real nginx on loopback (plain and TLS chains) and hostile asyncio servers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import config as config_mod
from common.errors import ConfigInvalid
from common.resolver import Resolver
from probes.base import ProbeContext
from probes.http.client import chunk_size, read_body, read_response_head
from probes.http.config import Url
from probes.http.probe import _next_url
from probes.registry import KINDS
from probes.service import ProbeFailure
from tests.helpers import require_tool, value, wait_for
from tests.httpd import Nginx, Pki, free_port_on

ALL_KINDS = KINDS  # tcp and http are registered kinds
TIERS = "tiers:\n  P0: {interval: 10s, timeout: 2s, packets: 1}\n"


# --- the servers --------------------------------------------------------------------------

class Site:
    """nginx with a plain server (on 127.0.0.1 and 127.0.0.2) and one TLS server per chain."""

    def __init__(self, folder):
        pki = Pki(folder / "pki")
        self.root = pki.root("Test Root")
        inter = pki.intermediate("Test Intermediate", self.root)
        short = pki.intermediate("Short Intermediate", self.root, days=30)  # expires before its leaf
        other_root = pki.root("Other Root")
        self.root_file = str(self.root.cert_path)
        self.leaf = pki.leaf("portal leaf", inter, days=90)
        self.short_inter, self.short_leaf = short, pki.leaf("short leaf", short, days=200)
        expired = pki.leaf("expired leaf", inter, expired=True)
        stranger = pki.leaf("stranger leaf", other_root)
        chains = {"good": (pki.chain_file("good", self.leaf, inter), self.leaf),
                  "short": (pki.chain_file("short", self.short_leaf, short), self.short_leaf),
                  "expired": (pki.chain_file("expired", expired, inter), expired),
                  "stranger": (pki.chain_file("stranger", stranger), stranger)}
        self.port = free_port_on("127.0.0.1", "127.0.0.2")
        self.tls_ports = {name: free_port_on("127.0.0.1") for name in chains}
        p = self.port
        servers = [f"""
    server {{
        listen 127.0.0.1:{p}; listen 127.0.0.2:{p};
        location = /health {{ return 200 "ok\\n"; }}
        location = /missing {{ return 404; }}
        location = /redirect {{ return 302 /health; }}
        location = /away {{ return 302 http://127.0.0.2:{p}/health; }}
        location = /away-name {{ return 302 http://localhost:{p}/health; }}
        location = /loop {{ return 302 /loop; }}
        location = /to-https {{ return 301 https://portal.test:{self.tls_ports['good']}/health; }}
        location = /echo {{ return 200 "probe=$http_x_probe host=$http_host method=$request_method\\n"; }}
    }}"""]
        for name, (chain, leaf) in chains.items():
            servers.append(f"""
    server {{
        listen 127.0.0.1:{self.tls_ports[name]} ssl;
        ssl_certificate {chain}; ssl_certificate_key {leaf.key_path};
        location / {{ return 200 "ok\\n"; }}
    }}""")
        listens = [("127.0.0.1", p), ("127.0.0.2", p)] + [("127.0.0.1", q) for q in self.tls_ports.values()]
        self.nginx = Nginx(folder / "nginx", "".join(servers), listens)

    def url(self, path: str, host: str = "portal.test") -> str:
        return f"http://{host}:{self.port}{path}"

    def tls_url(self, name: str, path: str = "/health", host: str = "portal.test") -> str:
        return f"https://{host}:{self.tls_ports[name]}{path}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("site"))
    yield s
    s.nginx.stop()


# --- running the kind in-process -----------------------------------------------------------

_loads = iter(range(10**6))


def load(tmp_path, targets: list[dict]):
    """A Config of ``targets`` (dicts written as flow YAML, one per line) with tier P0."""
    path = tmp_path / f"http-{next(_loads)}.yaml"
    path.write_text(TIERS + "targets:\n" + "".join(f"  - {json.dumps(t)}\n" for t in targets))
    return config_mod.load(str(path), ALL_KINDS)


def http_target(name: str, block: dict, address: str = "127.0.0.1") -> dict:
    return {"name": name, "address": address, "tier": "P0", "probes": ["http"], "http": block}


async def run_all(cfg, kind: str = "http", resolver: Resolver | None = None):
    probe = ALL_KINDS[kind].open(ProbeContext(resolver or Resolver()))
    runs = [probe.run(t, cfg.tiers[t.tier], ALL_KINDS[kind].new_state(t)) for t in cfg.targets]
    return dict(zip((t.name for t in cfg.targets), await asyncio.gather(*runs)))


def probe_one(tmp_path, block: dict, address: str = "127.0.0.1"):
    return asyncio.run(run_all(load(tmp_path, [http_target("t", block, address)])))["t"]


# --- plain HTTP -------------------------------------------------------------------------------

def test_status_and_body_regex(site, tmp_path):
    results = asyncio.run(run_all(load(tmp_path, [
        http_target("ok", {"url": site.url("/health"), "body_regex": "^ok$"}),
        http_target("mismatch", {"url": site.url("/health"), "body_regex": "healthy"}),
        http_target("missing", {"url": site.url("/missing")}),
        http_target("missing-wanted", {"url": site.url("/missing"), "valid_status_codes": [404]}),
        http_target("head", {"url": site.url("/health"), "method": "HEAD"}),
    ])))
    ok = results["ok"]
    assert ok.ok and ok.reason is None and ok.status == 200, ok
    assert [name for name, _ in ok.phases] == ["resolve", "connect", "first_byte", "transfer"]
    assert ok.content_length == 3 and ok.body_bytes == 3 and ok.tls is None
    assert 0 < ok.duration < 1 and abs(sum(s for _, s in ok.phases) - ok.duration) < 0.01
    assert (results["mismatch"].ok, results["mismatch"].reason, results["mismatch"].status) == \
        (False, "body_mismatch", 200)
    assert (results["missing"].reason, results["missing"].status) == ("status", 404)
    assert results["missing-wanted"].ok
    assert results["head"].ok and results["head"].body_bytes == 0


def test_host_header_comes_from_the_url_and_headers_are_sent(site, tmp_path):
    r = probe_one(tmp_path, {"url": site.url("/echo"), "headers": {"X-Probe": "lifeline"},
                             "body_regex": rf"^probe=lifeline host=portal\.test:{site.port} method=GET$"})
    assert r.ok, r
    r = probe_one(tmp_path, {"url": site.url("/echo"), "method": "POST", "body_regex": "method=POST"})
    assert r.ok, r


def test_redirects_followed_by_default_capped_and_optional(site, tmp_path):
    results = asyncio.run(run_all(load(tmp_path, [
        http_target("follow", {"url": site.url("/redirect"), "body_regex": "ok"}),
        http_target("no-follow", {"url": site.url("/redirect"), "follow_redirects": False}),
        http_target("no-follow-302", {"url": site.url("/redirect"), "follow_redirects": False,
                                      "valid_status_codes": [302]}),
        http_target("other-host", {"url": site.url("/away"), "body_regex": "ok"}),
        http_target("other-name", {"url": site.url("/away-name"), "ip_protocol": "ip4"}),
        http_target("loop", {"url": site.url("/loop")}),
        http_target("to-https", {"url": site.url("/to-https"), "body_regex": "ok"}),
        http_target("to-https-ca", {"url": site.url("/to-https"), "tls": {"ca_file": site.root_file}}),
    ])))
    follow = results["follow"]
    assert follow.ok and follow.status == 200 and follow.redirects == 1, follow
    # Two hops, one figure per phase: connect is the sum of both connects, resolve happened once.
    assert [name for name, _ in follow.phases] == ["resolve", "connect", "first_byte", "transfer"]
    assert (results["no-follow"].reason, results["no-follow"].status, results["no-follow"].redirects) == \
        ("status", 302, 0)
    assert results["no-follow-302"].ok
    assert results["other-host"].ok and results["other-host"].redirects == 1
    assert results["other-name"].ok, results["other-name"]
    loop = results["loop"]
    assert (loop.ok, loop.reason, loop.redirects, loop.status) == (False, "status", 10, 302)
    assert "more than 10 redirects" in loop.detail
    # http -> https on the configured host: the certificate fails against the system store (test CA).
    assert results["to-https"].reason == "tls"
    # With the tls block, the same redirect verifies against the test CA, and the chain is reported.
    https = results["to-https-ca"]
    assert https.ok and https.redirects == 1 and https.tls.subject == "O=Lifeline tests,CN=portal leaf", https
    assert [name for name, _ in https.phases] == ["resolve", "connect", "tls", "first_byte", "transfer"]


def test_refused_and_resolve(site, tmp_path):
    port = free_port_on("127.0.0.1")
    r = probe_one(tmp_path, {"url": f"http://127.0.0.1:{port}/"})
    assert (r.reason, r.status) == ("refused", 0)

    async def nothing(host, port, **kw):
        return []

    cfg = load(tmp_path, [http_target("t", {"url": site.url("/health")}, address="portal.test")])
    r = asyncio.run(run_all(cfg, resolver=Resolver(getaddrinfo=nothing)))["t"]
    assert r.reason == "resolve" and [name for name, _ in r.phases] == ["resolve"]


# --- TLS ------------------------------------------------------------------------------------------

def test_tls_chain_expiry_is_the_earliest_of_the_presented_chain(site, tmp_path):
    ca = {"ca_file": site.root_file}
    results = asyncio.run(run_all(load(tmp_path, [
        http_target("good", {"url": site.tls_url("good"), "tls": ca, "body_regex": "ok"}),
        http_target("short", {"url": site.tls_url("short"), "tls": ca}),
        http_target("expired", {"url": site.tls_url("expired"), "tls": ca}),
        http_target("stranger", {"url": site.tls_url("stranger"), "tls": ca}),
        http_target("insecure", {"url": site.tls_url("stranger"), "tls": {"insecure_skip_verify": True}}),
        http_target("by-ip", {"url": site.tls_url("good", host="127.0.0.1"), "tls": ca}),
        http_target("sni", {"url": site.tls_url("good", host="127.0.0.1"),
                            "tls": {**ca, "server_name": "portal.test"}}),
        http_target("wrong-name", {"url": site.tls_url("good"), "tls": {**ca, "server_name": "other.test"}}),
        http_target("system-store", {"url": site.tls_url("good")}),
    ])))
    good = results["good"]
    assert good.ok, good
    assert [name for name, _ in good.phases] == ["resolve", "connect", "tls", "first_byte", "transfer"]
    assert good.tls.not_after == site.leaf.not_after  # the leaf (90 days) expires before its intermediate
    short = results["short"]
    assert short.ok, short
    assert short.tls.not_after == site.short_inter.not_after < site.short_leaf.not_after
    assert short.tls.subject == "O=Lifeline tests,CN=short leaf"
    assert results["expired"].reason == "cert_expired"
    assert results["stranger"].reason == "tls"
    assert results["insecure"].ok and results["insecure"].tls.subject.endswith("CN=stranger leaf")
    assert results["by-ip"].ok, results["by-ip"]  # the leaf carries IP:127.0.0.1
    assert results["sni"].ok
    assert results["wrong-name"].reason == "tls"
    assert results["system-store"].reason == "tls"


# --- hostile servers ------------------------------------------------------------------------------

async def _endless_headers(reader, writer):
    writer.write(b"HTTP/1.1 200 OK\r\n")
    while True:
        writer.write(b"X-Filler: " + b"a" * 500 + b"\r\n")
        await writer.drain()


async def _huge_body(reader, writer):
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    while True:
        writer.write(b"x" * 65536)
        await writer.drain()


async def _huge_chunked(reader, writer):
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        writer.write(b"10000\r\n" + b"y" * 65536 + b"\r\n")
        await writer.drain()


async def _slowloris(reader, writer):
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(1)


async def _garbage(reader, writer):
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(5)


async def _silent(reader, writer):  # accepts TCP, never answers the ClientHello (nor anything)
    await reader.read(65536)
    await asyncio.sleep(30)


async def _not_tls(reader, writer):  # answers a ClientHello with plain text
    await reader.read(1)
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(5)


async def _chunked(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"4;ext=1\r\nstat\r\n5\r\nus ok\r\n0\r\nX-Trailer: 1\r\n\r\n")
    await writer.drain()


async def _bad_chunk(reader, writer):
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nstat\r\n")
    await writer.drain()
    await asyncio.sleep(5)


async def _until_close(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.0 200 OK\r\n\r\nbody until close")
    await writer.drain()
    writer.close()


async def _hang_up(reader, writer):
    writer.transport.abort()


async def _short_body(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    await writer.drain()
    writer.close()


_HANDLERS: set[asyncio.Task] = set()


async def _guard(handler, reader, writer):
    _HANDLERS.add(asyncio.current_task())
    try:
        await handler(reader, writer)
        writer.close()
    except (OSError, asyncio.IncompleteReadError):
        writer.transport.abort()  # the probe hung up, as it should
    except asyncio.CancelledError:
        writer.transport.abort()
    finally:
        _HANDLERS.discard(asyncio.current_task())


HOSTILE = {  # name: (handler, block additions, expected reason, expected ok)
    "endless_headers": (_endless_headers, {}, "malformed"),
    "huge_body_regex": (_huge_body, {"body_regex": "ok"}, "body_mismatch"),
    "huge_body": (_huge_body, {}, None),
    "huge_chunked": (_huge_chunked, {"body_regex": "ok"}, "body_mismatch"),
    "slowloris": (_slowloris, {}, "timeout"),
    "garbage": (_garbage, {}, "malformed"),
    "tls_silent": (_silent, {"tls": True}, "timeout"),
    "tls_not_tls": (_not_tls, {"tls": True}, "tls"),
    "chunked": (_chunked, {"body_regex": "^status ok$"}, None),
    "bad_chunk": (_bad_chunk, {}, "malformed"),
    "until_close": (_until_close, {"body_regex": "until close$"}, None),
    "hang_up": (_hang_up, {}, "malformed"),
    "short_body": (_short_body, {}, "malformed"),
}


def test_hostile_servers_give_reasons_within_the_timeout_and_never_delay_others(site, tmp_path):
    async def main():
        servers, targets = [], []
        for name, (handler, extra, _) in HOSTILE.items():
            server = await asyncio.start_server(lambda r, w, h=handler: _guard(h, r, w), "127.0.0.1", 0)
            servers.append(server)
            port = server.sockets[0].getsockname()[1]
            scheme = "https" if extra.pop("tls", False) else "http"
            block = {"url": f"{scheme}://127.0.0.1:{port}/", "timeout": "1500ms", **extra}
            if scheme == "https":
                block["tls"] = {"insecure_skip_verify": True}
            targets.append(http_target(name, block))
        targets.append(http_target("healthy", {"url": site.url("/health"), "body_regex": "ok"}))
        cfg = load(tmp_path, targets)
        started = time.monotonic()
        try:
            results = await run_all(cfg)
        finally:
            for server in servers:
                server.close()
            for task in list(_HANDLERS):
                task.cancel()
            await asyncio.gather(*_HANDLERS, return_exceptions=True)
        return results, time.monotonic() - started

    results, elapsed = asyncio.run(main())
    for name, (_, extra, reason) in HOSTILE.items():
        r = results[name]
        assert (r.ok, r.reason) == (reason is None, reason), (name, r)
        assert r.duration < 1.6, (name, r.duration)
    assert elapsed < 2.5
    healthy = results["healthy"]
    assert healthy.ok and healthy.duration < 0.5, healthy  # not held up by the 13 hostile exchanges
    huge = results["huge_body"]
    assert huge.body_bytes == 1 << 20 and huge.content_length == 1_000_000_000 and huge.status == 200
    assert results["huge_body_regex"].body_bytes == 1 << 20
    assert results["huge_chunked"].body_bytes == 1 << 20
    assert results["endless_headers"].status == 0
    assert results["until_close"].body_bytes == len(b"body until close")


def test_body_limit_caps_what_is_read(site, tmp_path):
    r = probe_one(tmp_path, {"url": site.url("/echo"), "body_limit": "4B", "body_regex": "^prob$"})
    assert r.ok and r.body_bytes == 4 and r.content_length > 4, r


# --- configuration --------------------------------------------------------------------------------

def test_bad_blocks_name_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    blocks = ["{url: 'ftp://x/'}", "{url: 'http://x/', metod: GET}", "{url: 'http://x:70000/'}",
              "{url: 'http://x/', body_regex: '(ok'}", "{url: 'http://x/', ip_protocol: ip5}",
              "{url: 'https://x/', tls: {ca_file: /nonexistent/ca.pem}}", None, "{url: 'http://u:pw@x/'}",
              "{url: 'http://x/', valid_status_codes: [200, 700], body_limit: 1GiB, headers: {Host: y}}",
              "{url: 'http://x/', tls: {}, timeout: 20s}",
              "{url: 'https://x/', follow_redirects: 'yes', tls: {insecure_skip_verify: 1}}"]
    path.write_text(TIERS + "targets:\n" + "".join(
        f"  - {{name: t{i}, address: 127.0.0.1, tier: P0, probes: [http]{'' if b is None else ', http: ' + b}}}\n"
        for i, b in enumerate(blocks)))
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(str(path), ALL_KINDS)
    got = [str(e).replace(str(path), "FILE") for e in exc.value.errors]
    assert got == [
        "FILE:4: targets[0].http.url: must start with http:// or https:// (got 'ftp://x/')",
        "FILE:5: targets[1].http.metod: unknown key (did you mean 'method'?)",
        "FILE:6: targets[2].http.url: not a valid URL: Port out of range 0-65535 (got 'http://x:70000/')",
        "FILE:7: targets[3].http.body_regex: not a valid regular expression: missing ), unterminated subpattern "
        "at position 0 (got '(ok')",
        "FILE:8: targets[4].http.ip_protocol: must be one of ip4, ip6 (got 'ip5')",
        "FILE:9: targets[5].http.tls.ca_file: cannot read '/nonexistent/ca.pem'",
        "FILE:10: targets[6].http: the http probe needs a block with at least 'url', "
        "e.g. http: {url: \"https://host/health\"}",
        "FILE:11: targets[7].http.url: must not carry credentials; send them with headers: {Authorization: ...} "
        "(got 'http://u:pw@x/')",
        "FILE:12: targets[8].http.valid_status_codes[1]: must be between 100 and 599 (got 700)",
        "FILE:12: targets[8].http.headers.Host: set by the probe itself (Host comes from the URL)",
        "FILE:12: targets[8].http.body_limit: must be a size from 1 byte to 64MiB such as 65536, \"64KiB\" or "
        "\"1MiB\" (got '1GiB')",
        "FILE:13: targets[9].http.timeout: timeout (20s) must be below interval (10s)",
        "FILE:14: targets[10].http.follow_redirects: must be true or false (got 'yes')",
        "FILE:14: targets[10].http.tls.insecure_skip_verify: must be true or false (got 1)",
    ], "\n".join(got)


def test_header_values_never_show(tmp_path):
    cfg = load(tmp_path, [http_target("t", {"url": "http://x/", "headers": {"Authorization": "Bearer s3cr3t"}})])
    settings_ = cfg.targets[0].setting("http")
    assert "s3cr3t" not in repr(settings_) and "s3cr3t" not in str(cfg.targets[0])
    assert settings_.headers[0].value == "Bearer s3cr3t"


def test_settings_compare_for_reload(tmp_path):
    a = load(tmp_path, [http_target("t", {"url": "https://x/", "body_regex": "ok", "headers": {"A": "1"}})])
    b = load(tmp_path, [http_target("t", {"url": "https://x/", "body_regex": "ok", "headers": {"A": "1"}})])
    assert a.targets[0].identity() == b.targets[0].identity()
    hash(a.targets[0].identity())


# --- the agent ------------------------------------------------------------------------------------

def test_agent_exports_http_and_tcp(site, agent_factory, tmp_path):
    promtool = require_tool("promtool", "prometheus")
    refused = free_port_on("127.0.0.1")
    ca = json.dumps({"ca_file": site.root_file})
    text = ("tiers:\n  P0: {interval: 1s, timeout: 800ms, packets: 1}\n"
            "targets:\n"
            f"  - {{name: portal, address: 127.0.0.1, tier: P0, probes: [http, tcp],\n"
            f"     http: {{url: '{site.tls_url('short')}', tls: {ca}, body_regex: ok,"
            f" headers: {{Authorization: 'Bearer agent-secret'}}}},\n"
            f"     tcp: {{port: {site.tls_ports['short']},"
            f" tls: {{ca_file: '{site.root_file}', server_name: portal.test}}}}}}\n"
            f"  - {{name: missing, address: 127.0.0.1, tier: P0, probes: [http],"
            f" http: {{url: '{site.url('/missing')}'}}}}\n"
            f"  - {{name: expired, address: 127.0.0.1, tier: P0, probes: [http],"
            f" http: {{url: '{site.tls_url('expired')}', tls: {ca}}}}}\n"
            f"  - {{name: closed, address: 127.0.0.1, tier: P0, probes: [tcp], tcp: {{port: {refused}}}}}\n"
            f"  - {{name: banner, address: 127.0.0.1, tier: P0, probes: [tcp],"
            f" tcp: {{port: {site.port}, send: \"GET /health HTTP/1.0\\r\\n\\r\\n\", expect: '^HTTP/1.1 200'}}}}\n")
    agent = agent_factory(text)

    def ready():
        m = agent.metrics()
        # Each probe of each target runs at its own phase: wait for every one, portal's two included.
        return m if all(value(m, "lifeline_probe_success", target=t) is not None
                        for t in ("missing", "expired", "closed", "banner")) \
            and all(value(m, "lifeline_probe_success", target="portal", probe=p) is not None for p in ("http", "tcp")) \
            and value(m, "lifeline_probe_failures_total", target="expired", reason="cert_expired") else None

    text_ = wait_for(ready, 20, "every target probed")
    m = text_
    assert value(m, "lifeline_http_status_code", target="portal") == 200
    assert value(m, "lifeline_probe_success", target="portal", probe="http") == 1
    assert value(m, "lifeline_probe_success", target="portal", probe="tcp") == 1
    assert value(m, "lifeline_target_up", target="portal") == 1
    for probe in ("http", "tcp"):
        assert value(m, "lifeline_tls_cert_not_after_timestamp_seconds", target="portal", probe=probe) == \
            site.short_inter.not_after
    assert value(m, "lifeline_tls_cert_info", target="portal", probe="http",
                 subject="O=Lifeline tests,CN=short leaf") == 1
    for phase in ("resolve", "connect", "tls", "first_byte", "transfer", "total"):
        assert value(m, "lifeline_probe_duration_seconds", target="portal", probe="http", phase=phase) >= 0, phase
    assert value(m, "lifeline_http_status_code", target="missing") == 404
    assert value(m, "lifeline_probe_failures_total", target="missing", probe="http", reason="status") >= 1
    assert value(m, "lifeline_http_status_code", target="expired") == 0
    assert value(m, "lifeline_probe_failures_total", target="closed", probe="tcp", reason="refused") >= 1
    assert value(m, "lifeline_probe_success", target="banner", probe="tcp") == 1
    assert value(m, "lifeline_probe_duration_seconds", target="banner", probe="tcp", phase="expect") > 0
    assert "agent-secret" not in m and "agent-secret" not in agent.log()
    check = subprocess.run([promtool, "check", "metrics"], input=m, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "lifeline_http" not in check.stdout + check.stderr  # no lint complaint about our families


# --- response parsing under fuzz ------------------------------------------------------------------

async def _parse(data: bytes, method: str = "GET", limit: int = 1024):
    reader = asyncio.StreamReader(limit=16 * 1024 + 4)
    reader.feed_data(data)
    reader.feed_eof()
    head = await read_response_head(reader)
    return head, await read_body(reader, head, method, limit, keep=True)


@settings(max_examples=400, deadline=2000)
@given(data=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda head, rest: head + rest,
              st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 204 \r\n", b"HTTP/1.1 100 Continue\r\n\r\n",
                               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
                               b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"]),
              st.binary(max_size=200))))
def test_any_bytes_parse_or_fail_as_malformed(data):
    try:
        head, body = asyncio.run(_parse(data))
    except ProbeFailure as exc:
        assert exc.reason == "malformed"
    else:
        assert 100 <= head.status <= 999 and body.length <= 1024 and len(body.data) == body.length


@settings(max_examples=200, deadline=2000)
@given(body=st.binary(max_size=3000), cuts=st.lists(st.integers(1, 500), max_size=10),
       limit=st.integers(1, 4000), ext=st.booleans())
def test_chunked_bodies_decode_to_their_prefix(body, cuts, limit, ext):
    chunks, rest = [], body
    for n in cuts:
        if rest:
            chunks.append(rest[:n])
            rest = rest[n:]
    if rest:
        chunks.append(rest)
    wire = b"".join(b"%x%s\r\n%s\r\n" % (len(c), b";a=b" if ext else b"", c) for c in chunks) + b"0\r\n\r\n"
    head, got = asyncio.run(_parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire, limit=limit))
    assert got.data == body[:limit] and got.truncated == (len(body) > limit)


@given(line=st.binary(max_size=40))
def test_chunk_size_lines(line):
    try:
        n = chunk_size(line)
    except ProbeFailure as exc:
        assert exc.reason == "malformed"
    else:
        assert 0 <= n < 16**15


@settings(max_examples=400, deadline=1000)
@given(location=st.one_of(st.text(max_size=60), st.sampled_from(["http://[::1/", "//[x]/", "https://h:99999/",
                                                                   "ftp://x/", "http://u:p@h/", "/ok?q#f"])))
def test_any_location_header_gives_a_url_or_malformed(location):
    try:
        url = _next_url(Url("http", "portal.test", 8080, "/a/b"), location)
    except ProbeFailure as exc:
        assert exc.reason == "malformed"
    else:
        assert url.scheme in ("http", "https") and 0 < url.port < 65536 and url.target.startswith("/")
