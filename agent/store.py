"""Per-target state, and each result folded into it and formatted once.

Probe results land here on the event loop. Each result re-formats its own
target's lines (the core families here, the kind's families by the kind), a
few microseconds, and puts them in per-family rows; a scrape then only joins
rows (``agent/exposition.py``): at 10k targets tens of milliseconds with the
GIL held for a few, where formatting 300k lines per scrape took ~0.6 s and
stalled the probe loop.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from agent.reload import Plan
from common.model import Target, Tier
from common.textfmt import Family, Histogram, labels
from probes.base import ProbeKind, ProbeResult

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Per-target families of every target, whatever its kinds; TargetState.core_fragments writes one each.
CORE_FAMILIES = (
    Family("lifeline_target_up", "gauge", "1 if the target answered its last probe cycle, else 0."),
    Family("lifeline_target_consecutive_failures", "gauge",
           "Failed cycles in a row of the probe that decides lifeline_target_up; 0 when it last succeeded."),
    Family("lifeline_target_info", "gauge", "Target metadata; value is always 1."),
    Family("lifeline_probe_success", "gauge", "1 if the last cycle of this probe succeeded."),
    Family("lifeline_probe_last_run_timestamp_seconds", "gauge", "Unix time the last cycle of this probe ended."),
    Family("lifeline_probe_failures_total", "counter", "Failed probe cycles by reason."),
)


class TargetState:
    """One target's core state and, in ``kinds``, each of its probe kinds' own state."""

    __slots__ = ("target", "key", "up_key", "info", "decider", "up", "failing", "success", "last_run",
                 "failures", "kinds", "index", "slots")

    def __init__(self, target: Target, kinds: dict[str, Any], decider: str) -> None:
        self.target = target
        # Label sets encoded once: bytes %-formatting per result costs half of f-strings per line.
        self.key = labels((("target", target.name), ("tier", target.tier))).encode()
        self.up_key = labels((("target", target.name), ("tier", target.tier), ("category", target.category),
                              ("site", target.site))).encode()
        self.info = b"lifeline_target_info{%s} 1\n" % labels(
            (("target", target.name), ("tier", target.tier), ("category", target.category), ("site", target.site),
             ("address", target.address), *target.labels)).encode()
        self.decider = decider  # the kind whose result sets `up`
        self.up: int | None = None
        self.failing = 0  # consecutive failed cycles of the deciding kind
        self.success: dict[str, int] = {}
        self.last_run: dict[str, float] = {}
        self.failures: Counter[tuple[str, str]] = Counter()
        self.kinds = kinds
        self.index = -1  # position in the core rows
        self.slots: dict[str, int] = {}  # position in each kind's rows

    def carry(self, old: TargetState) -> None:
        """Keep the counters of the same target before a reload changed it."""
        self.up, self.failing, self.success = old.up, old.failing, old.success
        self.last_run, self.failures = old.last_run, old.failures

    def core_fragments(self) -> list[bytes]:
        key = self.key
        frags = [b"", b"", self.info, b"", b"", b""]
        if self.up is not None:
            frags[0] = b"lifeline_target_up{%s} %d\n" % (self.up_key, self.up)
            frags[1] = b"lifeline_target_consecutive_failures{%s} %d\n" % (key, self.failing)
        if self.success:
            frags[3] = b"".join([b'lifeline_probe_success{%s,probe="%s"} %d\n' % (key, k.encode(), v)
                                 for k, v in self.success.items()])
        if self.last_run:
            frags[4] = b"".join([b'lifeline_probe_last_run_timestamp_seconds{%s,probe="%s"} %.3f\n'
                                 % (key, k.encode(), v) for k, v in self.last_run.items()])
        if self.failures:
            frags[5] = b"".join([b'lifeline_probe_failures_total{%s,probe="%s",reason="%s"} %d\n'
                                 % (key, k.encode(), r.encode(), n) for (k, r), n in self.failures.items()])
        return frags


class MetricsStore:
    """Targets' state and per-family rows of their formatted lines; the scheduler feeds it results."""

    def __init__(self, kinds: Mapping[str, ProbeKind], clock: Callable[[], float] = time.time) -> None:
        self.kinds = kinds
        self.targets: dict[str, TargetState] = {}
        self.tiers: dict[str, Tier] = {}
        self.lag: dict[str, Histogram] = {}
        self.cycle: dict[tuple[str, str], Histogram] = {}
        self.in_use: list[tuple[str, str]] = []
        # Per family, every target's fragment in config order: a scrape joins these lists in C
        # without visiting targets; each result replaces its own entries.
        self.core_rows: tuple[list[bytes], ...] = tuple([] for _ in CORE_FAMILIES)
        self.kind_rows: dict[str, tuple[list[bytes], ...]] = {}
        self._clock = clock

    def apply(self, plan: Plan) -> None:
        """Keep, carry or start each target's state as ``plan`` says; removed targets' state goes."""
        config = plan.new
        fresh: dict[str, TargetState] = {}
        for target in config.targets:
            old = self.targets.get(target.name)
            if target.name in plan.kept and old is not None:
                old.target = target  # equal identity; the new object is what the scheduler holds
                fresh[target.name] = old
                continue
            carried = old if target.name in plan.changed and old is not None else None
            kinds = {k: self.kinds[k].new_state(target, carried.kinds.get(k) if carried else None)
                     for k in target.probes}
            state = TargetState(target, kinds, self._decider(target))
            if carried is not None:
                state.carry(carried)
            fresh[target.name] = state
        core_rows: tuple[list[bytes], ...] = tuple([] for _ in CORE_FAMILIES)
        kind_rows = {k: tuple([] for _ in kind.families) for k, kind in self.kinds.items()}
        for index, state in enumerate(fresh.values()):
            state.index = index
            for row, fragment in zip(core_rows, state.core_fragments()):
                row.append(fragment)
            for k, kstate in state.kinds.items():
                rows = kind_rows[k]
                state.slots[k] = len(rows[0]) if rows else 0
                for row, fragment in zip(rows, self.kinds[k].fragments(kstate, state.key)):
                    row.append(fragment)
        # Assigned whole, so the render thread sees the old set or the new, never half.
        self.core_rows, self.kind_rows = core_rows, kind_rows
        self.targets = fresh
        self.tiers = dict(config.tiers)
        # (tier, probe) pairs in use: their skip counters are exported from zero, so increase() sees the first.
        self.in_use = sorted({(t.tier, k) for t in config.targets for k in t.probes})
        for tier in config.tiers:
            self.lag.setdefault(tier, Histogram(LAG_BUCKETS))

    def _decider(self, target: Target) -> str:
        return next((k for k in target.probes if self.kinds[k].decides_up), target.probes[0])

    def record(self, state: TargetState, kind: str, result: ProbeResult, lag: float) -> None:
        """Fold one result into its target's state and re-format that target's lines."""
        state.last_run[kind] = self._clock()
        state.success[kind] = int(result.ok)
        if not result.ok:
            state.failures[(kind, result.reason or "unknown")] += 1
        if kind == state.decider:
            state.up = int(result.ok)
            state.failing = 0 if result.ok else state.failing + 1
        owner = self.kinds[kind]
        kstate = state.kinds[kind]
        owner.record(kstate, result)
        index = state.index
        for row, fragment in zip(self.core_rows, state.core_fragments()):
            row[index] = fragment
        slot = state.slots[kind]
        for row, fragment in zip(self.kind_rows[kind], owner.fragments(kstate, state.key)):
            row[slot] = fragment
        tier = state.target.tier
        lag_hist = self.lag.get(tier)
        if lag_hist is None:  # not setdefault(): that built a throw-away Histogram per result
            lag_hist = self.lag[tier] = Histogram(LAG_BUCKETS)
        lag_hist.observe(max(lag, 0.0))
        key = (tier, kind)
        hist = self.cycle.get(key)
        if hist is None:
            hist = self.cycle[key] = Histogram(CYCLE_BUCKETS)
        hist.observe(result.duration)

    def count_by_tier(self) -> Counter[str]:
        return Counter(s.target.tier for s in list(self.targets.values()))
