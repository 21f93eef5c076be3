#!/usr/bin/env python3
"""Soak: thousands of loopback targets, reloads adding/removing hundreds, constant scraping.

Reports RSS, open file descriptors and asyncio tasks of the agent after warm-up
and at the end, and fails (exit 1) if any of them grows beyond its allowance.
Loopback only (127.0.0.0/8); every loop is bounded in time.

    .venv/bin/python bench/soak.py --minutes 10 --targets 3000 --churn 400
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = """
tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 2, packet_interval: 20ms}
  P2: {interval: 10s, timeout: 500ms, packets: 3, packet_interval: 50ms}
targets:
"""


def address(i: int) -> str:
    return f"127.{20 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


def config(names: list[str]) -> str:
    lines = [f"  - {{name: hospital-{i:02d}, address: 127.9.0.{i + 1}, tier: P0}}\n" for i in range(20)]
    lines += [f"  - {{name: {n}, address: {address(int(n.split('-')[1]))}, tier: P2}}\n" for n in names]
    return HEAD + "".join(lines)


def proc_stats(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def lag_quantiles(text: str, tier: str = "P0") -> tuple[float, float, float]:
    """p50, p99 and max bucket bound of the tier's scheduler lag histogram."""
    buckets = []
    for line in text.splitlines():
        if line.startswith("lifeline_scheduler_lag_seconds_bucket{") and f'tier="{tier}"' in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan"), float("nan"), float("nan")
    q = [next(b for b, c in buckets if c >= total * f) for f in (0.5, 0.99)]
    worst = next(b for b, c in buckets if c >= total)
    return q[0], q[1], worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--targets", type=int, default=3000)
    ap.add_argument("--churn", type=int, default=400, help="targets removed and added per reload")
    ap.add_argument("--reload-every", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=60.0)
    ap.add_argument("--port", type=int, default=19400)
    args = ap.parse_args()

    rng = random.Random(7)
    pool = list(range(args.targets * 3))
    current = sorted(rng.sample(pool, args.targets))
    workdir = tempfile.mkdtemp(prefix="lifeline-soak-")
    path = os.path.join(workdir, "soak.yaml")
    with open(path, "w") as fh:
        fh.write(config([f"camera-{i}" for i in current]))
    url = f"http://127.0.0.1:{args.port}"
    log = open(os.path.join(workdir, "agent.log"), "wb")
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config.file", path,
                              "--web.listen-address", f"127.0.0.1:{args.port}", "--log.level", "warn",
                              "--log.format", "json"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + args.minutes * 60
    stop = threading.Event()
    scrapes = [0, 0]  # ok, failed

    def scraper() -> None:
        while not stop.is_set() and time.monotonic() < deadline + 30:
            try:
                scrape(url + "/metrics")
                scrapes[0] += 1
            except OSError:
                scrapes[1] += 1
            stop.wait(0.5)

    try:
        for _ in range(200):
            try:
                if scrape(url + "/-/ready"):
                    break
            except OSError:
                time.sleep(0.1)
        threading.Thread(target=scraper, daemon=True).start()
        samples: list[tuple[float, float, int, float]] = []
        reloads = failed_reloads = 0
        started = time.monotonic()
        next_reload = started + args.reload_every
        next_sample = started
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if agent.poll() is not None:
                print(f"agent exited with {agent.returncode}; log in {workdir}", file=sys.stderr)
                return 1
            now = time.monotonic()
            if now >= next_reload:
                keep = set(rng.sample(current, len(current) - args.churn))
                fresh = rng.sample([i for i in pool if i not in keep], args.churn)
                current = sorted(keep | set(fresh))
                with open(path, "w") as fh:
                    fh.write(config([f"camera-{i}" for i in current]))
                req = urllib.request.Request(url + "/-/reload", data=b"", method="POST")
                try:
                    urllib.request.urlopen(req, timeout=60).read()
                    reloads += 1
                except OSError:
                    failed_reloads += 1
                next_reload = now + args.reload_every
            if now >= next_sample:
                next_sample = now + 10.0
                rss, fds = proc_stats(agent.pid)
                tasks = metric(scrape(url + "/metrics"), "lifeline_asyncio_tasks")
                samples.append((now - started, rss, fds, tasks))
        text = scrape(url + "/metrics")
    finally:
        stop.set()
        agent.terminate()
        agent.wait(15)
    warm = [s for s in samples if s[0] >= args.warmup]
    if len(warm) < 2:
        print("run too short to compare after warm-up", file=sys.stderr)
        return 1
    first, last = warm[0], warm[-1]
    skipped_p0 = sum(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("lifeline_scheduler_skipped_cycles_total") and 'tier="P0"' in line)
    print(f"soak: {args.targets} targets, {args.minutes:g} min, {reloads} reloads (+{args.churn}/-{args.churn} "
          f"each, {failed_reloads} failed), {scrapes[0]} scrapes ({scrapes[1]} failed), P0 skipped cycles "
          f"{skipped_p0:g}")
    p50, p99, worst = lag_quantiles(text)
    print(f"P0 scheduler lag (histogram bucket bounds): p50 <= {p50:g}s, p99 <= {p99:g}s, max <= {worst:g}s")
    print(f"{'':10}{'t (s)':>8}{'RSS MiB':>10}{'fds':>6}{'tasks':>7}")
    for label, s in (("warm", first), ("end", last)):
        print(f"{label:10}{s[0]:8.0f}{s[1]:10.1f}{s[2]:6d}{s[3]:7.0f}")
    # The whole series, one sample a minute: a plateau and a slow leak look alike in two points.
    print("RSS MiB by minute:", " ".join(f"{s[1]:.0f}" for s in samples[::6]))
    problems = []
    if last[1] > first[1] * 1.15 + 5:
        problems.append(f"RSS grew {first[1]:.1f} -> {last[1]:.1f} MiB")
    if last[2] > first[2] + 5:
        problems.append(f"fds grew {first[2]} -> {last[2]}")
    if last[3] > first[3] + 50:
        problems.append(f"tasks grew {first[3]:.0f} -> {last[3]:.0f}")
    if failed_reloads or scrapes[1] or skipped_p0:
        problems.append("reload or scrape failures, or skipped P0 cycles")
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
