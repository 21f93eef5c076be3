"""ICMP engine and probe with real packets: loopback, and test hosts in a namespace."""

from __future__ import annotations

import asyncio
import socket
import struct

import ping3
import pytest

from agent.config import DEFAULT_TIERS
from common.resolver import Resolver
from probes.icmp.probe import IcmpProbe
from tests.kit import retier
from probes.icmp.engine import IcmpEngine

pytestmark = pytest.mark.usefixtures("needs_root")


def run(coro):
    return asyncio.run(coro)


class _Target:
    def __init__(self, address: str, name: str = "t", tier: str = "P0"):
        self.address, self.name, self.tier = address, name, tier


def tier(**changes):
    return retier(DEFAULT_TIERS["P0"], **changes)


async def _ping(ip, family=socket.AF_INET, count=5, spacing=0.01, timeout=1.0, mode="raw"):
    engine = IcmpEngine(mode=mode)
    try:
        return await engine.ping(ip, family, count, spacing, timeout), engine
    finally:
        await engine.close()


def test_checksum_matches_ping3_reference():
    async def main():
        engine = IcmpEngine(mode="raw")
        fam = engine._family(socket.AF_INET)
        for seq in (0, 1, 255, 4096, 65535):
            packet = fam.packet(seq)
            zeroed = packet[:2] + b"\0\0" + packet[4:]
            assert struct.unpack("!H", packet[2:4])[0] == socket.htons(ping3.checksum(zeroed))
        await engine.close()
    run(main())


def test_loopback_ipv4_all_answered():
    stats, engine = run(_ping("127.0.0.1"))
    assert stats.sent == 5 and stats.received == 5 and stats.errors == []
    assert all(0 < r < 0.05 for r in stats.rtts)


def test_loopback_ipv6():
    stats, _ = run(_ping("::1", socket.AF_INET6, count=3))
    assert stats.received == 3
    assert all(0 < r < 0.05 for r in stats.rtts)


def test_concurrent_cycles_get_their_own_replies():
    """2,000 addresses at once over one socket: every echo matched, none foreign or unmatched."""
    async def main():
        engine = IcmpEngine(mode="raw")
        addrs = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(2000)]
        results = await asyncio.gather(*(engine.ping(a, socket.AF_INET, 3, 0.01, 2.0) for a in addrs))
        await engine.close()
        return results, engine.ignored
    results, ignored = run(main())
    assert sum(r.received for r in results) == 6000
    assert ignored["unmatched"] == 0


def test_probe_reports_rtt_stats_and_jitter():
    result = _probe_once("127.0.0.1", packets=4, packet_interval=0.01)
    assert result.ok and result.reason is None
    assert result.sent == 4 and result.received == 4 and result.loss == 0
    rtts = result.rtts
    expected = sum(abs(b - a) for a, b in zip(rtts, rtts[1:])) / 3
    assert result.jitter == pytest.approx(expected)


def test_resolve_failure_is_a_result():
    async def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def main():
        probe = IcmpProbe(engine=IcmpEngine(mode="raw"), resolver=Resolver(getaddrinfo=fail))
        result = await probe.run(_Target("checkpoint.example.invalid"), tier())
        await probe.close()
        return result
    result = run(main())
    assert not result.ok and result.reason == "resolve" and result.sent == 0


def test_lossy_host_measured_near_30_percent(testnet):
    host = testnet.hosts[0]
    testnet.set_loss(host, 30)
    try:
        stats, _ = run(_ping(host, count=800, spacing=0.002, timeout=0.5))
    finally:
        testnet.set_loss(host, 0)
    loss = 1 - stats.received / stats.sent
    # Binomial sd at n=800, p=0.3 is 1.6%; +-7% is over four sd.
    assert 0.23 <= loss <= 0.37, loss


def _probe_once(address, **tier_changes):
    async def main():
        probe = IcmpProbe(engine=IcmpEngine(mode="raw"))
        try:
            return await probe.run(_Target(address), tier(**tier_changes))
        finally:
            await probe.close()
    return run(main())


def test_dark_host_is_down_with_timeout(testnet):
    host = testnet.hosts[1]
    testnet.set_loss(host, 100)
    try:
        result = _probe_once(host, packets=3, packet_interval=0.01, timeout=0.3)
    finally:
        testnet.set_loss(host, 0)
    assert not result.ok and result.reason == "timeout" and result.received == 0 and result.loss == 1.0


