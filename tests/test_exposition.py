"""Pre-formatted per-target fragments: they follow results and reloads, and both encodings agree."""

from __future__ import annotations

import gzip
import random

import pytest

from common.secrets import Secret
from probes.base import ProbeResult, TlsInfo
from probes.icmp.result import IcmpResult
from probes.snmp.config import SnmpSettings
from probes.snmp.result import IfRow, SnmpResult
from tests import kit
from tests.helpers import samples, value

_target = kit.target
_config = kit.config


def _ok(sent, rtt=0.001):
    return IcmpResult(ok=True, sent=sent, rtts=(rtt,) * sent)


def test_results_after_a_reordering_reload_land_on_their_own_target():
    a, b, c = _target("a"), _target("b"), _target("c")
    store = kit.StoreKit(a, b, c)
    for t, n in ((a, 1), (b, 2), (c, 3)):
        store.record(t, "icmp", _ok(n), lag=0)
    d = _target("d")
    store.apply(_config(d, c, a))  # b removed, order changed, d new in front
    store.record(a, "icmp", _ok(10), lag=0)
    store.record(d, "icmp", _ok(4), lag=0)
    s = samples(store.render())
    assert value(s, "lifeline_icmp_requests_total", target="a") == 11
    assert value(s, "lifeline_icmp_requests_total", target="c") == 3
    assert value(s, "lifeline_icmp_requests_total", target="d") == 4
    assert value(s, "lifeline_icmp_requests_total", target="b") is None
    assert value(s, "lifeline_icmp_rtt_seconds_count", target="a") == 11


def test_a_tier_without_the_rtt_histogram_keeps_every_other_series_and_a_reload_turns_it_on_and_off():
    cams, hosp = _target("cam", tier="P3"), _target("hosp", tier="P0")
    off = kit.tiers()
    off["P3"] = kit.retier(off["P3"], rtt_histogram=False)
    store = kit.StoreKit()
    store.apply(_config(hosp, cams, tier_map=off))
    for t in (hosp, cams):
        store.record(t, "icmp", _ok(3), lag=0)
    s = samples(store.render())
    assert value(s, "lifeline_icmp_rtt_seconds_count", target="hosp") == 3
    assert not [k for k in s if k[0].startswith("lifeline_icmp_rtt_seconds") and ("target", "cam") in k[1]]
    for family in ("lifeline_icmp_requests_total", "lifeline_icmp_responses_total"):
        assert value(s, family, target="cam") == 3
    assert value(s, "lifeline_icmp_loss_ratio", target="cam") == 0
    assert value(s, "lifeline_icmp_rtt_avg_seconds", target="cam") == pytest.approx(0.001)
    # The same targets (a "kept" reload), the tier's histogram on again: its lines are back at
    # once, counting from zero, and the counters carried on.
    plan = store.apply(_config(hosp, cams))
    assert plan.retiered == {"cam"} and set(plan.kept) == {"hosp", "cam"}
    s = samples(store.render())
    assert value(s, "lifeline_icmp_rtt_seconds_count", target="cam") == 0
    store.record(cams, "icmp", _ok(3), lag=0)
    s = samples(store.render())
    assert value(s, "lifeline_icmp_rtt_seconds_count", target="cam") == 3
    assert value(s, "lifeline_icmp_requests_total", target="cam") == 6
    assert value(s, "lifeline_icmp_rtt_seconds_count", target="hosp") == 3  # its tier did not change
    # And off again: gone at once, not at the next result.
    store.apply(_config(hosp, cams, tier_map=off))
    s = samples(store.render())
    assert value(s, "lifeline_icmp_rtt_seconds_count", target="cam") is None
    assert value(s, "lifeline_icmp_requests_total", target="cam") == 6


def test_percent_signs_in_labels_survive_formatting():
    t = _target("100%-uptime", site="%s%d%%", labels=(("note", "50% %(x)s"),))
    store = kit.StoreKit(t)
    store.record(t, "icmp", _ok(2, 0.0003), lag=0)
    s = samples(store.render())
    assert value(s, "lifeline_target_info", target="100%-uptime", site="%s%d%%", note="50% %(x)s") == 1
    assert value(s, "lifeline_icmp_rtt_seconds_bucket", target="100%-uptime", le="0.0004") == 2


def test_gzip_and_plain_bodies_hold_the_same_exposition():
    targets = [_target(f"t{i}") for i in range(50)]
    store = kit.StoreKit(*targets, clock=lambda: 1000.0)
    for t in targets:
        store.record(t, "icmp", _ok(3), lag=0.001)
    expo = store.exposition(min_age=3600)
    plain = expo.get()
    zipped = expo.get(gzipped=True)
    assert expo.get(gzipped=True) is zipped  # cached like the plain body
    unzipped = gzip.decompress(zipped)
    # Process metrics are sampled at each render; everything Lifeline's own must match.
    assert unzipped.split(b"# HELP process_")[0] == plain.split(b"# HELP process_")[0]


