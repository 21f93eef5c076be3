#!/usr/bin/env python3
"""Scale-out: N shards of one ICMP config behind one Prometheus with the shipped rules, on loopback only.

    .venv/bin/python bench/bench_scaleout.py                         # 3 x 10,000 targets, 5 min (about 7.5 min)
    .venv/bin/python bench/bench_scaleout.py --targets 3000 --minutes 1   # a smoke run

One configuration of ``--targets`` loopback targets (127.20.x.y, checked to be
in 127.0.0.0/8) on the built-in tiers in a realistic mix (2 % P0, 8 % P1, 40 %
P2, 50 % P3, with category, site and circuit id labels), run as
``lifeline run --shard.index I --shard.count N`` for I = 0 .. N-1, all at once.
Prometheus (Debian's, through agent/devstack.py) loads rules/lifeline.rules.yml
unchanged (each group at its own interval) and scrapes every agent every
``--scrape-interval`` (5 s, as deploy/prometheus.yml).

After ``--warmup`` seconds (every target has run a cycle, every rule group has
evaluated), a window of ``--minutes`` measures:

* per agent: peak RSS, a lone fresh ``/metrics`` scrape (gzip) at each end of
  the window, scheduler lag p50/p99 and echoes/s against the rate its shard's
  tiers ask for (deltas of its own metrics), skipped cycles, CPU;
* Prometheus: samples appended per second (the window's mean and the highest
  1-minute rate), head series, CPU and peak RSS; for each rule group its
  ``prometheus_rule_group_last_duration_seconds`` (polled every 5 s; median and
  max over the evaluations made in the window, each counted once by its
  ``..._last_evaluation_timestamp_seconds``) and missed iterations, and the
  costliest rules by the ``evaluationTime`` of /api/v1/rules (max over the
  window's evaluations, polled every 15 s); Prometheus's GC cycles and the CPU
  the hypervisor stole from the VM; the agents' scrape
  durations (``scrape_duration_seconds``, mean and max over the window);
* the machine: load average (1 min, max over the run) beside the CPU count.

Then the agents are stopped and Prometheus is reloaded (SIGHUP) with neither
scrapes nor rules, and each shipped rule's expression is timed alone as an
instant query at the window's end (``stats=all``, median of 3): what the rules
cost without the scrapes and the agents competing for the same 2 cores.

The goal (issue 14): every shipped rule group evaluates in under 1 s at this
size. A short run cannot hold a day of history, so ranges longer than the run
(``[15m]``, ``[1h]``, ``[1d]``) read only what it recorded; the table adds an
estimate with full history: the samples those ranges would add, at the cost
per extra sample measured on the quiet Prometheus (the slope of one range
query over the whole run and over a fifth of it).

It prints one table and appends it, with the date and the machine, to
bench/results.md. Every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench_icmp import (  # noqa: E402 - bench/ is on the path when run as a script
    Agent, RssSampler, addresses, cpu_seconds, machine, ms, rss_bytes, verdict, window_stats)
from benchlib import log, steal_seconds, wait_until  # noqa: E402
from false_pages import git_state  # noqa: E402

from agent.config import DEFAULT_TIERS  # noqa: E402
from agent.devstack import Prometheus, StackError, clean, get, rules_with_interval, unwind  # noqa: E402
from agent.shard import shard_of  # noqa: E402

# (tier, share of targets, category): mostly best-effort cameras and offices, a few lifelines.
MIX = (("P0", 0.02, "hospital"), ("P1", 0.08, "gov-cloud"), ("P2", 0.40, "office"), ("P3", 0.50, "checkpoint"))
RULE_BUDGET = 1.0  # seconds per group evaluation (issue 14); the 5 s groups must also leave room to run
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
_GROUP = re.compile(r'rule_group="[^";]*;([^"]+)"')


# --- the configuration ------------------------------------------------------------

def tier_of(i: int) -> tuple[str, str]:
    """Tier and category of target ``i``, spread evenly so every shard gets the same mix."""
    slot = (i % 100) / 100
    for tier, share, category in MIX:
        if slot < share:
            return tier, category
        slot -= share
    return MIX[-1][0], MIX[-1][2]


def scaleout_config(n: int, no_histogram: list[str] = ()) -> tuple[str, list[tuple[str, str]]]:
    """The YAML of ``n`` targets on the built-in tiers (those in ``no_histogram`` without the RTT
    histogram), and each target's (name, tier)."""
    lines = ["tiers:", *(f"  {tier}: {{rtt_histogram: false}}" for tier in no_histogram)] if no_histogram else []
    targets: list[tuple[str, str]] = []
    lines.append("targets:")
    for i, address in enumerate(addresses(n)):
        tier, category = tier_of(i)
        name = f"so-{tier.lower()}-{i:05d}"
        targets.append((name, tier))
        lines.append(f"  - {{name: {name}, address: {address}, tier: {tier}, category: {category}, "
                     f"site: site-{i % 40}, labels: {{circuit_id: ZS-{i:05d}}}}}")
    return "\n".join(lines) + "\n", targets


