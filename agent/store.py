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
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from agent.reload import Plan
from common.model import Target, Tier
from common.textfmt import Family, Histogram, escape, fmt, labels
from probes.base import ProbeKind, ProbeResult, target_where

HISTORY = 20  # state changes kept per target, for "down since" and the status page
# Shared by every target until its first failure (failures, reasons) or certificate (tls), then replaced
# by its own dict: most targets never fail nor speak TLS, and three empty dicts per target cost ~2 MB
# at 10,000 targets. Read-only, so a write that forgot to replace it fails loudly.
EMPTY: Any = MappingProxyType({})
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The label text inside b"lifeline_target_up{...} 0\n" (up is a single digit).
_UP_LABELS = slice(len(b"lifeline_target_up{"), -len(b"} 0\n"))

# Per-target families of every target, whatever its kinds; TargetState.core_fragments writes one each.
CORE_FAMILIES = (
    Family("lifeline_target_up", "gauge", "1 if every probe of the target succeeded in its last cycle, else 0."),
    Family("lifeline_target_consecutive_failures", "gauge",
           "Failed probe cycles in a row since every probe of the target last succeeded; present only "
           "while the target is failing, like ALERTS. Labelled like lifeline_target_up."),
    Family("lifeline_target_info", "gauge", "Target metadata; value is always 1."),
    Family("lifeline_probe_success", "gauge", "1 if the last cycle of this probe succeeded."),
    Family("lifeline_probe_last_run_timestamp_seconds", "gauge", "Unix time the last cycle of this probe ended."),
    Family("lifeline_probe_failures_total", "counter", "Failed probe cycles by reason."),
    Family("lifeline_probe_duration_seconds", "gauge",
           "Duration of the last cycle of this probe, in total and by phase (resolve, connect, tls ...)."),
    Family("lifeline_tls_cert_not_after_timestamp_seconds", "gauge",
           "Earliest not-after among every certificate the server sent in the last handshake. "
           "Labelled like lifeline_target_up, and by probe."),
    Family("lifeline_tls_cert_info", "gauge", "Leaf certificate of the last handshake; value is always 1."),
    Family("lifeline_probe_failure_reason", "gauge",
           "Present (value 1) for each probe whose last cycle failed, with its reason, like ALERTS; the page "
           "quotes it, e.g. sip: refused."),
)

_LAST_RUN = [f.name for f in CORE_FAMILIES].index("lifeline_probe_last_run_timestamp_seconds")
_DURATION = [f.name for f in CORE_FAMILIES].index("lifeline_probe_duration_seconds")


