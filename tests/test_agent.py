"""The real agent process: probing, endpoints, reload paths and shutdown."""

from __future__ import annotations

import gzip
import subprocess
import time

import pytest

from tests.helpers import http_get, http_post, require_tool, samples, value, wait_for

pytestmark = pytest.mark.usefixtures("needs_root")


FAST = """
tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 3, packet_interval: 20ms}
  P1: {interval: 1s, timeout: 300ms, packets: 3, packet_interval: 20ms}
  P2: {interval: 2s, timeout: 300ms, packets: 2}
"""


def _config(targets: str) -> str:
    return FAST + "targets:\n" + targets


LOOPBACK = """  - {name: putuo-hospital, address: 127.0.0.1, tier: P0, category: hospital, site: putuo, labels: {circuit_id: ZS-1}}
  - {name: hotline-v6, address: "::1", tier: P1, category: hotline, site: dinghai}
  - {name: camera-7, address: 127.0.3.7, tier: P2, category: checkpoint, site: shenjiamen}
"""


def _up(agent, **labels):
    return value(agent.metrics(), "lifeline_target_up", **labels)


def test_p0_up_within_one_interval_and_metrics_pass_promtool(agent_factory):
    started = time.monotonic()
    agent = agent_factory(_config(LOOPBACK))
    wait_for(lambda: _up(agent, tier="P0", target="putuo-hospital") == 1, 1.0 + 2.0, "P0 target up")
    # One interval (1 s) plus one cycle and one render period at most.
    assert time.monotonic() - started < 6
    wait_for(lambda: _up(agent, target="hotline-v6") == 1 and _up(agent, target="camera-7") == 1, 6, "all up")
    text = agent.metrics()
    promtool = require_tool("promtool", "prometheus")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = samples(text)
    assert value(s, "lifeline_icmp_loss_ratio", target="putuo-hospital") == 0
    assert 0 < value(s, "lifeline_icmp_rtt_avg_seconds", target="putuo-hospital") < 0.01
    assert value(s, "lifeline_target_info", target="putuo-hospital", circuit_id="ZS-1") == 1


