"""Faults the agent must ride out without a restart: link loss, DNS loss, scrape floods."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest

from tests.helpers import require_tool, series, value, wait_for

pytestmark = pytest.mark.usefixtures("needs_root")


TIERS = """
tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 2, packet_interval: 20ms}
dns: {cache_ttl: 500ms, negative_ttl: 500ms}
targets:
"""


def _failures(agent, target, reason):
    return value(agent.metrics(), "lifeline_probe_failures_total", target=target, reason=reason) or 0


def test_link_down_and_up(agent_factory, testnet):
    host = testnet.hosts[0]
    agent = agent_factory(TIERS + f"  - {{name: clinic-line, address: {host}, tier: P0}}\n")
    wait_for(lambda: value(agent.metrics(), "lifeline_target_up", target="clinic-line") == 1, 5, "up")
    testnet.set_link(False)
    try:
        wait_for(lambda: _failures(agent, "clinic-line", "unreachable") >= 2, 6, "unreachable while link down")
        assert value(agent.metrics(), "lifeline_target_up", target="clinic-line") == 0
    finally:
        testnet.set_link(True)
    wait_for(lambda: value(agent.metrics(), "lifeline_target_up", target="clinic-line") == 1, 8,
             "recovery after the link returns")


def test_name_stops_resolving_and_comes_back(agent_factory, tmp_path):
    require_tool("unshare", "util-linux")
    hosts, resolv = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n127.0.9.9 hotline.lifeline.test\n")
    # Only loopback DNS in the agent's private mount namespace: nothing here may query real servers.
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    wrapper = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
               f'mount --bind {hosts} /etc/hosts && mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh"]
    agent = agent_factory(TIERS + "  - {name: hotline, address: hotline.lifeline.test, tier: P0}\n"
                                  "  - {name: lo, address: 127.0.0.1, tier: P0}\n", wrapper=wrapper)
    wait_for(lambda: value(agent.metrics(), "lifeline_target_up", target="hotline") == 1, 5, "resolved and up")
    hosts.write_text("127.0.0.1 localhost\n")  # same inode, so the bind mount sees it
    wait_for(lambda: _failures(agent, "hotline", "resolve") >= 1, 8, "resolve failure counted")
    assert value(agent.metrics(), "lifeline_target_up", target="hotline") == 0
    assert value(agent.metrics(), "lifeline_target_up", target="lo") == 1
    hosts.write_text("127.0.0.1 localhost\n127.0.9.9 hotline.lifeline.test\n")
    wait_for(lambda: value(agent.metrics(), "lifeline_target_up", target="hotline") == 1, 8, "recovered")


def test_scrape_flood_does_not_starve_p0(agent_factory):
    targets = "".join(f"  - {{name: hospital-{i}, address: 127.0.6.{i}, tier: P0}}\n" for i in range(1, 11))
    targets += "".join(f"  - {{name: camera-{i}, address: 127.0.7.{i % 250 + 1}, tier: P3}}\n" for i in range(500))
    agent = agent_factory(TIERS + targets)
    wait_for(lambda: len(series(agent.metrics(), "lifeline_icmp_responses_total")) == 510
             and min(v for k, v in series(agent.metrics(), "lifeline_icmp_responses_total").items()
                     if "hospital" in k) >= 2, 10, "P0 answering", interval=0.2)
    before = {k: v for k, v in series(agent.metrics(), "lifeline_icmp_requests_total").items() if "hospital" in k}
    stop, ok, errors = time.monotonic() + 6.0, [0], []

    def scrape():
        while time.monotonic() < stop:  # bounded in time
            try:
                with urllib.request.urlopen(agent.url + "/metrics", timeout=10) as resp:
                    resp.read()
                    ok[0] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=scrape) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    text = agent.metrics()
    after = {k: v for k, v in series(text, "lifeline_icmp_requests_total").items() if "hospital" in k}
    assert not errors and ok[0] > 50
    for k, v in after.items():
        assert (v - before[k]) / 2 >= int(elapsed) - 1, f"{k} lost cycles during the flood"
    assert sum(v for k, v in series(text, "lifeline_scheduler_skipped_cycles_total").items() if 'tier="P0"' in k) == 0
    assert value(text, "lifeline_target_up", target="hospital-1") == 1
