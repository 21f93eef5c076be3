"""A big reload while P0 is probed: no missed P0 cycle, no counter reset, no stale series."""

from __future__ import annotations

import time

from tests.helpers import http_post, require_root, samples, series, wait_for

HEAD = """
tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 2, packet_interval: 20ms}
  P3: {interval: 10s, timeout: 500ms, packets: 1}
targets:
"""


def _targets(names_tiers):
    return "".join(f"  - {{name: {n}, address: 127.{2 + i // 60000}.{i // 250 % 240}.{i % 250 + 1}, tier: {t}}}\n"
                   for i, (n, t) in enumerate(names_tiers))


def _requests(text, tier="P3"):
    return {k.split('"')[1]: v for k, v in series(text, "lifeline_icmp_requests_total").items()
            if f'tier="{tier}"' in k.split(",")}


def _p0_requests(text):
    return _requests(text, "P0")


def test_reload_1000_to_900_added_925_removed(agent_factory, tmp_path):
    require_root()
    p0 = [(f"hospital-{i:02d}", "P0") for i in range(20)]
    kept = [(f"camera-kept-{i:03d}", "P3") for i in range(55)]
    removed = [(f"camera-old-{i:03d}", "P3") for i in range(925)]
    added = [(f"camera-new-{i:03d}", "P3") for i in range(900)]
    old, new = p0 + kept + removed, p0 + kept + added
    assert (len(old), len(set(old) - set(new)), len(set(new) - set(old))) == (1000, 925, 900)

    agent = agent_factory(HEAD + _targets(old))
    wait_for(lambda: len(_p0_requests(agent.metrics())) == 20 and min(_p0_requests(agent.metrics()).values()) >= 4,
             10, "P0 targets probed twice", interval=0.2)
    # Give each kept camera a first cycle so there are counters to preserve.
    wait_for(lambda: all(_requests(agent.metrics()).get(n, 0) >= 1 for n, _ in kept), 15,
             "kept cameras probed", interval=0.5)
    before_text = agent.metrics()
    before = samples(before_text)
    t0, p0_before = time.monotonic(), _p0_requests(before_text)

    (tmp_path / "lifeline.yaml").write_text(HEAD + _targets(new))
    status, body = http_post(agent.url + "/-/reload")
    assert status == 200, body
    assert b"900 jobs added, 925 removed, 75 kept" in body
    after_text = agent.metrics()  # the first scrape after the reload returned
    assert not any(f'target="{n}"' in after_text for n, _ in removed), "stale series of removed targets"
    after = samples(after_text)
    for (name, labels), value in before.items():
        target = dict(labels).get("target", "")
        if name.endswith("_total") and target.startswith(("hospital", "camera-kept")):
            assert after.get((name, labels), -1) >= value, f"{name}{dict(labels)} went backwards"

    # Added targets all start within one P3 interval (10 s) plus a cycle.
    def all_added_probed():
        seen = _requests(agent.metrics())
        return all(seen.get(n, 0) >= 1 for n, _ in added)
    wait_for(all_added_probed, 13, "every added target probed", interval=0.5)

    # P0 kept its 1 s cycle throughout: 2 echoes per second per target, no skipped cycle.
    final = agent.metrics()
    elapsed = time.monotonic() - t0
    p0_after = _p0_requests(final)
    for name, count in p0_after.items():
        cycles = (count - p0_before[name]) / 2
        assert cycles >= int(elapsed) - 1, f"{name}: {cycles} cycles in {elapsed:.1f}s"
    skipped = [v for k, v in series(final, "lifeline_scheduler_skipped_cycles_total").items() if 'tier="P0"' in k]
    assert sum(skipped) == 0