class TargetState:
    """One target's core state and, in ``kinds``, each of its probe kinds' own state."""

    __slots__ = ("target", "key", "up_line", "info", "up", "failing", "last_run",
                 "failures", "durations", "tls", "kinds", "index", "slots", "reasons", "since", "history")

    def __init__(self, target: Target, kinds: dict[str, Any], extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.target = target
        # Label sets encoded once: bytes %-formatting per result costs half of f-strings per line.
        # ``extra``: labels on every target series (``vantage`` when the agent runs with --vantage).
        self.key = labels((("target", target.name), ("tier", target.tier), *extra)).encode()
        # Formatted when `up` changes, not per result: keeping its label set instead cost ~1 MB at 10,000 targets.
        self.up_line = b""
        self.info = b"lifeline_target_info{%s} 1\n" % labels(
            (("target", target.name), ("tier", target.tier), *extra, ("category", target.category),
             ("site", target.site), ("address", target.address), *target.labels)).encode()
        self.up: int | None = None  # 1 when every probe's last cycle succeeded
        self.failing = 0  # failed cycles in a row since the target was last up
        # Per kind that ran, when its last cycle ended; a kind succeeded in its last cycle unless it is
        # in `reasons` (no separate success dict: one per target cost ~1.8 MB at 10,000 targets).
        self.last_run: dict[str, float] = {}
        self.failures: Counter[tuple[str, str]] = EMPTY  # a Counter from the first failure
        # Per kind, its lifeline_probe_duration_seconds lines, flat: (kind, lines, kind, lines ...), in the
        # order the kinds first ran; a dict per target cost ~1.2 MB more at 10,000 targets.
        self.durations: tuple[Any, ...] = ()
        self.tls: dict[str, tuple[bytes, bytes]] = EMPTY  # per kind, its not-after and info lines
        self.kinds = kinds
        self.index = -1  # position in the core rows
        # Position in each kind's rows, in the order of `kinds`: a tuple rather than a dict per target
        # (~1.6 MB at 10,000 targets); see slot().
        self.slots: tuple[int, ...] = ()
        self.reasons: dict[str, str] = EMPTY  # per failing kind, the reason of its last cycle
        self.since: float | None = None  # when `up` last changed (Unix time)
        # The last state changes, newest last: (time, up, failing probes as "kind:reason"); made at
        # the first real change (most targets never change), saving ~10 MB at 10,000 targets.
        self.history: deque[tuple[float, int, tuple[str, ...]]] | None = None

    def carry(self, old: TargetState) -> None:
        """Keep the counters of the same target before a reload changed it (of the probes it still has)."""
        probes = set(self.target.probes)
        self.last_run = {k: v for k, v in old.last_run.items() if k in probes}
        self.failures = Counter({kr: n for kr, n in old.failures.items() if kr[0] in probes}) or EMPTY
        self.durations = tuple(x for i in range(0, len(old.durations), 2) if old.durations[i] in probes
                               for x in old.durations[i:i + 2])
        self.reasons = {k: v for k, v in old.reasons.items() if k in probes} or EMPTY
        self.since, self.history = old.since, old.history
        if self.last_run:
            self.up = int(not self.reasons)
            self.failing = 0 if self.up else old.failing
            self._format_up()
        if self.up_line[_UP_LABELS] == old.up_line[_UP_LABELS]:
            self.tls = {k: v for k, v in old.tls.items() if k in probes} or EMPTY
        # else: the target moved site or category; its certificate lines return, relabelled, with
        # the next handshake rather than carry the old labels until then.

    def _format_up(self) -> None:
        self.up_line = b"lifeline_target_up{%s%s} %d\n" % (self.key, target_where(self.target), self.up)

    def slot(self, kind: str) -> int:
        """Position of this target's lines in ``kind``'s rows."""
        slots = self.slots
        if len(slots) == 1:  # nearly every target has one kind
            return slots[0]
        return slots[list(self.kinds).index(kind)]

    def observe(self, kind: str, result: ProbeResult, now: float) -> None:
        """The core's part of recording a result (``last_run`` of ``kind`` already set): up, failures, history..."""
        ok = result.ok
        was = self.up
        reasons = self.reasons
        if ok:
            if kind in reasons:
                del reasons[kind]  # present: a dict of its own
            if self.up != 1 and not reasons:
                self.up, self.failing = 1, 0
        else:
            reason = result.reason or "unknown"
            failures = self.failures
            if failures is EMPTY:
                failures = self.failures = Counter()
            failures[(kind, reason)] += 1
            if reasons is EMPTY:
                reasons = self.reasons = {}
            reasons[kind] = reason
            self.up = 0
            self.failing += 1
        if self.up != was:
            self.since = now
            self._format_up()
            if was is not None or not self.up:  # the first result being "up" is not news
                if self.history is None:
                    self.history = deque(maxlen=HISTORY)
                self.history.append((now, self.up, tuple(f"{k}:{r}" for k, r in self.reasons.items())))
        probe = b'%s,probe="%s"' % (self.key, kind.encode())
        lines = b'lifeline_probe_duration_seconds{%s,phase="total"} %s\n' % (probe, fmt(result.duration).encode())
        if result.phases:
            lines += b"".join([b'lifeline_probe_duration_seconds{%s,phase="%s"} %s\n'
                               % (probe, name.encode(), fmt(seconds).encode()) for name, seconds in result.phases])
        self.durations = _put(self.durations, kind, lines)
        tls = result.tls
        if tls is not None:
            if self.tls is EMPTY:
                self.tls = {}
            # The not-after, which the expiry alerts read, is labelled like lifeline_target_up (category
            # and site): the alerts need no join on lifeline_target_info (~200 ms at 30,000 targets).
            self.tls[kind] = (
                b'lifeline_tls_cert_not_after_timestamp_seconds{%s,probe="%s"} %s\n'
                % (self.up_line[_UP_LABELS], kind.encode(), fmt(tls.not_after).encode()),
                b'lifeline_tls_cert_info{%s,subject="%s",issuer="%s",serial="%s"} 1\n'
                % (probe, escape(tls.subject).encode(), escape(tls.issuer).encode(), escape(tls.serial).encode()))
        elif ok and kind in self.tls:
            del self.tls[kind]  # a plain-text success: no certificate to show
        # A failed handshake keeps the last certificate seen: an expiring chain stays visible.

    def durations_fragment(self) -> bytes:
        return b"".join(self.durations[1::2])

    def last_run_fragment(self) -> bytes:
        return b"".join([b'lifeline_probe_last_run_timestamp_seconds{%s,probe="%s"} %.3f\n'
                         % (self.key, k.encode(), v) for k, v in self.last_run.items()])

    def core_fragments(self) -> list[bytes]:
        key = self.key
        frags = [b"", b"", self.info, b"", b"", b"", b"", b"", b"", b""]
        if self.up is not None:
            frags[0] = self.up_line
        if self.failing:
            # With up's labels (category, site): the down alert reads this one family alone and
            # still has what a page is routed by. Sliced out of up_line rather than kept per target.
            # Only while failing: the down alert and the health state read it every 5 s, and a
            # selector costs Prometheus per series it matches, ~150-300 ms for 30,000 series of
            # zeros (bench/bench_scaleout.py), against next to nothing for the few that fail.
            frags[1] = b"lifeline_target_consecutive_failures{%s} %d\n" % (self.up_line[_UP_LABELS], self.failing)
        if self.last_run:
            reasons = self.reasons
            frags[3] = b"".join([b'lifeline_probe_success{%s,probe="%s"} %d\n' % (key, k.encode(), k not in reasons)
                                 for k in self.last_run])
            frags[4] = self.last_run_fragment()
        if self.failures:
            frags[5] = b"".join([b'lifeline_probe_failures_total{%s,probe="%s",reason="%s"} %d\n'
                                 % (key, k.encode(), r.encode(), n) for (k, r), n in self.failures.items()])
        if self.durations:
            frags[6] = self.durations_fragment()
        if self.tls:
            frags[7] = b"".join([a for a, _ in self.tls.values()])
            frags[8] = b"".join([b for _, b in self.tls.values()])
        if self.reasons:
            frags[9] = b"".join([b'lifeline_probe_failure_reason{%s,probe="%s",reason="%s"} 1\n'
                                 % (key, k.encode(), r.encode()) for k, r in self.reasons.items()])
        return frags


def _put(flat: tuple[Any, ...], key: str, value: bytes) -> tuple[Any, ...]:
    """``flat`` (key, value, key, value ...) with ``key``'s value replaced in place, or appended."""
    for i in range(0, len(flat), 2):
        if flat[i] == key:
            return (*flat[:i + 1], value, *flat[i + 2:])
    return (*flat, key, value)


class MetricsStore:
    """Targets' state and per-family rows of their formatted lines; the scheduler feeds it results."""

    def __init__(self, kinds: Mapping[str, ProbeKind], clock: Callable[[], float] = time.time,
                 extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.kinds = kinds
        self.extra = extra  # labels on every target series, e.g. (("vantage", "putuo"),)
        self.targets: dict[str, TargetState] = {}
        self.tiers: dict[str, Tier] = {}
        self.lag: dict[str, Histogram] = {}
        self.cycle: dict[tuple[str, str], Histogram] = {}
        self.in_use: list[tuple[str, str]] = []
        # Per family, every target's fragment in config order: a scrape joins these lists in C
        # without visiting targets; each result replaces its own entries.
        self.core_rows: tuple[list[bytes], ...] = tuple([] for _ in CORE_FAMILIES)
        self.kind_rows: dict[str, tuple[list[bytes], ...]] = {}
        self.tally = TierTally()
        self._clock = clock

    def apply(self, plan: Plan) -> None:
        """Keep, carry or start each target's state as ``plan`` says; removed targets' state goes."""
        config = plan.new
        fresh: dict[str, TargetState] = {}
        for target in config.targets:
            old = self.targets.get(target.name)
            if target.name in plan.kept and target.name not in plan.retiered and old is not None:
                old.target = target  # equal identity; the new object is what the scheduler holds
                fresh[target.name] = old
                continue
            # A retiered target (its tier's settings changed, which may reshape a kind's state) is
            # carried like a changed one, its lines formatted again (~25 us per target, only on a
            # reload that edits a tier).
            carried = old if (target.name in plan.changed or target.name in plan.retiered) else None
            tier = config.tiers[target.tier]
            kinds = {k: self.kinds[k].new_state(target, carried.kinds.get(k) if carried else None, tier)
                     for k in target.probes}
            state = TargetState(target, kinds, self.extra)
            if carried is not None:
                state.carry(carried)
            fresh[target.name] = state
        core_rows: tuple[list[bytes], ...] = tuple([] for _ in CORE_FAMILIES)
        kind_rows = {k: tuple([] for _ in kind.families) for k, kind in self.kinds.items()}
        old_core, old_kind = self.core_rows, self.kind_rows
        for index, state in enumerate(fresh.values()):
            # A kept target (placed before: index >= 0) takes the lines it has in the old rows.
            # Formatting them again took ~25 us per target on the loop, ~250 ms at 10,000 targets
            # for every applied reload, and put 25 MB of new text beside the old.
            old_index, old_slots, state.index = state.index, state.slots, index
            kept = old_index >= 0
            lines = [row[old_index] for row in old_core] if kept else state.core_fragments()
            for row, fragment in zip(core_rows, lines):
                row.append(fragment)
            slots = []
            for i, (k, kstate) in enumerate(state.kinds.items()):
                rows = kind_rows[k]
                slots.append(len(rows[0]) if rows else 0)
                lines = ([row[old_slots[i]] for row in old_kind[k]] if kept
                         else self.kinds[k].fragments(kstate, state.key))
                for row, fragment in zip(rows, lines):
                    row.append(fragment)
            state.slots = tuple(slots)
        # Assigned whole, so the render thread sees the old set or the new, never half.
        self.core_rows, self.kind_rows = core_rows, kind_rows
        self.targets = fresh
        self.tiers = dict(config.tiers)
        # (tier, probe) pairs in use: their skip counters are exported from zero, so increase() sees the first.
        self.in_use = sorted({(t.tier, k) for t in config.targets for k in t.probes})
        for tier in config.tiers:
            self.lag.setdefault(tier, Histogram(LAG_BUCKETS))
        self.tally = TierTally.of(fresh.values())

    def record(self, state: TargetState, kind: str, result: ProbeResult, lag: float) -> None:
        """Fold one result into its target's state and re-format that target's lines."""
        last_run = state.last_run
        was_up, was_failing = state.up, kind in state.reasons
        # Another success of a probe that succeeded last time (nearly every result): of the core
        # lines only its last-run time and its durations change, so only those two are rewritten.
        steady = result.ok and not was_failing and kind in last_run and result.tls is None and kind not in state.tls
        last_run[kind] = now = self._clock()
        state.observe(kind, result, now)
        self.tally.note(state, kind, was_up, was_failing, now)
        owner = self.kinds[kind]
        kstate = state.kinds[kind]
        owner.record(kstate, result)
        index = state.index
        rows = self.core_rows
        if steady:
            rows[_LAST_RUN][index] = state.last_run_fragment()
            rows[_DURATION][index] = state.durations_fragment()
        else:
            for row, fragment in zip(rows, state.core_fragments()):
                row[index] = fragment
        slot = state.slot(kind)
        for row, fragment in zip(self.kind_rows[kind], owner.fragments(kstate, state.key)):
            row[slot] = fragment
        tier = state.target.tier
        if lag >= 0:  # an extra cycle (scheduler.run_now) had no due time: no lag to count
            lag_hist = self.lag.get(tier)
            if lag_hist is None:  # not setdefault(): that built a throw-away Histogram per result
                lag_hist = self.lag[tier] = Histogram(LAG_BUCKETS)
            lag_hist.observe(lag)
        key = (tier, kind)
        hist = self.cycle.get(key)
        if hist is None:
            hist = self.cycle[key] = Histogram(CYCLE_BUCKETS)
        hist.observe(result.duration)


class TierTally:
    """Per tier: targets up and down, targets whose last cycle of each probe failed, and when each
    probe last ran; kept as results arrive (a few dict operations per result).

    Prometheus could count these from the per-target series, and the rules did: at 30,000 targets
    each such count read 30,000 series every 5 s, ~330 ms apiece on a 2-core machine, and the stale
    check's max over every target's last-run time ~160 ms (bench/bench_scaleout.py, 02:54 UTC).
    The agent already holds every figure, so it exports a handful of per-tier series instead.
    """

    __slots__ = ("configured", "up", "down", "failing", "last_run")

    def __init__(self) -> None:
        self.configured: Counter[str] = Counter()  # targets per tier; changes only with a reload
        self.up: Counter[str] = Counter()
        self.down: Counter[str] = Counter()
        self.failing: Counter[tuple[str, str]] = Counter()  # (tier, probe): targets whose last cycle failed
        self.last_run: dict[tuple[str, str], float] = {}  # (tier, probe): when its latest cycle ended

    @classmethod
    def of(cls, states: Iterable[TargetState]) -> TierTally:
        """Counted from scratch, after a reload changed the set of targets."""
        tally = cls()
        for state in states:
            tier = state.target.tier
            tally.configured[tier] += 1
            if state.up is not None:
                (tally.up if state.up else tally.down)[tier] += 1
            for kind in state.reasons:
                tally.failing[(tier, kind)] += 1
            for kind, ended in state.last_run.items():
                if ended > tally.last_run.get((tier, kind), 0.0):
                    tally.last_run[(tier, kind)] = ended
        return tally

    def note(self, state: TargetState, kind: str, was_up: int | None, was_failing: bool, now: float) -> None:
        """Fold in one result of ``kind``, given the target's `up` and that probe's failing before it."""
        tier = state.target.tier
        up = state.up
        if up != was_up:
            if was_up is not None:
                (self.up if was_up else self.down)[tier] -= 1
            (self.up if up else self.down)[tier] += 1
        failing = kind in state.reasons
        if failing != was_failing:
            self.failing[(tier, kind)] += 1 if failing else -1
        self.last_run[(tier, kind)] = now
