"""Cost of the status page's snapshot at 10,000 targets, beside a fresh /metrics render of the same store.

In one process, no network: a store of N ICMP targets (a tenth of them down,
a tenth lossy), each with one result recorded, then the snapshot that
/status.json serves (built from scratch, JSON-encoded) and the /metrics text
(joined from the per-target fragments), each timed over several runs. The
page itself is that JSON inlined into a fixed template. Both hold the GIL the
whole time, so the figure is also how long the probe loop can wait behind a
fresh build (at most one every 2 s, however many screens refresh).

    .venv/bin/python bench/bench_status.py [--targets 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.config import DEFAULT_TIERS, Config  # noqa: E402
from benchlib import machine  # noqa: E402
from agent.exposition import AgentStatus, Exposition, Renderer  # noqa: E402
from agent.reload import Plan  # noqa: E402
from agent.status import StatusBoard, page  # noqa: E402
from agent.store import MetricsStore  # noqa: E402
from common.model import Target  # noqa: E402
from probes.icmp.result import IcmpResult  # noqa: E402
from probes.registry import KINDS  # noqa: E402

TIERS = ("P0", "P1", "P2", "P3")


def build(n: int) -> tuple[MetricsStore, AgentStatus]:
    targets = tuple(Target(name=f"cam-{i:05d}", address=f"127.{i // 65536}.{i // 256 % 256}.{i % 256}",
                           tier=TIERS[i % 4], category="checkpoint", site=f"county-{i % 40}",
                           labels=(("circuit_id", f"ZS-CAM-{i:05d}"), ("carrier", "telecom")), probes=("icmp",))
                    for i in range(n))
    store = MetricsStore(KINDS)
    store.apply(Plan.between(None, Config(tiers=dict(DEFAULT_TIERS), targets=targets)))
    for i, state in enumerate(store.targets.values()):
        if i % 10 == 0:
            result = IcmpResult(ok=False, reason="timeout", sent=3)
        elif i % 10 == 1:
            result = IcmpResult(ok=True, sent=3, rtts=(0.001,))
        else:
            result = IcmpResult(ok=True, sent=3, rtts=(0.0001, 0.0002, 0.0001))
        store.record(state, "icmp", result, 0.001)
        store.record(state, "icmp", result, 0.001)
    return store, AgentStatus(version="bench")


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    store, status = build(args.targets)
    board = StatusBoard(store, KINDS, status, min_age=0)
    expo = Exposition(Renderer(store, KINDS, status), min_age=0)
    body = board.json()
    status_times = timed(board.json, args.runs)
    problems = StatusBoard(store, KINDS, status, min_age=0)
    problems.json(True)
    page_times = timed(lambda: page(problems.json(True)), args.runs)
    metrics_times = timed(lambda: expo.get(False), args.runs)
    med = statistics.median
    rows = [
        ("/status.json fresh build (median / max)", f"{med(status_times) * 1000:.1f} / {max(status_times) * 1000:.1f} ms"),
        ("/ (page, and the page's refresh: targets not up) fresh build (median)",
         f"{med(page_times) * 1000:.1f} ms"),
        ("/metrics fresh render, plain (median)", f"{med(metrics_times) * 1000:.1f} ms"),
        ("status.json size", f"{len(body) / 1024:.0f} KiB"),
        ("ratio status.json / metrics", f"{med(status_times) / med(metrics_times):.2f}"),
    ]
    table = "| | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    print(table)
    entry = (f"\n## {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC — status page, {machine()}\n\n"
             f"`.venv/bin/python bench/bench_status.py --targets {args.targets} --runs {args.runs}`: {args.targets} ICMP "
             f"targets, a tenth down and a tenth lossy, one process, no network; each target's JSON cached "
             f"between builds, as in the agent.\n\n{table}\n")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results.md"), "a") as fh:
        fh.write(entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