def expected_echoes(targets: list[tuple[str, str]], index: int, count: int) -> float:
    """Echoes per second shard ``index`` must send: its targets' packets / interval, built-in tiers."""
    rate = 0.0
    for name, tier in targets:
        if shard_of(name, count) == index:
            t = DEFAULT_TIERS[tier]
            rate += t.parts["icmp"].packets / t.interval
    return rate


# --- watching Prometheus ----------------------------------------------------------

def prom_get(prom: Prometheus, path: str, params: dict[str, str] | None = None, timeout: float = 30) -> Any:
    url = prom.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
    status, body = get(url, timeout=timeout)
    if status != 200:
        raise StackError(f"{url} answered {status}: {body[:200]!r}")
    return json.loads(body) if path.startswith("/api/") else body.decode()


@dataclass
class PromWatch:
    """Polls Prometheus's own /metrics (every ``every`` s) and /api/v1/rules (every 3rd poll) in a thread."""

    prom: Prometheus
    every: float = 5.0
    # Each evaluation once, by its timestamp: the last-duration gauge keeps its value until the
    # group's next evaluation (a minute for the 1m groups), so reading it at every poll counted one
    # evaluation up to 12 times, and counted one from before the window while it stood (at 23:51 UTC
    # 2026-12-01 two one-rule groups read 2.3 s at the max, their rules' in-window maxima 0.59 s).
    evals: dict[str, dict[float, float]] = field(default_factory=dict)  # group -> {evaluated at: s}
    rule_evals: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # (group, rule) -> {at: s}
    window_start: float = 0.0  # wall-clock time; evaluations before it are the warm-up's
    appended: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, counter)
    series: list[float] = field(default_factory=list)
    load1: list[float] = field(default_factory=list)
    gc: list[float] = field(default_factory=list)  # go_gc_duration_seconds_count at each poll
    gc_ends: set[float] = field(default_factory=set)  # go_memstats_last_gc_time_seconds seen (one GC a minute or so)
    counters: dict[str, float] = field(default_factory=dict)  # last value of each watched counter
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prom-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        polls = 0
        while not self._stop.wait(self.every):
            try:
                self._metrics()
                if polls % 3 == 0:
                    self._rules()
            except (StackError, OSError, ValueError):
                self.errors += 1
            self.load1.append(os.getloadavg()[0])
            polls += 1

    def _metrics(self) -> None:
        at = time.monotonic()
        appended = 0.0
        durations: dict[str, float] = {}
        stamps: dict[str, float] = {}
        for line in prom_get(self.prom, "/metrics", timeout=10).splitlines():
            m = _SAMPLE.match(line)
            if not m:
                continue
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            if name == "prometheus_rule_group_last_duration_seconds":
                durations[_GROUP.search(labels).group(1)] = value
            elif name == "prometheus_rule_group_last_evaluation_timestamp_seconds":
                stamps[_GROUP.search(labels).group(1)] = value
            elif name == "prometheus_tsdb_head_samples_appended_total":
                appended += value  # one series per sample type in newer versions: sum them
            elif name == "go_gc_duration_seconds_count":
                self.gc.append(value)
            elif name == "go_memstats_last_gc_time_seconds":
                self.gc_ends.add(value)
            elif name == "prometheus_tsdb_head_series":
                self.series.append(value)
            elif name in ("prometheus_rule_group_iterations_missed_total", "prometheus_rule_evaluation_failures_total"):
                self.counters[f"{name}:{_GROUP.search(labels).group(1)}"] = value
        self.appended.append((at, appended))
        for group, duration in durations.items():
            stamp = stamps.get(group, 0.0)
            if stamp >= self.window_start:
                self.evals.setdefault(group, {})[stamp] = duration

    def _rules(self) -> None:
        for group in prom_get(self.prom, "/api/v1/rules")["data"]["groups"]:
            for rule in group["rules"]:
                at = rule.get("lastEvaluation", "")
                # RFC 3339 with nanoseconds; whole seconds are enough to tell the window from the warm-up.
                stamp = datetime.datetime.strptime(at[:19], "%Y-%m-%dT%H:%M:%S").replace(
                    tzinfo=datetime.timezone.utc).timestamp() if at[:4].isdigit() else 0.0
                if stamp >= int(self.window_start):
                    self.rule_evals.setdefault((group["name"], rule["name"]), {})[at] = float(
                        rule.get("evaluationTime", 0.0))

    def group_durations(self, group: str) -> list[float]:
        return list(self.evals.get(group, {}).values())

    def slowest(self, group: str) -> tuple[float, float] | None:
        """(started at, seconds) of the group's slowest evaluation in the window."""
        evals = self.evals.get(group)
        return max(evals.items(), key=lambda e: e[1]) if evals else None

    def gc_after(self, at: float) -> float | None:
        """Seconds from ``at`` to the end of the first garbage collection that ended after it.

        An evaluation far slower than its median that a GC ended during (or just after) ran
        beside the GC's mark phase, which on a 2-core VM takes a core and taxes allocations."""
        ends = [end - at for end in self.gc_ends if end >= at]
        return min(ends) if ends else None

    def rule_max(self, group: str, rule: str) -> float:
        return max(self.rule_evals.get((group, rule), {}).values(), default=0.0)

    def reset(self) -> None:
        """Forget what the warm-up saw: the window starts now."""
        self.evals.clear()
        self.rule_evals.clear()
        self.window_start = time.time()
        self.appended.clear()
        self.series.clear()
        self.load1.clear()
        self.gc.clear()
        self.gc_ends.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def samples_per_s(self) -> tuple[float, float]:
        """Mean over the window and the highest rate over any ~1 minute of it."""
        pts = self.appended
        if len(pts) < 2:
            return float("nan"), float("nan")
        mean = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
        peak = 0.0
        for i, (t0, v0) in enumerate(pts):
            later = [(t, v) for t, v in pts[i:] if t - t0 >= 60]
            if later:
                peak = max(peak, (later[0][1] - v0) / (later[0][0] - t0))
        return mean, peak or mean


