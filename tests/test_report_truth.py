"""`lifeline report` against a known truth, with every component real.

A real agent probes a netns host and a loopback host every second; a real
Prometheus (agent/devstack.py) scrapes it every second; the netns host is made
dark with nftables for a span measured here with time.time(). The report for a
range around it must show that span as the host's downtime, and the loopback
host at 100 %.

Tolerance, per edge of the outage and for its length: the agent sees the
darkness at its first failed cycle (up to one interval plus the timeout after
the drop rule is in place), Prometheus records it at its next scrape (up to
one scrape interval), and the report counts whole steps (one --step). The
same delays apply when the host comes back, so they mostly cancel in the
length; each edge alone can be off by all of them.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from agent.cli import main
from agent.devstack import Prometheus
from tests.helpers import require_root, wait_for

INTERVAL, TIMEOUT = 1.0, 0.3
SCRAPE = 1.0
STEP = 2.0  # 1s, equal to the scrape interval, leaves the odd 1s gap when a scrape lands late
DARK_FOR = 40.0
TOLERANCE = INTERVAL + TIMEOUT + SCRAPE + STEP

CONFIG = f"""\
tiers:
  P0: {{interval: {INTERVAL:g}s, timeout: {TIMEOUT * 1000:.0f}ms, packets: 2, packet_interval: 50ms}}
targets:
  - {{name: truth-dark, address: {{host}}, tier: P0, category: hospital, site: north}}
  - {{name: truth-loopback, address: 127.0.0.1, tier: P0, category: hospital, site: lab}}
"""


def _iso(ts: float, timespec: str = "seconds") -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec=timespec)


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_reported_downtime_matches_a_measured_outage(agent_factory, testnet, tmp_path):
    require_root()
    host = testnet.hosts[2]
    testnet.set_loss(host, 0)
    agent = agent_factory(CONFIG.replace("{host}", host))
    prom = Prometheus(str(tmp_path / "prom"), [agent.url.removeprefix("http://")], None,
                      scrape_interval=f"{SCRAPE:g}s", evaluation_interval=f"{SCRAPE:g}s").start()
    try:
        wait_for(lambda: len(prom.query('min_over_time(lifeline_target_up[5s]) == 1 '
                                        'and count_over_time(lifeline_target_up[5s]) >= 4')) == 2,
                 30, "five seconds of both targets up in Prometheus", interval=0.5)
        start = float(int(time.time()) - 4)  # whole seconds: the report's steps fall on them
        time.sleep(2)
        try:
            testnet.set_loss(host, 100)
            dark_at = time.time()  # the drop rule is in place
            time.sleep(DARK_FOR)
        finally:
            testnet.set_loss(host, 0)
        back_at = time.time()
        wait_for(lambda: prom.query('lifeline_target_up{target="truth-dark"} == 1'), 10,
                 "Prometheus to record the host back up", interval=0.2)
        end = float(int(time.time()) + 2 * STEP)  # the outage ends whole steps inside the range
        wait_for(lambda: time.time() > end + STEP + SCRAPE, 10, "the step after the range to be scraped")
        out = tmp_path / "report.json"
        assert main(["report", "--prometheus.url", prom.url, "--format", "json", "--output", str(out),
                     "--timezone", "UTC", "--start", _iso(start), "--end", _iso(end),
                     "--step", f"{STEP:g}s"]) == 0
    finally:
        prom.stop()
    data = json.loads(out.read_text())
    targets = {t["target"]: t for t in data["targets"]}
    dark, loopback = targets["truth-dark"], targets["truth-loopback"]
    span = back_at - dark_at
    outage = dark["outages"][0] if dark["outages"] else {}
    print(f"\nmeasured: dark {_iso(dark_at, 'milliseconds')} to {_iso(back_at, 'milliseconds')}, {span:.2f}s; "
          f"reported: downtime {dark['downtime_seconds']}s in {len(dark['outages'])} outage(s), "
          f"{outage.get('start')} to {outage.get('end')}; "
          f"no data {dark['no_data_seconds']}s / {loopback['no_data_seconds']}s")

    assert (loopback["availability"], loopback["downtime_seconds"], loopback["outages"]) == (1.0, 0, [])
    assert loopback["no_data_seconds"] == 0 and dark["no_data_seconds"] == 0, (loopback, dark)
    assert abs(dark["downtime_seconds"] - span) <= TOLERANCE, (dark["downtime_seconds"], span)
    assert len(dark["outages"]) == 1, dark["outages"]
    assert abs(_ts(outage["start"]) - dark_at) <= TOLERANCE, (outage["start"], _iso(dark_at))
    assert abs(_ts(outage["end"]) - back_at) <= TOLERANCE, (outage["end"], _iso(back_at))
    assert outage["duration_seconds"] == dark["downtime_seconds"]
    assert (outage["clipped_start"], outage["clipped_end"]) == (False, False)
    assert (outage["probes"], outage["reasons"]) == (["icmp"], ["icmp:timeout"])
    up = end - start - dark["downtime_seconds"]
    assert abs(dark["availability"] - up / (end - start)) < 1e-3, dark["availability"]
