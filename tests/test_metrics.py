"""The metrics layer: exposition validity (promtool), values, escaping and reload semantics."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest

from probes.base import ProbeResult
from probes.icmp.metrics import RTT_BUCKETS
from probes.icmp.result import IcmpResult
from probes.snmp.config import Secret, SnmpSettings
from probes.snmp.result import SnmpResult
from tests import kit
from tests.helpers import require_tool, samples, value


def _target(name="putuo-hospital", tier="P0", **kw):
    base = dict(category="hospital", site="putuo", labels=(("circuit_id", "ZS-MSTP-0036"),))
    base.update(kw)
    return kit.target(name, tier, **base)


def _store(*targets):
    return kit.StoreKit(*targets)


def _promtool_check(text: str) -> None:
    promtool = require_tool("promtool", "prometheus")
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_exposition_passes_promtool_and_has_the_contract():
    up, down = _target(), _target("gov-cloud", "P1", category="gov-cloud", site="dinghai")
    store = _store(up, down)
    store.record(up, "icmp", IcmpResult(ok=True, sent=5, rtts=(0.001, 0.002, 0.004, 0.003)), lag=0.002)
    store.record(down, "icmp", IcmpResult(ok=False, reason="timeout", sent=5, rtts=()), lag=0.001)
    text = store.render()
    _promtool_check(text)
    s = samples(text)
    assert value(s, "lifeline_target_up", target="putuo-hospital", tier="P0", category="hospital", site="putuo") == 1
    assert value(s, "lifeline_target_up", target="gov-cloud", tier="P1") == 0
    assert value(s, "lifeline_target_info", target="putuo-hospital", circuit_id="ZS-MSTP-0036",
                 address="127.0.0.1") == 1
    assert value(s, "lifeline_icmp_requests_total", target="putuo-hospital") == 5
    assert value(s, "lifeline_icmp_responses_total", target="putuo-hospital") == 4
    assert value(s, "lifeline_icmp_loss_ratio", target="putuo-hospital") == pytest.approx(0.2)
    assert value(s, "lifeline_icmp_loss_ratio", target="gov-cloud") == 1
    assert value(s, "lifeline_icmp_jitter_seconds", target="putuo-hospital") == pytest.approx((0.001 + 0.002 + 0.001) / 3)
    assert value(s, "lifeline_icmp_rtt_max_seconds", target="putuo-hospital") == pytest.approx(0.004)
    assert value(s, "lifeline_icmp_rtt_avg_seconds", target="gov-cloud") is None  # no reply, no RTT
    assert value(s, "lifeline_probe_failures_total", target="gov-cloud", reason="timeout") == 1
    assert value(s, "lifeline_tier_targets", tier="P0") == 1
    assert value(s, "lifeline_tier_loss_warn_ratio", tier="P0") == pytest.approx(0.02)
    assert value(s, "lifeline_scheduler_lag_seconds_count", tier="P0") == 1
    assert value(s, "lifeline_build_info") == 1
    assert value(s, "lifeline_target_consecutive_failures", target="gov-cloud") == 1
    assert value(s, "lifeline_target_consecutive_failures", target="putuo-hospital") is None  # only while failing
    assert value(s, "lifeline_tier_probe_interval_seconds", tier="P0", probe="icmp") == 5
    assert value(s, "lifeline_tier_probe_interval_seconds", tier="P0", probe="snmp") == 15
    # Exported from zero for every tier/probe in use, so increase() sees the first skip.
    assert value(s, "lifeline_scheduler_skipped_cycles_total", tier="P1", probe="icmp") == 0
    assert value(s, "lifeline_scheduler_skipped_cycles_total", tier="P3", probe="icmp") is None


def test_rtt_histogram_buckets_are_cumulative():
    t = _target()
    store = _store(t)
    rtts = (0.00004, 0.00006, 0.0002, 0.0002, 2.0)
    store.record(t, "icmp", IcmpResult(ok=True, sent=5, rtts=rtts), lag=0)
    s = samples(store.render())
    for bound in RTT_BUCKETS:
        expected = sum(r <= bound for r in rtts)
        got = [v for (n, ls), v in s.items() if n == "lifeline_icmp_rtt_seconds_bucket"
               and float(dict(ls)["le"]) == pytest.approx(bound)]
        assert got == [expected], bound
    assert value(s, "lifeline_icmp_rtt_seconds_count") == 5
    assert value(s, "lifeline_icmp_rtt_seconds_sum") == pytest.approx(sum(rtts))


def test_hostile_label_values_are_escaped():
    nasty = 'quote " backslash \\ newline \n 中文'
    t = _target(site=nasty, labels=(("contact", nasty),))
    store = _store(t)
    store.record(t, "icmp", IcmpResult(ok=True, sent=1, rtts=(0.001,)), lag=0)
    text = store.render()
    _promtool_check(text)
    assert value(text, "lifeline_target_info", contact=nasty, site=nasty) == 1


def test_reload_keeps_counters_of_unchanged_targets_and_drops_removed_ones():
    keep, gone = _target("keep"), _target("gone")
    store = _store(keep, gone)
    for _ in range(3):
        store.record(keep, "icmp", IcmpResult(ok=True, sent=5, rtts=(0.001,) * 5), lag=0)
        store.record(gone, "icmp", IcmpResult(ok=True, sent=5, rtts=(0.001,) * 5), lag=0)
    relabelled = replace(keep, site="dinghai")
    store.apply(kit.config(relabelled, _target("new")))
    text = store.render()
    assert value(text, "lifeline_icmp_requests_total", target="keep") == 15
    assert value(text, "lifeline_target_up", target="keep", site="dinghai") == 1
    assert value(text, "lifeline_icmp_requests_total", target="gone") is None
    assert "gone" not in text
    assert value(text, "lifeline_icmp_requests_total", target="new") == 0


def test_exposition_is_cached_until_invalidated():
    t = _target()
    store = _store(t)
    expo = store.exposition(min_age=3600)
    first = expo.get()
    store.record(t, "icmp", IcmpResult(ok=True, sent=1, rtts=(0.001,)), lag=0)
    assert expo.get() is first  # scrape storms cost one render
    expo.invalidate()
    assert expo.get() != first


def test_snmp_only_target_up_follows_its_probe():
    t = _target("switch", probes=("snmp",), settings=(("snmp", SnmpSettings(community=Secret("x"))),))
    store = _store(t)
    store.record(t, "snmp", SnmpResult(ok=False, reason="auth"), lag=0)
    text = store.render()
    assert value(text, "lifeline_target_up", target="switch") == 0
    assert value(text, "lifeline_probe_failures_total", target="switch", probe="snmp", reason="auth") == 1
    assert value(text, "lifeline_snmp_up", target="switch") == 0


def test_a_crashed_cycle_counts_as_internal_for_any_kind():
    """The scheduler reports a probe that raised as a plain ProbeResult; no kind may choke on it."""
    t = _target("both", probes=("icmp", "snmp"), settings=(("snmp", SnmpSettings(community=Secret("x"))),))
    store = _store(t)
    for kind in ("icmp", "snmp"):
        store.record(t, kind, ProbeResult(ok=False, reason="internal"), lag=0)
    text = store.render()
    assert value(text, "lifeline_target_up", target="both") == 0
    assert value(text, "lifeline_probe_failures_total", target="both", probe="snmp", reason="internal") == 1
    assert value(text, "lifeline_snmp_up", target="both") == 0
    assert value(text, "lifeline_icmp_requests_total", target="both") == 0
