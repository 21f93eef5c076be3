"""Reads what Prometheus recorded of the agent's series and builds the report's figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from agent.report import accounting as acc
from agent.report.promapi import PromClient, Series, promql_duration, promql_string

# Labels of lifeline_target_info that the report shows; the rest stay in JSON's "labels".
INFO_LABELS = ("circuit_id", "carrier", "contact", "address")
_NOT_INFO = {"__name__", "job", "instance", "target", "tier", "category", "site"}
_GROUP = "target, tier, category, site"
# How far before an outage to look for its failure counters' last value: the agent
# exports them on every scrape once they exist, so a few scrapes suffice.
COUNTER_LOOKBACK = 300.0
# How far before an outage its cause may lie: longer than any usual probe interval (P3: 60s).
REASON_LEAD = 300.0


@dataclass
class Report:
    start: float
    end: float  # as asked
    until: float  # what was counted: ``end``, or the moment of generation for a range not over yet
    timezone: ZoneInfo
    generated_at: float
    step: float
    selector: str = ""
    targets: list[acc.TargetAccount] = field(default_factory=list)
    sites: list[acc.GroupAccount] = field(default_factory=list)
    tiers: list[acc.GroupAccount] = field(default_factory=list)
    total: acc.GroupAccount = field(default_factory=lambda: acc.GroupAccount("all"))

    @property
    def has_data(self) -> bool:
        return self.total.availability is not None

    @property
    def method(self) -> str:
        step = f"{int(self.step // 60)}-minute" if self.step % 60 == 0 else f"{self.step:g}-second"
        return acc.METHOD.format(step=step)


def _matchers(selector: str, **labels: str) -> str:
    parts = [f"{k}={promql_string(v)}" for k, v in labels.items()]
    if selector.strip():
        parts.append(selector.strip().strip("{}"))
    return "{" + ",".join(parts) + "}"


def build(client: PromClient, start: float, end: float, step: float, timezone: ZoneInfo,
          selector: str = "", clock: Callable[[], float] = time.time,
          progress: Callable[[str], None] | None = None) -> Report:
    now = clock()
    until = max(start, min(end, now))
    report = Report(start, end, until, timezone, now, step, selector)
    grid = acc.Grid(start, until, step)
    if grid.count == 0:
        return report
    if progress:
        progress(f"reading lifeline_target_up: {grid.count} steps of {step:g} s")
    states = _up_states(client, grid, selector, now)
    info = _info(client, grid, selector)
    accounts: dict[str, acc.TargetAccount] = {}
    names = sorted(set(states) | set(info))
    for i, name in enumerate(names, 1):
        if progress and (i % 100 == 0 or i == len(names)):
            progress(f"explaining outages: {i}/{len(names)} targets")
        labels = info.get(name) or {}
        row = acc.TargetAccount(name)
        series_states = states.get(name, {})
        for key in ("tier", "category", "site"):
            setattr(row, key, labels.get(key) or (series_states.get("labels") or {}).get(key, ""))
        row.info = {k: v for k, v in labels.items() if k not in _NOT_INFO}
        acc.account(row, grid, series_states.get("steps") or [None] * (grid.count + 2))
        for outage in row.outages:
            _explain(client, row.target, outage, selector)
        accounts[name] = row
    report.targets = acc.order_targets(list(accounts.values()))
    report.sites = acc.groups(report.targets, "site")
    report.tiers = acc.groups(report.targets, "tier")
    report.total = acc.total(report.targets)
    return report


def _up_states(client: PromClient, grid: acc.Grid, selector: str, now: float) -> dict[str, dict]:
    """Per target: its latest tier/category/site labels and the state of each step (see accounting.account)."""
    sel = _matchers(selector)
    n = grid.count

    def expr(window: float) -> str:
        # min_over_time over the step, 1 ms short of it: a range selector includes both ends,
        # and a sample on a boundary must count in one step only. Unlike a plain instant
        # selector it never carries a sample into a gap (no 5-minute lookback).
        return f"min by ({_GROUP}) (min_over_time(lifeline_target_up{sel}[{promql_duration(window - 0.001)}]))"

    by_step: dict[str, dict[int, list[int]]] = {}
    latest: dict[str, tuple[float, dict[str, str]]] = {}

    def take(series: list[Series], index_of: Callable[[float], int]) -> None:
        for s in series:
            name = s["metric"].get("target", "")
            steps = by_step.setdefault(name, {})
            for ts, value in s["values"]:
                k = index_of(ts)
                steps.setdefault(k, []).append(acc.UP if value >= 1 else acc.DOWN)
                if ts >= latest.get(name, (-1.0, {}))[0]:
                    latest[name] = (ts, s["metric"])

    # Step 0 (the one before the range) through the last full step, in one chunked range query.
    take(client.query_range(expr(grid.step), grid.start, grid.start + grid.full * grid.step, grid.step),
         lambda ts: int(round((ts - grid.start) / grid.step)))
    if grid.remainder:
        # A short last step is judged on a whole step's samples up to the end: a few seconds
        # would often hold no scrape at all and read as a gap.
        take(client.query(expr(grid.step), grid.end), lambda ts: n)
    if grid.end + grid.step <= now:  # the step after the range, to tell a cut outage from one that ended
        take(client.query(expr(grid.step), grid.end + grid.step), lambda ts: n + 1)
    maintenance = _maintenance_steps(client, grid, sel, now)
    out = {}
    for name, steps in by_step.items():
        states = [acc.combine(steps.get(k, ())) for k in range(n + 2)]
        for k in maintenance.get(name, ()):
            if states[k] is not None:  # a step with no probe data stays "no data"
                states[k] = acc.MAINTENANCE
        if grid.end + grid.step > now and states[n] == acc.DOWN:
            states[n + 1] = acc.DOWN  # the outage has not ended yet: it runs past the range
        out[name] = {"labels": latest[name][1], "steps": states}
    return out


def _maintenance_steps(client: PromClient, grid: acc.Grid, sel: str, now: float) -> dict[str, set[int]]:
    """Per target, the steps (same indexes as _up_states) in which a maintenance window covered it."""
    n = grid.count
    expr = (f"max by (target) (max_over_time(lifeline_maintenance_active{sel}"
            f"[{promql_duration(grid.step - 0.001)}])) >= 1")
    out: dict[str, set[int]] = {}

    def take(series: list[Series], index_of: Callable[[float], int]) -> None:
        for s in series:
            steps = out.setdefault(s["metric"].get("target", ""), set())
            steps.update(index_of(ts) for ts, _ in s["values"])

    take(client.query_range(expr, grid.start, grid.start + grid.full * grid.step, grid.step),
         lambda ts: int(round((ts - grid.start) / grid.step)))
    if grid.remainder:
        take(client.query(expr, grid.end), lambda ts: n)
    if grid.end + grid.step <= now:
        take(client.query(expr, grid.end + grid.step), lambda ts: n + 1)
    return out


def _info(client: PromClient, grid: acc.Grid, selector: str) -> dict[str, dict[str, str]]:
    """lifeline_target_info labels per target, as last seen in the range (also names targets with no data)."""
    window = promql_duration(grid.end - grid.start)
    result = client.query(f"last_over_time(lifeline_target_info{_matchers(selector)}[{window}])", grid.end)
    out: dict[str, dict[str, str]] = {}
    for s in sorted(result, key=lambda s: sorted(s["metric"].items())):
        out[s["metric"].get("target", "")] = s["metric"]
    return out


def _explain(client: PromClient, target: str, outage: acc.Outage, selector: str) -> None:
    """The probes that failed during ``outage`` and the failure reasons whose counters rose."""
    sel = _matchers(selector, target=target)
    probes, reasons = _failures(client, sel, outage.end, outage.duration)
    if any(not any(r.startswith(f"{p}:") for r in reasons) for p in probes):
        # A failing probe whose counter did not move: the failed cycle that started the outage
        # ran before it (a probe interval is up to a minute or more, and a cut outage began
        # before the range). Take that probe's reasons from a window reaching back REASON_LEAD.
        _, earlier = _failures(client, sel, outage.end, outage.duration + REASON_LEAD)
        reasons |= {r for r in earlier if r.split(":", 1)[0] in probes}
    outage.probes = sorted(probes)
    outage.reasons = sorted(reasons)


def _failures(client: PromClient, sel: str, end: float, duration: float) -> tuple[set[str], set[str]]:
    """Probes with lifeline_probe_success 0 in (end - duration, end], and "probe:reason" counters that rose."""
    window = promql_duration(duration - 0.001)
    offset = promql_duration(duration)
    lookback = promql_duration(COUNTER_LOOKBACK)
    failures = f"lifeline_probe_failures_total{sel}"
    # A reason's counter appears with its first failure, so one absent before the window counts from 0.
    expr = (f"(min_over_time(lifeline_probe_success{sel}[{window}]) == 0)"
            f" or (max_over_time({failures}[{window}])"
            f" - (last_over_time({failures}[{lookback}] offset {offset}) or max_over_time({failures}[{window}]) * 0)"
            f" > 0)")
    probes, reasons = set(), set()
    for s in client.query(expr, end):
        metric = s["metric"]
        if "reason" in metric:
            reasons.add(f"{metric.get('probe', '')}:{metric['reason']}")
        elif "probe" in metric:
            probes.add(metric["probe"])
    return probes, reasons
