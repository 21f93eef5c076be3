"""ICMP errors end SNMP requests at once: a closed port is ``refused``, a dead route ``unreachable``.

Closed ports are free loopback ports (nothing listening, so the kernel answers with
port unreachable) or ports of a host in the test namespace; ``unreachable`` comes
from an nftables reject in that namespace. Nothing outside 127.0.0.1, ::1 and
198.18.0.0/15 is addressed.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import pytest

from probes.snmp.transport import SnmpUdpClient
from tests.helpers import free_port, samples, value, wait_for
from tests.snmp.conftest import SIM_COMMUNITY, FakeTarget, Poller, tier, v2

# Timeout 1 s and 2 retries: a refusal must not wait for any of it.
SLOW = dict(timeout=1.0, retries=2)
AT_ONCE = 0.5


def run(coro):
    return asyncio.run(coro)


def closed_port(host: str = "127.0.0.1") -> int:
    return free_port(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)


@pytest.mark.parametrize("host", [pytest.param("127.0.0.1", id="ipv4"), pytest.param("::1", id="ipv6")])
def test_closed_loopback_port_is_refused_at_once(host):
    async def go():
        client = SnmpUdpClient()
        probe = Poller(udp=client)
        try:
            result = await probe.run(FakeTarget("closed", v2(closed_port(host)), address=host), tier(**SLOW))
            return result, client.stats
        finally:
            await probe.close()

    result, stats = run(go())
    assert (result.ok, result.reason) == (False, "refused"), result
    assert result.duration < AT_ONCE, result.duration
    assert "port unreachable" in result.detail, result.detail
    assert stats.sent == 1  # no retry after the refusal


def test_refusals_do_not_disturb_a_live_agent_on_the_same_socket(snmpsim):
    """Refused and live requests interleaved on the one shared socket, in the same loop turns.

    The ICMP error of a loopback send is queued before sendto returns, so the live request
    sent right after it meets the socket's pending error in its own sendto: it must still go out.
    """
    async def go():
        client = SnmpUdpClient()
        probe = Poller(udp=client)
        alive = FakeTarget("alive", v2(snmpsim.port, SIM_COMMUNITY))
        try:
            rounds = []
            for _ in range(3):
                closed = [FakeTarget(f"closed-{i}", v2(closed_port())) for i in range(3)]
                started = time.monotonic()
                results = await asyncio.gather(*(probe.run(t, tier(**SLOW)) for t in (closed[0], alive, *closed[1:])))
                rounds.append((results, time.monotonic() - started))
            return rounds
        finally:
            await probe.close()

    for results, elapsed in run(go()):
        live, refused = results[1], [results[0], *results[2:]]
        assert live.ok, live
        assert [r.reason for r in refused] == ["refused"] * 3, refused
        assert all(r.duration < AT_ONCE for r in refused), [r.duration for r in refused]
        assert elapsed < 1.0  # nobody waited for a timeout


# --- over a (namespaced) network: errors from another host's kernel ---------------------------

REJECT_TABLE = "lifeline_snmp_reject"


@pytest.fixture
def rejecting_host(testnet):
    """A namespace host that answers UDP to port ``reject_port`` with ICMP host-unreachable."""
    host = testnet.hosts[-1]
    port = 16100 + time.monotonic_ns() % 1000
    script = (f"table inet {REJECT_TABLE} {{\n  chain input {{\n"
              "    type filter hook input priority -10; policy accept;\n"
              f"    ip daddr {host} udp dport {port} reject with icmp type host-unreachable\n  }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", testnet.name, "nft", "-f", "-"], input=script, text=True, check=True)
    try:
        yield host, port
    finally:
        subprocess.run(["ip", "netns", "exec", testnet.name, "nft", "delete", "table", "inet", REJECT_TABLE],
                       check=False, capture_output=True)


def test_namespace_host_refuses_and_rejects(rejecting_host):
    host, reject_port = rejecting_host
    closed = reject_port + 1  # nothing listens in the namespace

    async def go():
        client = SnmpUdpClient()
        probe = Poller(udp=client)
        try:
            return await asyncio.gather(probe.run(FakeTarget("refusing", v2(closed), address=host), tier(**SLOW)),
                                        probe.run(FakeTarget("rejecting", v2(reject_port), address=host),
                                                  tier(**SLOW)))
        finally:
            await probe.close()

    refused, unreachable = run(go())
    assert refused.reason == "refused", refused
    assert unreachable.reason == "unreachable", unreachable
    assert "host unreachable" in unreachable.detail and f"from {host}" in unreachable.detail, unreachable.detail
    # ICMP from a real (namespaced) peer is rate-limited per sender; one error per poll is all
    # we need, and it is well inside the first timeout.
    assert refused.duration < AT_ONCE and unreachable.duration < AT_ONCE, (refused.duration, unreachable.duration)


# --- the whole agent -------------------------------------------------------------------------

AGENT_CONFIG = """\
tiers:
  P1: {{snmp_interval: 3s, snmp_timeout: 1s, snmp_retries: 1}}
targets:
  - {{name: closed, address: 127.0.0.1, tier: P1, probes: [snmp], snmp: {{community: x, port: {closed}}}}}
  - {{name: sim, address: 127.0.0.1, tier: P1, probes: [snmp], snmp: {{community: {community}, port: {sim}}}}}
"""


def test_agent_exports_refused(agent_factory, snmpsim):
    agent = agent_factory(AGENT_CONFIG.format(closed=closed_port(), community=SIM_COMMUNITY, sim=snmpsim.port))

    def ready():
        m = samples(agent.metrics())
        refused = value(m, "lifeline_probe_failures_total", target="closed", probe="snmp", reason="refused")
        return m if refused and value(m, "lifeline_snmp_up", target="sim") == 1 else None

    m = wait_for(ready, 20, 'lifeline_probe_failures_total{target="closed",probe="snmp",reason="refused"}')
    assert value(m, "lifeline_probe_failures_total", target="closed", probe="snmp", reason="timeout") in (None, 0)
    assert value(m, "lifeline_snmp_up", target="closed") == 0