def _tallies_from_target_series(text: str) -> dict[tuple[str, ...], float]:
    """What the per-tier tallies must say, counted from the per-target series of the same body."""
    want: dict[tuple[str, ...], float] = {}
    for (name, ls), v in samples(text).items():
        lab = dict(ls)
        if name == "lifeline_target_up":
            key = ("lifeline_tier_targets_up" if v else "lifeline_tier_targets_down", lab["tier"])
            want[key] = want.get(key, 0) + 1
        elif name == "lifeline_target_info":
            key = ("lifeline_tier_targets", lab["tier"])
            want[key] = want.get(key, 0) + 1
        elif name == "lifeline_probe_success":
            key = ("lifeline_tier_probes_failing", lab["tier"], lab["probe"])
            want[key] = want.get(key, 0) + (v == 0)
        elif name == "lifeline_probe_last_run_timestamp_seconds":
            key = ("lifeline_tier_probe_last_run_timestamp_seconds", lab["tier"], lab["probe"])
            want[key] = max(want.get(key, 0.0), v)
    return want


def _tallies_exported(text: str) -> dict[tuple[str, ...], float]:
    got: dict[tuple[str, ...], float] = {}
    for (name, ls), v in samples(text).items():
        lab = dict(ls)
        if name in ("lifeline_tier_targets", "lifeline_tier_targets_up", "lifeline_tier_targets_down"):
            if v:  # a tier with no such target exports 0; the per-target series have nothing to count
                got[(name, lab["tier"])] = v
        elif name in ("lifeline_tier_probes_failing", "lifeline_tier_probe_last_run_timestamp_seconds"):
            got[(name, lab["tier"], lab["probe"])] = v
    return got


@pytest.mark.parametrize("seed", range(6))
def test_per_tier_tallies_and_rows_agree_with_the_targets_through_results_and_reloads(seed):
    """The rules count down targets and find stale probes from the agent's per-tier tallies, kept
    as results arrive: after any run of results and reloads (targets removed, moved to another tier,
    given another probe) they must say what the per-target series say; the rows a scrape joins
    must hold each target's full lines."""
    rng = random.Random(seed)
    clock = iter(range(1_000_000, 2_000_000)).__next__
    names = [f"t{i}" for i in range(12)]

    def draw() -> list:
        return [_target(n, tier=rng.choice(("P0", "P1", "P3")), probes=rng.choice((("icmp",), ("icmp", "tcp"))))
                for n in rng.sample(names, rng.randint(4, len(names)))]

    targets = draw()
    store = kit.StoreKit(*targets, clock=lambda: float(clock()))
    for step in range(300):
        if rng.random() < 0.05:
            targets = draw()
            store.apply(_config(*targets))
        t = rng.choice(targets)
        kind = rng.choice(t.probes)
        ok = rng.random() < 0.6
        # Durations, phases and certificates vary: a steady success rewrites only some of the
        # core lines (store.record), and the check below must see a line it forgot.
        duration = round(rng.random(), 3)
        if kind == "icmp":
            result = (IcmpResult(ok=True, sent=3, rtts=(0.001,) * 3, duration=duration) if ok else
                      IcmpResult(ok=False, reason="timeout", sent=3, rtts=(), duration=duration))
        else:
            tls = TlsInfo(not_after=float(rng.randint(1, 3)), subject="CN=a", issuer="CN=b", serial="01")
            result = ProbeResult(ok=ok, reason=None if ok else "refused", duration=duration,
                                 phases=(("connect", duration / 2),), tls=tls if rng.random() < 0.3 else None)
        store.record(t, kind, result, lag=0)
        if step % 25 == 0 or step == 299:
            text = store.render()
            want = {k: v for k, v in _tallies_from_target_series(text).items() if v}
            got = {k: v for k, v in _tallies_exported(text).items() if v}
            assert got == want, f"step {step}"
            # A reload hands a kept target the lines it had in the old rows (new targets get
            # theirs formatted): what the rows hold must be every target's full set of lines.
            for state in store.store.targets.values():
                rows = [row[state.index] for row in store.store.core_rows]
                assert rows == state.core_fragments(), f"step {step}, {state.target.name}"
                for kind, kstate in state.kinds.items():
                    owner = store.store.kinds[kind]
                    rows = [row[state.slot(kind)] for row in store.store.kind_rows[kind]]
                    assert rows == list(owner.fragments(kstate, state.key)), f"step {step}, {state.target.name}"
    assert any(k[0] == "lifeline_tier_targets_down" for k in got)  # the run did fail some targets