def test_icmp_unreachable_is_classified(testnet):
    host = testnet.hosts[2]
    testnet.set_reject(host)
    try:
        result = _probe_once(host, packets=3, packet_interval=0.01, timeout=1.0)
    finally:
        testnet.set_loss(host, 0)
    assert not result.ok and result.reason == "unreachable"
    # Errors settle the cycle early instead of waiting for the timeout.
    assert result.duration < 0.9


def test_send_failure_is_classified(testnet):
    host = testnet.hosts[3]
    testnet.block_output(host)
    try:
        result = _probe_once(host, packets=2, packet_interval=0.01, timeout=0.5)
    finally:
        testnet.block_output(host, blocked=False)
    assert not result.ok and result.reason == "send_error"
    assert result.duration < 0.4  # failed sends settle the cycle at once


def test_healthy_netns_host(testnet):
    stats, _ = run(_ping(testnet.hosts[3], count=5))
    assert stats.received == 5


def _forge_reply(src: str, dst: str, ident: int, seq: int, payload: bytes) -> bytes:
    icmp = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", socket.htons(ping3.checksum(icmp))) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, socket.IPPROTO_ICMP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip + icmp


def test_forged_replies_never_count_as_success(testnet):
    """A dark host stays down while forged replies for it arrive: wrong cookie, wrong source, truncated."""
    host = testnet.hosts[4]
    testnet.set_loss(host, 100)

    async def main():
        engine = IcmpEngine(mode="raw")
        forger = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied
        task = asyncio.ensure_future(engine.ping(host, socket.AF_INET, 5, 0.02, 0.5))
        await asyncio.sleep(0.05)  # let the first echoes go out so their sequence numbers exist
        fam = engine._families[socket.AF_INET]
        good_payload = fam.payload
        for seq in range(fam.seq - 5, fam.seq + 6):
            seq &= 0xFFFF
            # Right source, identifier and sequence, but not our cookie (a spoofer's guess).
            forger.sendto(_forge_reply(host, testnet.gateway, fam.ident, seq, bytes(len(good_payload))),
                          (testnet.gateway, 0))
            # Our cookie, but from the wrong source.
            forger.sendto(_forge_reply("127.0.0.1", "127.0.0.1", fam.ident, seq, good_payload), ("127.0.0.1", 0))
            # Truncated: a whole header but a payload too short to hold the cookie. (ICMP shorter
            # than 8 bytes never reaches a raw socket: the kernel's ICMP filter drops it.)
            forger.sendto(_forge_reply(host, testnet.gateway, fam.ident, seq, good_payload[:3]),
                          (testnet.gateway, 0))
        stats = await task
        forger.close()
        await engine.close()
        return stats, engine.ignored
    try:
        stats, ignored = run(main())
    finally:
        testnet.set_loss(host, 0)
    assert stats.received == 0
    assert ignored["foreign"] >= 22 and ignored["unmatched"] >= 11


DGRAM_SCRIPT = """
import asyncio, json, socket
from probes.icmp.engine import IcmpEngine
async def main():
    engine = IcmpEngine(mode="dgram")
    out = {}
    for ip, fam in (("127.0.0.9", socket.AF_INET), ("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        stats = await engine.ping(ip, fam, 2, 0.01, 1.0)
        out[ip] = [stats.received, stats.errors]
    out["modes"] = engine.socket_modes()
    await engine.close()
    print(json.dumps(out))
asyncio.run(main())
"""


def test_datagram_sockets_classify_icmp_errors(tmp_path):
    """Unprivileged sockets get ICMP errors only through the error queue (IP_RECVERR); they must not read as timeouts."""
    import json
    import subprocess
    import sys

    from tests.helpers import ROOT, ping_namespace

    with ping_namespace("llrecv") as nsexec:
        rules = ("table inet t {\n chain input {\n  type filter hook input priority 0;\n"
                 "  ip daddr 127.0.0.9 icmp type echo-request reject with icmp type host-unreachable\n"
                 "  ip6 daddr ::1 icmpv6 type echo-request reject with icmpv6 type addr-unreachable\n }\n}\n")
        subprocess.run([*nsexec, "nft", "-f", "-"], input=rules, text=True, check=True)
        proc = subprocess.run([*nsexec, sys.executable, "-c", DGRAM_SCRIPT], capture_output=True, text=True,
                              cwd=ROOT, timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["modes"] == {"ipv4": "dgram", "ipv6": "dgram"}
    assert out["127.0.0.9"] == [0, ["unreachable", "unreachable"]]
    assert out["::1"] == [0, ["unreachable", "unreachable"]]
    assert out["127.0.0.1"] == [2, []]
