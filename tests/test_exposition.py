"""Pre-formatted per-target fragments: they follow results and reloads, and both encodings agree."""

from __future__ import annotations

import gzip

from probes.icmp.result import IcmpResult
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