def test_endpoints(agent_factory):
    agent = agent_factory(_config(LOOPBACK))
    assert http_get(agent.url + "/-/healthy") == (200, b"Healthy\n")
    assert http_get(agent.url + "/-/ready")[0] == 200
    status, body = http_get(agent.url + "/")
    assert status == 200 and b'href="/metrics"' in body
    assert http_get(agent.url + "/-/reload")[0] == 405  # reload needs POST
    assert http_get(agent.url + "/nope")[0] == 404
    status, body = http_get(agent.url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and b"lifeline_build_info" in gzip.decompress(body)


def test_dark_host_is_down_with_reason_timeout(agent_factory, testnet):
    host = testnet.hosts[5]
    testnet.set_loss(host, 100)
    try:
        agent = agent_factory(_config(f"  - {{name: dark-clinic, address: {host}, tier: P0}}\n"
                                      f"  - {{name: lo, address: 127.0.0.1, tier: P0}}\n"))
        wait_for(lambda: value(agent.metrics(), "lifeline_probe_failures_total", target="dark-clinic",
                               reason="timeout"), 6, "timeout failure counted")
        text = agent.metrics()
        assert value(text, "lifeline_target_up", target="dark-clinic") == 0
        assert value(text, "lifeline_icmp_loss_ratio", target="dark-clinic") == 1
        assert value(text, "lifeline_target_up", target="lo") == 1
    finally:
        testnet.set_loss(host, 0)


def test_reload_by_post_and_sighup_and_invalid_file_keeps_old(agent_factory, tmp_path):
    agent = agent_factory(_config(LOOPBACK))
    path = tmp_path / "lifeline.yaml"
    wait_for(lambda: _up(agent, target="putuo-hospital") == 1, 5, "first cycle")
    before = value(agent.metrics(), "lifeline_icmp_requests_total", target="putuo-hospital")

    path.write_text(_config(LOOPBACK + "  - {name: new-clinic, address: 127.0.0.77, tier: P2}\n"))
    status, body = http_post(agent.url + "/-/reload")
    assert status == 200 and b"1 jobs added" in body
    wait_for(lambda: _up(agent, target="new-clinic") == 1, 5, "added target probed")
    # The unchanged target kept its counters.
    assert value(agent.metrics(), "lifeline_icmp_requests_total", target="putuo-hospital") >= before

    path.write_text(_config(LOOPBACK.replace("tier: P2", "tier: P7")))
    status, body = http_post(agent.url + "/-/reload")
    assert status == 500 and b"targets[2].tier: unknown tier 'P7'" in body
    text = agent.metrics()
    assert value(text, "lifeline_config_last_reload_successful") == 0
    assert value(text, "lifeline_target_up", target="new-clinic") == 1  # old config still serving
    assert "targets[2].tier" in agent.log()

    path.write_text(_config(LOOPBACK))  # drop new-clinic, by signal this time
    agent.reload_signal()
    wait_for(lambda: "new-clinic" not in agent.metrics(), 5, "removed target gone from /metrics")
    assert value(agent.metrics(), "lifeline_config_last_reload_successful") == 1


def test_reload_of_a_tier_turns_its_rtt_histogram_off_and_on_and_keeps_its_counters(agent_factory, tmp_path):
    agent = agent_factory(_config(LOOPBACK))
    path = tmp_path / "lifeline.yaml"

    def counts():
        s = samples(agent.metrics())
        return (value(s, "lifeline_icmp_rtt_seconds_count", target="camera-7"),
                value(s, "lifeline_icmp_requests_total", target="camera-7"),
                value(s, "lifeline_icmp_rtt_seconds_count", target="putuo-hospital"))

    wait_for(lambda: (counts()[0] or 0) >= 2, 6, "camera-7's first cycle in its histogram")
    path.write_text(_config(LOOPBACK).replace("  P2: {interval: 2s, timeout: 300ms, packets: 2}",
                                              "  P2: {interval: 2s, timeout: 300ms, packets: 2, rtt_histogram: false}"))
    _, sent, hosp = counts()
    agent.reload_signal()
    # Gone with the reload itself, not with camera-7's next result; the other tiers keep theirs.
    wait_for(lambda: counts()[0] is None, 5, "camera-7's histogram gone")
    hist, requests, hosp_after = counts()
    assert requests >= sent and hosp_after >= hosp
    wait_for(lambda: counts()[1] >= requests + 2, 6, "camera-7 still probed")
    assert counts()[0] is None
    path.write_text(_config(LOOPBACK))
    agent.reload_signal()
    wait_for(lambda: (counts()[0] or 0) >= 2, 6, "camera-7's histogram back, counting")
    assert counts()[1] >= requests + 2  # the counter carried through both reloads


def test_reload_that_drops_most_p0_targets_is_refused_unless_intended(agent_factory, tmp_path):
    p0 = "".join(f"  - {{name: hospital-{i}, address: 127.0.5.{i}, tier: P0}}\n" for i in range(1, 9))
    agent = agent_factory(_config(p0))
    path = tmp_path / "lifeline.yaml"
    truncated = "".join(p0.splitlines(keepends=True)[:2])  # an admin's editor saved 2 of 8 lines
    path.write_text(_config(truncated))
    status, body = http_post(agent.url + "/-/reload")
    assert status == 500
    assert b"refused: 6 of 8 P0 targets (75%) would leave P0" in body
    text = agent.metrics()
    assert value(text, "lifeline_config_last_reload_successful") == 0
    assert value(text, "lifeline_tier_targets", tier="P0") == 8
    path.write_text("reload: {p0_drop_intended: true}\n" + _config(truncated))
    status, body = http_post(agent.url + "/-/reload")
    assert status == 200, body
    wait_for(lambda: value(agent.metrics(), "lifeline_tier_targets", tier="P0") == 2, 5, "P0 shrunk to 2")


def test_file_watch_reloads_on_change(agent_factory, tmp_path):
    agent = agent_factory(_config(LOOPBACK), extra_args=["--config.watch-interval", "200ms"])
    path = tmp_path / "lifeline.yaml"
    path.write_text(_config(LOOPBACK + "  - {name: watched, address: 127.0.0.88, tier: P1}\n"))
    wait_for(lambda: _up(agent, target="watched") == 1, 8, "watched file change to be applied")
    assert '"trigger": "file_change"' in agent.log()


def test_sigterm_stops_fast(agent_factory):
    agent = agent_factory(_config(LOOPBACK))
    started = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - started < 3