def vector(prom: Prometheus, expr: str) -> dict[str, float]:
    """Instant query -> {instance: value}."""
    return {r["metric"].get("instance", ""): float(r["value"][1]) for r in prom.query(expr)}


def per_sample_cost(prom: Prometheus, window_s: int, at: float) -> tuple[float, float, float]:
    """What a range function over every target's series costs Prometheus here: (seconds and samples of
    ``avg_over_time(lifeline_target_up[window])``, seconds per extra sample). The last is the slope between
    the whole window and a fifth of it, so the per-series cost is not counted as per-sample cost.
    Each figure is the fastest of 5 runs of the query (the least disturbed); times and counts come from
    ``stats=all``. When noise still makes the slope zero or negative (seen at 06:29 UTC: -47 ns, which
    made the "full history" estimates smaller than the measured queries), the average cost per sample
    of the whole window stands in: an upper bound, as it includes the per-series cost."""
    def measure(seconds: int) -> tuple[float, float]:
        runs = [timed_query(prom, f"avg_over_time(lifeline_target_up[{seconds}s])", at)[:2] for _ in range(5)]
        return min(runs)

    long_s, long_n = measure(window_s)
    short_s, short_n = measure(max(window_s // 5, 10))
    slope = (long_s - short_s) / (long_n - short_n) if long_n > short_n else float("nan")
    if not slope > 0 and long_n:
        slope = long_s / long_n
    return long_s, long_n, slope


def timed_query(prom: Prometheus, expr: str, at: float) -> tuple[float, float, int]:
    """(evaluation seconds, samples read, series out) of one instant query at Unix time ``at``."""
    data = prom_get(prom, "/api/v1/query", {"query": expr, "time": f"{at:.3f}", "stats": "all"}, timeout=300)
    stats = data["data"]["stats"]
    return (float(stats["timings"]["evalTotalTime"]), float(stats["samples"]["totalQueryableSamples"]),
            len(data["data"]["result"]))


def quiet(prom: Prometheus) -> None:
    """Reload Prometheus (SIGHUP) with neither scrapes nor rules, so what is timed next runs alone."""
    with open(prom.config_path, "w", encoding="utf-8") as fh:
        fh.write("global: {scrape_interval: 1h, evaluation_interval: 1h}\n")
    prom.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: not prom_get(prom, "/api/v1/rules")["data"]["groups"], 60, "Prometheus to drop its rules", 0.5)


def rule_costs_alone(prom: Prometheus, at: float, runs: int = 3) -> dict[tuple[str, str], tuple[float, float]]:
    """Each shipped rule's expression as an instant query at ``at`` on the quiet Prometheus:
    (median evaluation seconds of ``runs``, samples read). Recording rules read the series the run
    recorded, as they would in the group."""
    out = {}
    for group in rules_with_interval(None)["groups"]:
        for rule in group["rules"]:
            timings = [timed_query(prom, rule["expr"], at) for _ in range(runs)]
            out[(group["name"], rule.get("record") or rule["alert"])] = (
                statistics.median(t[0] for t in timings), timings[0][1])
    return out


# --- the run ----------------------------------------------------------------------

def run(args: argparse.Namespace, workdir: str, cleanup: list) -> dict[str, Any]:
    text, targets = scaleout_config(args.targets, args.no_histogram)
    path = os.path.join(workdir, "scaleout.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    n = args.shards
    log(f"{args.targets} targets in {n} shards")
    agents = []
    for i in range(n):
        agent = Agent(path, os.path.join(workdir, f"agent-{i}.log"),
                      ["--shard.index", str(i), "--shard.count", str(n), *args.agent_arg])
        cleanup.append(agent.stop)
        agents.append(agent)
    for agent in agents:
        wait_until(agent.ready, 180, "every agent to become ready", interval=0.2)
    rss = [RssSampler(a.proc.pid) for a in agents]
    instances = [f"127.0.0.1:{a.port}" for a in agents]
    prom = Prometheus(os.path.join(workdir, "prometheus"), instances, None,
                      scrape_interval=f"{args.scrape_interval:g}s", evaluation_interval=f"{args.scrape_interval:g}s")
    prom.start()
    cleanup.append(prom.stop)
    prom_rss = RssSampler(prom.proc.pid)
    watch = PromWatch(prom)
    cleanup.append(watch.stop)
    wait_until(lambda: len(prom.query('up{job="lifeline"} == 1')) == n, 60, "Prometheus to scrape every agent", 1)
    first_scrape = time.monotonic()
    log(f"agents ready on {', '.join(instances)}; Prometheus {prom.url}; warm-up {args.warmup:g} s")
    time.sleep(args.warmup)

    watch.reset()
    begin = [a.snapshot() for a in agents]
    prom_cpu0, t0, steal0 = cpu_seconds(prom.proc.pid), time.monotonic(), steal_seconds()
    window = args.minutes * 60
    log(f"measuring for {window:.0f} s")
    time.sleep(window)
    end = [a.snapshot() for a in agents]
    prom_cpu1, t1, steal1 = cpu_seconds(prom.proc.pid), time.monotonic(), steal_seconds()
    span = f"{int(t1 - t0)}s"
    scrape_mean = vector(prom, f'avg_over_time(scrape_duration_seconds{{job="lifeline"}}[{span}])')
    scrape_max = vector(prom, f'max_over_time(scrape_duration_seconds{{job="lifeline"}}[{span}])')
    up_min = vector(prom, f'min_over_time(up{{job="lifeline"}}[{span}])')
    scraped = vector(prom, 'scrape_samples_scraped{job="lifeline"}')
    rules_final = prom_get(prom, "/api/v1/rules")["data"]["groups"]
    watch.stop()
    rss_peak = [max(sampler.stop(), rss_bytes(a.proc.pid)) for sampler, a in zip(rss, agents)]
    prom_rss_peak = max(prom_rss.stop(), rss_bytes(prom.proc.pid))  # before the timing below adds its own
    at = time.time() - 1  # every series still fresh: the last scrapes are at most 5 s old
    age = t1 - first_scrape
    for agent in agents:
        agent.stop()  # the agents' CPU is not part of what follows
    quiet(prom)
    log("timing each rule alone on the quiet Prometheus")
    cost = per_sample_cost(prom, int(age), at)
    alone = rule_costs_alone(prom, at)
    steady = steady_state(prom, age, cost[2], args.scrape_interval, at)

    out: dict[str, Any] = {"agents": [], "instances": instances}
    for i in range(n):
        (a, took_a), (b, took_b) = begin[i], end[i]
        stats = window_stats(a, b)
        stats.update(rss_mb=rss_peak[i] / 2**20, lone_scrape=max(took_a, took_b),
                     expected_s=expected_echoes(targets, i, n),
                     targets=sum(1 for name, _ in targets if shard_of(name, n) == i),
                     scrape_mean=scrape_mean.get(instances[i], float("nan")),
                     scrape_max=scrape_max.get(instances[i], float("nan")),
                     up_min=up_min.get(instances[i], float("nan")),
                     samples=scraped.get(instances[i], float("nan")))
        out["agents"].append(stats)
    mean_s, peak_s = watch.samples_per_s()
    out["prom"] = {
        "cpu_util": (prom_cpu1 - prom_cpu0) / (t1 - t0), "rss_mb": prom_rss_peak / 2**20,
        "samples_s": mean_s, "samples_s_peak": peak_s, "series": max(watch.series, default=float("nan")),
        "load_max": max(watch.load1, default=float("nan")), "load_mean": statistics.fmean(watch.load1 or [float("nan")]),
        "gc_cycles": watch.gc[-1] - watch.gc[0] if len(watch.gc) > 1 else float("nan"),
        "steal": (steal1 - steal0) / (t1 - t0),
        "poll_errors": watch.errors, "cost": cost, "window": int(age), "age": age,
    }
    out["alone"] = alone
    out["groups"] = {g["name"]: {"interval": g["interval"], "final": g["evaluationTime"],
                                 "durations": watch.group_durations(g["name"]),
                                 "gc_after": (None if (slow := watch.slowest(g["name"])) is None
                                              else watch.gc_after(slow[0])),
                                 "missed": watch.counters.get(f"prometheus_rule_group_iterations_missed_total:{g['name']}", 0),
                                 "failures": watch.counters.get(f"prometheus_rule_evaluation_failures_total:{g['name']}", 0),
                                 "rules": sorted(((watch.rule_max(g["name"], r["name"]), r["name"])
                                                  for r in g["rules"]), reverse=True),
                                 "alone": sum(alone[(g["name"], r["name"])][0] for r in g["rules"]),
                                 **steady[g["name"]]}
                     for g in rules_final}
    return out


_RANGE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\[(\d+)([smhd])\]")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def steady_state(prom: Prometheus, age: float, per_sample: float, scrape_interval: float,
                 at: float) -> dict[str, dict]:
    """Per rule group, the samples its range selectors would read beyond what this run holds, once
    Prometheus has a full ``[15m]``, ``[1h]`` or ``[1d]`` of history: for each ``metric[range]`` longer than
    ``age`` seconds, (range - age) / step samples for each series the selector matches now (step: the
    scrape interval for the agents' series, the recording group's interval for recorded ones)."""
    groups = rules_with_interval(None)["groups"]
    recorded_every = {r["record"]: parse_duration(g["interval"]) for g in groups for r in g["rules"] if "record" in r}
    out = {}
    for group in groups:
        extra = 0.0
        for rule in group["rules"]:
            for metric, matchers, count, unit in _RANGE.findall(rule["expr"]):
                span = int(count) * _UNIT[unit]
                if span <= age:
                    continue
                data = prom_get(prom, "/api/v1/query", {"query": f"count({metric}{matchers})", "time": f"{at:.3f}"})
                series = sum(float(r["value"][1]) for r in data["data"]["result"])
                extra += series * (span - age) / recorded_every.get(metric, scrape_interval)
        out[group["name"]] = {"extra_samples": extra, "extra_seconds": extra * per_sample}
    return out


def parse_duration(text: str) -> float:
    return int(text[:-1]) * _UNIT[text[-1]]


# --- report -----------------------------------------------------------------------

def ns(x: float) -> str:
    return "n/a" if x != x else f"{x * 1e9:.0f} ns"


def gc_text(after: float | None) -> str:
    return "no" if after is None or after > 10 else f"{after:.1f} s after it began"


def report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    agents, prom = r["agents"], r["prom"]
    cols = [f"shard {i} ({a['targets']:,} targets)" for i, a in enumerate(agents)]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn) -> None:
        rows.append((label, [fn(a) for a in agents]))

    row("echoes/s (expected by its tiers)", lambda a: f"{a['echoes_s']:.0f} ({a['expected_s']:.0f}), "
                                                     f"{a['echoes_s'] / a['expected_s'] * 100:.1f} %")
    row("echoes answered / skipped cycles", lambda a: f"{a['answered'] * 100:.2f} % / {a['skipped']:.0f}")
    row("scheduler lag p50 / p99", lambda a: f"{ms(a['lag_p50'])} / {ms(a['lag_p99'])}")
    row("CPU (share of one core)", lambda a: f"{a['cpu_util'] * 100:.1f} %")
    row("RSS (peak)", lambda a: f"{a['rss_mb']:.0f} MB")
    row("lone fresh /metrics scrape, gzip (max of 2)", lambda a: ms(a["lone_scrape"]))
    row("Prometheus scrape_duration_seconds mean / max", lambda a: f"{ms(a['scrape_mean'])} / {ms(a['scrape_max'])}")
    row("samples per scrape, min(up) over the window", lambda a: f"{a['samples']:.0f}, {a['up_min']:.0f}")
    width = max(len(x[0]) for x in rows)
    lines = [f"| {'agent':{width}} | " + " | ".join(cols) + " |",
             f"|{'-' * (width + 2)}|" + "|".join("-" * (len(c) + 2) for c in cols) + "|"]
    lines += [f"| {label:{width}} | " + " | ".join(vals) + " |" for label, vals in rows]

    cost_s, cost_samples, per_sample = prom["cost"]
    lines += ["", "| Prometheus | |", "|---|---:|",
              f"| samples appended/s: window mean, highest 1 min | {prom['samples_s']:,.0f}, {prom['samples_s_peak']:,.0f} |",
              f"| head series (max) | {prom['series']:,.0f} |",
              f"| CPU (share of one core) | {prom['cpu_util'] * 100:.1f} % |",
              f"| RSS (peak) | {prom['rss_mb']:.0f} MB |",
              f"| load average 1 min: mean / max over the window ({os.cpu_count()} CPUs) "
              f"| {prom['load_mean']:.2f} / {prom['load_max']:.2f} |",
              f"| Go GC cycles in the window (one every ...) | {prom['gc_cycles']:.0f} "
              f"({prom['age'] / prom['gc_cycles'] if prom['gc_cycles'] else float('nan'):.1f} s) |",
              f"| CPU stolen by the hypervisor (share of one core, whole VM) | {prom['steal'] * 100:.1f} % |",
              f"| range read cost: avg_over_time(lifeline_target_up[{prom['window']:.0f}s]) "
              f"| {cost_s * 1e3:.0f} ms for {cost_samples:,.0f} samples; {ns(per_sample)} per extra sample |"]
    if prom["poll_errors"]:
        lines.append(f"| polls of Prometheus that failed | {prom['poll_errors']} |")

    lines += ["", "| rule group (interval) | in the window: duration median / max (evaluations) "
                  "| slowest: a Prometheus GC ended | missed iterations "
                  "| alone: its rules' queries on the quiet Prometheus | alone, full history (estimate) "
                  "| costliest rules alone (in the run: max evaluationTime) |", "|---|---:|---:|---:|---:|---:|---|"]
    groups_max = {name: max(g["durations"], default=g["final"]) for name, g in r["groups"].items()}
    alone = {name: g["alone"] for name, g in r["groups"].items()}
    steady = {name: g["alone"] + g["extra_seconds"] for name, g in r["groups"].items()}
    for name, g in r["groups"].items():
        d = g["durations"]
        in_run = dict((rule, t) for t, rule in g["rules"])
        top = sorted(((r["alone"][(name, rule)][0], rule) for rule in in_run), reverse=True)[:3]
        top_text = ", ".join(f"{rule} {t * 1e3:.0f} ms ({in_run[rule] * 1e3:.0f})" for t, rule in top)
        more = (f"{ms(steady[name])} (+{g['extra_samples'] / 1e6:.1f} M samples)" if g["extra_samples"] else "same")
        lines.append(f"| {name} ({g['interval']:g} s) | {ms(statistics.median(d)) if d else 'n/a'} / "
                     f"{ms(max(d)) if d else 'n/a'} ({len(d)}) | {gc_text(g['gc_after'])} | {g['missed']:.0f} "
                     f"| {ms(alone[name])} | {more} | {top_text} |")
    lines.append(f"\n'Alone': after the window the agents are stopped and Prometheus reloaded without scrapes or "
                 f"rules; each rule's expression is then timed as an instant query at the window's end (median of 3, "
                 f"`stats=all`) and a group's figure is the sum over its rules (without the appends of recorded "
                 f"samples). 'Full history': plus, for each range longer than the {prom['age']:.0f} s this run "
                 f"holds ([15m], [1h], [1d]), the samples a full range would add, at {ns(per_sample)} each "
                 f"(the slope of the range read cost above; its average per sample, an upper bound, where noise "
                 f"made the slope non-positive).")

    worst_agent = max(agents, key=lambda a: a["lag_p99"])
    goals = [
        (f"every shipped rule group evaluates in < {RULE_BUDGET:g} s at {args.targets:,} targets (max over the window)",
         all(v < RULE_BUDGET for v in groups_max.values()),
         ", ".join(f"{k} {ms(v)}" for k, v in sorted(groups_max.items(), key=lambda kv: -kv[1])[:2])),
        ("no rule group missed an iteration", all(g["missed"] == 0 for g in r["groups"].values()),
         f"{sum(g['missed'] for g in r['groups'].values()):.0f} missed"),
        (f"alone on the quiet Prometheus: every group's rules < {RULE_BUDGET:g} s",
         all(v < RULE_BUDGET for v in alone.values()),
         ", ".join(f"{k} {ms(v)}" for k, v in sorted(alone.items(), key=lambda kv: -kv[1])[:2])),
        (f"estimate: alone, with full [15m]/[1h]/[1d] history, every group < {RULE_BUDGET:g} s",
         all(v < RULE_BUDGET for v in steady.values()),
         ", ".join(f"{k} {ms(v)}" for k, v in sorted(steady.items(), key=lambda kv: -kv[1])[:2])),
        ("every agent scraped at every attempt, scrape max < scrape interval",
         all(a["up_min"] == 1 and a["scrape_max"] < args.scrape_interval for a in agents),
         ", ".join(f"{ms(a['scrape_max'])}" for a in agents)),
        ("every agent sustains its echo rate (>= 98 %, no skipped cycles)",
         all(a["echoes_s"] >= 0.98 * a["expected_s"] and a["skipped"] == 0 for a in agents),
         ", ".join(f"{a['echoes_s'] / a['expected_s'] * 100:.1f} % / {a['skipped']:.0f} skipped" for a in agents)),
        ("scheduler lag p99 < 50 ms on every agent", worst_agent["lag_p99"] < 0.05, ms(worst_agent["lag_p99"])),
        ("peak RSS < 120 MB per agent (issue 14, goal 3)", all(a["rss_mb"] < 120 for a in agents),
         ", ".join(f"{a['rss_mb']:.0f} MB" for a in agents)),
        # Goal 3 is for an agent alone (bench_icmp); here Prometheus ingests on the same two cores.
        ("lone fresh /metrics scrape < 50 ms per agent while Prometheus ingests beside it (goal 3's bar)",
         all(a["lone_scrape"] < 0.05 for a in agents), ", ".join(ms(a["lone_scrape"]) for a in agents)),
    ]
    lines.append("")
    lines += [f"- {verdict(ok)}: {goal} ({figure})" for goal, ok, figure in goals]
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=int, default=30000, help="targets in the one config (default 30000)")
    p.add_argument("--shards", type=int, default=3, help="agents, one shard each (default 3)")
    p.add_argument("--minutes", type=float, default=5.0, help="length of the measuring window (default 5)")
    p.add_argument("--warmup", type=float, default=75.0,
                   help="seconds between Prometheus's first scrape of every agent and the window (default 75: "
                        "a P3 cycle, and the 1m rule group evaluated)")
    p.add_argument("--scrape-interval", type=float, default=5.0,
                   help="seconds between scrapes and evaluations (default 5, as deploy/prometheus.yml)")
    p.add_argument("--agent-arg", action="append", default=[], help="extra argument for every `lifeline run`")
    p.add_argument("--no-histogram", action="append", default=[], metavar="TIER",
                   help="turn the RTT histogram off on this built-in tier (repeatable), as a large list might")
    p.add_argument("--keep", action="store_true", help="keep the work directory (agent logs, Prometheus data)")
    p.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"),
                   help="file the table is appended to ('' for none)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_scaleout: needs root (raw ICMP sockets)", file=sys.stderr)
        return 2
    if args.targets > 62500 * 100 or args.shards < 1:
        raise SystemExit("bad --targets or --shards")
    signal.signal(signal.SIGTERM, _interrupt)  # a kill unwinds through the cleanup below
    host, git = machine(), git_state()
    command = "bench/bench_scaleout.py " + " ".join(argv if argv is not None else sys.argv[1:])
    began = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="lifeline-scaleout-")
    cleanup: list = []
    try:
        result = run(args, workdir, cleanup)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        unwind(cleanup, report=lambda exc: log(f"cleanup step failed: {exc!r}"))
        if args.keep:
            log(f"kept {workdir}")
        else:
            clean(workdir)
    table = report(args, result)
    header = (f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC — scale-out, {host}\n\n"
              f"`{command.strip()}`: {args.targets:,} loopback targets on the built-in tiers "
              f"({', '.join(f'{int(s * 100)} % {t}' for t, s, _ in MIX)})"
              f"{' with rtt_histogram: false on ' + ', '.join(args.no_histogram) if args.no_histogram else ''}"
              f" in {args.shards} shards, one Prometheus "
              f"{prometheus_version()} with rules/lifeline.rules.yml scraping each agent every "
              f"{args.scrape_interval:g} s; warm-up {args.warmup:g} s, window {args.minutes:g} min; git {git}; "
              f"run took {time.monotonic() - began:.0f} s.\n\n")
    print(header + table)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write("\n" + header + table + "\n")
    return 0


def prometheus_version() -> str:
    import subprocess  # only here: the version line for the record
    proc = subprocess.run(["prometheus", "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"version (\S+)", proc.stdout + proc.stderr)
    return m.group(1) if m else "(version unknown)"


if __name__ == "__main__":
    sys.exit(main())
