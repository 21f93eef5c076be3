"""The tcp kind: connects, TLS with the whole chain's expiry, send/expect, and hostile or silent peers."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from agent import config as config_mod
from common.errors import ConfigInvalid
from common.resolver import Resolver
from probes.base import ProbeContext
from probes.registry import KINDS
from tests.httpd import Nginx, Pki, free_port_on

TIERS = "tiers:\n  P0: {interval: 10s, timeout: 2s, packets: 1}\n"
_loads = iter(range(10**6))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """nginx with a plain port and a TLS port serving leaf + an intermediate that expires first."""
    folder = tmp_path_factory.mktemp("tcp-site")
    pki = Pki(folder / "pki")
    root = pki.root("Tcp Root")
    inter = pki.intermediate("Tcp Intermediate", root, days=20)
    leaf = pki.leaf("tcp leaf", inter, days=100)
    expired = pki.leaf("tcp expired", inter, expired=True)
    s = type("Site", (), {})()
    s.root_file, s.inter, s.leaf = str(root.cert_path), inter, leaf
    s.port, s.tls_port, s.expired_port = (free_port_on("127.0.0.1") for _ in range(3))
    servers = f"""
    server {{ listen 127.0.0.1:{s.port}; location / {{ return 200 "ok\\n"; }} }}
    server {{ listen 127.0.0.1:{s.tls_port} ssl; ssl_certificate {pki.chain_file('tcp', leaf, inter)};
             ssl_certificate_key {leaf.key_path}; location / {{ return 200 "ok\\n"; }} }}
    server {{ listen 127.0.0.1:{s.expired_port} ssl; ssl_certificate {pki.chain_file('tcp-exp', expired, inter)};
             ssl_certificate_key {expired.key_path}; location / {{ return 200 "ok\\n"; }} }}"""
    s.nginx = Nginx(folder / "nginx", servers, [("127.0.0.1", p) for p in (s.port, s.tls_port, s.expired_port)])
    yield s
    s.nginx.stop()


def load(tmp_path, targets: list[tuple[str, dict]], address: str = "127.0.0.1"):
    path = tmp_path / f"tcp-{next(_loads)}.yaml"
    lines = [json.dumps({"name": name, "address": address, "tier": "P0", "probes": ["tcp"], "tcp": block})
             for name, block in targets]
    path.write_text(TIERS + "targets:\n" + "".join(f"  - {line}\n" for line in lines))
    return config_mod.load(str(path), KINDS)


async def run_all(cfg, resolver: Resolver | None = None):
    kind = KINDS["tcp"]
    probe = kind.open(ProbeContext(resolver or Resolver()))
    runs = [probe.run(t, cfg.tiers[t.tier], kind.new_state(t)) for t in cfg.targets]
    return dict(zip((t.name for t in cfg.targets), await asyncio.gather(*runs)))


def test_connect_tls_and_send_expect_against_nginx(site, tmp_path):
    refused = free_port_on("127.0.0.1")
    ca = {"ca_file": site.root_file, "server_name": "portal.test"}
    r = asyncio.run(run_all(load(tmp_path, [
        ("plain", {"port": site.port}),
        ("refused", {"port": refused}),
        ("tls", {"port": site.tls_port, "tls": ca}),
        ("tls-untrusted", {"port": site.tls_port, "tls": True}),
        ("tls-insecure", {"port": site.tls_port, "tls": {"insecure_skip_verify": True}}),
        ("tls-expired", {"port": site.expired_port, "tls": ca}),
        ("http", {"port": site.port, "send": "GET / HTTP/1.0\r\n\r\n", "expect": r"^HTTP/1\.1 200 OK\r$"}),
        ("https", {"port": site.tls_port, "tls": ca, "send": "GET / HTTP/1.0\r\n\r\n", "expect": "^ok$"}),
        ("wrong", {"port": site.port, "send": "GET / HTTP/1.0\r\n\r\n", "expect": "^SSH-2.0"}),
    ])))
    assert r["plain"].ok and [p for p, _ in r["plain"].phases] == ["resolve", "connect"] and r["plain"].tls is None
    assert r["refused"].reason == "refused"
    tls = r["tls"]
    assert tls.ok and [p for p, _ in tls.phases] == ["resolve", "connect", "tls"]
    assert tls.tls.not_after == site.inter.not_after < site.leaf.not_after  # the whole chain, not the leaf
    assert r["tls-untrusted"].reason == "tls"
    assert r["tls-insecure"].ok and r["tls-insecure"].tls.not_after == site.inter.not_after
    assert r["tls-expired"].reason == "cert_expired"
    assert r["http"].ok and [p for p, _ in r["http"].phases][-1] == "expect"
    assert r["https"].ok, r["https"]
    assert r["wrong"].reason == "expect_mismatch"
    assert "closed after" in r["wrong"].detail


async def _banner(reader, writer):
    writer.write(b"220 mail.test ESMTP ready\r\n")
    await writer.drain()
    await reader.read(100)


async def _chatty(reader, writer):  # the wrong greeting, then silence with the connection open
    writer.write(b"554 go away\r\n")
    await writer.drain()
    await asyncio.sleep(10)


async def _silent(reader, writer):
    await asyncio.sleep(10)


async def _flood(reader, writer):  # never the expected text, at full speed
    while True:
        writer.write(b"x" * 65536)
        await writer.drain()


async def _reset(reader, writer):
    writer.transport.abort()


def test_expect_against_hostile_peers_without_delaying_others(site, tmp_path):
    handlers = {"banner": (_banner, {"expect": "^220 ", "send": "QUIT\r\n"}, None),
                "chatty": (_chatty, {"expect": "^220 "}, "expect_mismatch"),
                "silent": (_silent, {"expect": "^220 "}, "timeout"),
                "silent-tls": (_silent, {"tls": {"insecure_skip_verify": True}}, "timeout"),
                "flood": (_flood, {"expect": "^220 "}, "expect_mismatch"),
                "reset": (_reset, {"expect": "^220 "}, "expect_mismatch")}
    tasks: set[asyncio.Task] = set()

    async def guard(handler, reader, writer):
        tasks.add(asyncio.current_task())
        try:
            await handler(reader, writer)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            tasks.discard(asyncio.current_task())

    async def main():
        servers, targets = [], []
        for name, (handler, block, _) in handlers.items():
            server = await asyncio.start_server(lambda r, w, h=handler: guard(h, r, w), "127.0.0.1", 0)
            servers.append(server)
            targets.append((name, {"port": server.sockets[0].getsockname()[1], "timeout": "1s", **block}))
        targets.append(("healthy", {"port": site.tls_port, "tls": {"ca_file": site.root_file,
                                                                   "server_name": "portal.test"}}))
        started = time.monotonic()
        try:
            return await run_all(load(tmp_path, targets)), time.monotonic() - started
        finally:
            for server in servers:
                server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    results, elapsed = asyncio.run(main())
    for name, (_, _, reason) in handlers.items():
        assert (results[name].ok, results[name].reason) == (reason is None, reason), (name, results[name])
        assert results[name].duration < 1.1, (name, results[name].duration)
    assert results["flood"].duration < 0.5  # 4 KiB without a match ends it, not the timeout
    assert results["healthy"].ok and results["healthy"].duration < 0.5
    assert elapsed < 1.6


def test_resolve_failure(tmp_path):
    async def nothing(host, port, **kw):
        return []

    cfg = load(tmp_path, [("t", {"port": 80})], address="mail.test")
    r = asyncio.run(run_all(cfg, Resolver(getaddrinfo=nothing)))["t"]
    assert r.reason == "resolve" and [p for p, _ in r.phases] == ["resolve"]


def test_bad_blocks_name_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(TIERS + "targets:\n"
                    "  - {name: a, address: 127.0.0.1, tier: P0, probes: [tcp], tcp: {port: 70000}}\n"
                    "  - {name: b, address: 127.0.0.1, tier: P0, probes: [tcp], tcp: {port: 25, expext: '^220'}}\n"
                    "  - {name: c, address: 127.0.0.1, tier: P0, probes: [tcp], tcp: {port: 25, expect: '[220'}}\n"
                    "  - {name: d, address: 127.0.0.1, tier: P0, probes: [tcp], tcp: {port: 25, tls: yes-please}}\n"
                    "  - {name: e, address: 127.0.0.1, tier: P0, probes: [tcp], tcp: {tls: {ca_file: /nope.pem}}}\n"
                    "  - {name: f, address: 127.0.0.1, tier: P0, probes: [tcp]}\n")
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(str(path), KINDS)
    got = [str(e).replace(str(path), "FILE") for e in exc.value.errors]
    assert got == [
        "FILE:4: targets[0].tcp.port: must be between 1 and 65535 (got 70000)",
        "FILE:5: targets[1].tcp.expext: unknown key (did you mean 'expect'?)",
        "FILE:6: targets[2].tcp.expect: not a valid regular expression: unterminated character set at position 0 "
        "(got '[220')",
        "FILE:7: targets[3].tcp.tls: must be true, false or a mapping of TLS options (got 'yes-please')",
        "FILE:8: targets[4].tcp: missing required key 'port'",
        "FILE:8: targets[4].tcp.tls.ca_file: cannot read '/nope.pem'",
        "FILE:9: targets[5].tcp: the tcp probe needs a block with at least 'port', e.g. tcp: {port: 443}",
    ], "\n".join(got)
