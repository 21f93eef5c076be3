"""The report's arithmetic: steps classified up/down/no data, outages, and sums per site and tier.

Pure functions over plain values, so the rules are tested without Prometheus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

UP, DOWN, MAINTENANCE = 1, 0, 2  # a step's state; None is no data

METHOD = (
    "Availability = up time / (up time + down time). The range is cut into {step} steps; a step is "
    "down when any sample of lifeline_target_up that Prometheus holds in it is 0, up when every "
    "sample is 1, and no data when it holds none (the agent, its scrape or Prometheus was not "
    "recording). No-data time is reported on its own and counted neither as up nor as down, so "
    "gaps never raise or lower availability. An outage is a run of consecutive down steps; its "
    "probes are those whose lifeline_probe_success was 0 during it and its reasons the "
    "lifeline_probe_failures_total series that increased. An outage that crosses the start or end "
    "of the range is cut at it and marked. Site, tier and overall figures are time-weighted: the "
    "sum of their targets' up time over the sum of their up and down time. A step in which "
    "lifeline_maintenance_active was 1 (a maintenance window of the agent's configuration covered "
    "the target) counts as maintenance, whatever the probes saw: neither up nor down, and it ends "
    "an outage. Isolated time is 0 in this version (probe-site isolation is not recorded yet)."
)


@dataclass
class Grid:
    """The steps of [start, end): step k (1..count) covers (ends[k-1], ends[k]]; the last may be short."""

    start: float
    end: float
    step: float

    @property
    def full(self) -> int:
        return max(0, int(math.floor((self.end - self.start) / self.step + 1e-9)))

    @property
    def remainder(self) -> float:
        rest = self.end - (self.start + self.full * self.step)
        return rest if rest > 1e-6 else 0.0

    @property
    def count(self) -> int:
        return self.full + (1 if self.remainder else 0)

    def step_end(self, k: int) -> float:
        return min(self.start + k * self.step, self.end)

    def duration(self, k: int) -> float:
        return self.step_end(k) - self.step_end(k - 1)


@dataclass
class Outage:
    start: float
    end: float
    clipped_start: bool = False  # it was already down when the range began
    clipped_end: bool = False  # down in the step after the range too, or that step has not come yet
    probes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class TargetAccount:
    target: str
    tier: str = ""
    site: str = ""
    category: str = ""
    info: dict[str, str] = field(default_factory=dict)  # circuit_id, carrier, contact, address ...
    up_seconds: float = 0.0
    down_seconds: float = 0.0
    no_data_seconds: float = 0.0
    maintenance_seconds: float = 0.0  # filled by maintenance windows, a later change
    isolated_seconds: float = 0.0  # likewise
    outages: list[Outage] = field(default_factory=list)

    @property
    def availability(self) -> float | None:
        counted = self.up_seconds + self.down_seconds
        return self.up_seconds / counted if counted > 0 else None


@dataclass
class GroupAccount:
    """A site, a tier or the whole report: its targets' sums."""

    name: str
    targets: int = 0
    up_seconds: float = 0.0
    down_seconds: float = 0.0
    no_data_seconds: float = 0.0
    maintenance_seconds: float = 0.0
    outages: int = 0
    targets_with_outages: int = 0

    @property
    def availability(self) -> float | None:
        counted = self.up_seconds + self.down_seconds
        return self.up_seconds / counted if counted > 0 else None

    def add(self, t: TargetAccount) -> None:
        self.targets += 1
        self.up_seconds += t.up_seconds
        self.down_seconds += t.down_seconds
        self.no_data_seconds += t.no_data_seconds
        self.maintenance_seconds += t.maintenance_seconds
        self.outages += len(t.outages)
        self.targets_with_outages += 1 if t.outages else 0


def combine(states: Iterable[int | None]) -> int | None:
    """One step's state from several series of a target: down if any is down, else up if any is up."""
    seen = None
    for s in states:
        if s == DOWN:
            return DOWN
        if s == UP:
            seen = UP
    return seen


def account(account_: TargetAccount, grid: Grid, states: Sequence[int | None]) -> None:
    """Fill ``account_`` from ``states``: index 0 is the step before the range, 1..count the range's
    steps, count+1 the step after it (DOWN also when that step is still in the future: the outage
    has not ended)."""
    n = grid.count
    run_start: int | None = None
    for k in range(1, n + 1):
        state = states[k]
        seconds = grid.duration(k)
        if state == UP:
            account_.up_seconds += seconds
        elif state == DOWN:
            account_.down_seconds += seconds
        elif state == MAINTENANCE:
            account_.maintenance_seconds += seconds
        else:
            account_.no_data_seconds += seconds
        if state == DOWN and run_start is None:
            run_start = k
        if run_start is not None and (state != DOWN or k == n):
            last = k if state == DOWN else k - 1
            account_.outages.append(Outage(
                start=grid.step_end(run_start - 1), end=grid.step_end(last),
                clipped_start=run_start == 1 and states[0] == DOWN,
                clipped_end=last == n and states[n + 1] == DOWN))
            run_start = None


def tier_key(tier: str) -> tuple[int, int, str]:
    """P0, P1, P2, P3 in that order, then custom tiers by name: P0 and P1 lines come first."""
    m = re.fullmatch(r"P(\d+)", tier)
    return (0, int(m.group(1)), "") if m else (1, 0, tier)


def worst_first(availability: float | None, down_seconds: float, name: str) -> tuple:
    """Lowest availability first, then most downtime; nothing counted (no data) after the rest."""
    return (availability is None, availability if availability is not None else 0.0, -down_seconds, name)


def order_targets(targets: list[TargetAccount]) -> list[TargetAccount]:
    return sorted(targets, key=lambda t: (tier_key(t.tier), *worst_first(t.availability, t.down_seconds, t.target)))


def groups(targets: Iterable[TargetAccount], by: str) -> list[GroupAccount]:
    """Per ``by`` ("site" or "tier"), worst first."""
    out: dict[str, GroupAccount] = {}
    for t in targets:
        name = getattr(t, by)
        out.setdefault(name, GroupAccount(name)).add(t)
    return sorted(out.values(), key=lambda g: worst_first(g.availability, g.down_seconds, g.name))


def total(targets: Iterable[TargetAccount]) -> GroupAccount:
    whole = GroupAccount("all")
    for t in targets:
        whole.add(t)
    return whole