def test_consecutive_failures_carry_the_labels_of_up():
    """The down alert reads lifeline_target_consecutive_failures alone: it needs up's category and
    site (Alertmanager groups pages by site), with the vantage label when there is one."""
    t = _target("hosp", category="hospital", site="north")
    store = kit.StoreKit(t)
    store.record(t, "icmp", IcmpResult(ok=False, reason="timeout", sent=3, rtts=()), lag=0)
    store.record(t, "icmp", IcmpResult(ok=False, reason="timeout", sent=3, rtts=()), lag=0)
    s = samples(store.render())
    up = [ls for (n, ls) in s if n == "lifeline_target_up"]
    failures = [(ls, v) for (n, ls), v in s.items() if n == "lifeline_target_consecutive_failures"]
    assert failures == [(up[0], 2)] and dict(up[0])["site"] == "north"
    store.record(t, "icmp", _ok(3), lag=0)
    text = store.render()  # up again: the series goes, as an alert's does (the rules read it every 5 s)
    assert value(text, "lifeline_target_consecutive_failures", target="hosp") is None
    assert value(text, "lifeline_target_up", target="hosp") == 1


def test_icmp_counters_carry_category_and_site_and_follow_a_move():
    """The loss window and the SLA buckets take category and site from the two counters (no join
    on lifeline_target_info): a target moved to another site must be counted there."""
    t = _target("cam", category="checkpoint", site="putuo")
    store = kit.StoreKit(t)
    store.record(t, "icmp", _ok(3), lag=0)
    assert value(store.render(), "lifeline_icmp_requests_total", target="cam", category="checkpoint",
                 site="putuo") == 3
    moved = _target("cam", category="checkpoint", site="dinghai")
    store.apply(_config(moved))
    store.record(moved, "icmp", _ok(3), lag=0)
    s = samples(store.render())
    assert value(s, "lifeline_icmp_responses_total", target="cam", site="dinghai") == 6  # counters carried
    assert value(s, "lifeline_icmp_requests_total", site="putuo") is None


# Per-target families that alert rules read without a join on lifeline_target_info: each carries the
# target's category and site (Alertmanager routes and groups pages by site). tests/test_rules.py
# accepts an alert on one of these; the test below holds the agent to it.
SITED_FAMILIES = ("lifeline_target_up", "lifeline_target_consecutive_failures", "lifeline_icmp_requests_total",
                  "lifeline_icmp_responses_total", "lifeline_tls_cert_not_after_timestamp_seconds",
                  "lifeline_snmp_if_oper_status", "lifeline_snmp_reboots_total")


def test_the_families_alerts_read_carry_category_and_site_and_follow_a_move():
    settings = (("snmp", SnmpSettings(community=Secret("x"))),)
    probes = ("icmp", "snmp", "http")

    def target(site):
        return _target("rtr", category="router", site=site, probes=probes, settings=settings)

    def feed(t):  # a failing ICMP cycle: lifeline_target_consecutive_failures exists only while failing
        store.record(t, "icmp", IcmpResult(ok=False, reason="timeout", sent=3, rtts=()), lag=0)
        store.record(t, "http", ProbeResult(ok=True, tls=TlsInfo(not_after=1e9, subject="CN=a", issuer="CN=b",
                                                                   serial="01")), lag=0)
        store.record(t, "snmp", SnmpResult(ok=True, sys_uptime=5.0, rebooted=True, interfaces=(
            IfRow(ifindex=2, ifname="ge-0/0/1", ifdescr="", ifalias="", admin=1, oper=2),)), lag=0)

    t = target("north")
    store = kit.StoreKit(t)
    feed(t)
    s = samples(store.render())
    for family in SITED_FAMILIES:
        found = [dict(ls) for (n, ls) in s if n == family]
        assert found and all(ls.get("category") == "router" and ls.get("site") == "north" for ls in found), family
    moved = target("east")
    store.apply(_config(moved))  # same name and tier, another site: state carried, labels follow
    s = samples(store.render())
    assert not [n for (n, ls) in s if n in SITED_FAMILIES and dict(ls).get("site") == "north"]
    feed(moved)
    s = samples(store.render())
    for family in SITED_FAMILIES:
        assert [ls for (n, ls) in s if n == family and dict(ls).get("site") == "east"], family
    assert value(s, "lifeline_snmp_reboots_total", target="rtr", site="east") == 2  # the counter carried on
