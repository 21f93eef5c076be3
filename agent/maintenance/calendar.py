"""Which windows are active now, and the maintenance series, from the wall clock at render time.

Per configuration the calendar works out once which of this agent's targets each
window covers and formats each covered target's lines for both states; per render it asks
each window whether it is active (cached until its next boundary, so usually a
comparison) and joins the prepared lines for that set of active windows (cached per
set). At 10,000 targets a render with a changed set costs one join, a few ms.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from agent.maintenance.model import Window
from common.model import Target
from common.textfmt import Family, escape, labels

ACTIVE_TARGET_FAMILY = Family("lifeline_maintenance_active", "gauge",
                              "1 while a maintenance window covering the target is active, else 0 (present for "
                              "every target some window covers); probing goes on.")
INFO_FAMILY = Family("lifeline_maintenance_window_info", "gauge", "A configured maintenance window (value 1).")
ACTIVE_FAMILY = Family("lifeline_maintenance_window_active", "gauge", "1 while the maintenance window is active.")
COVERED_FAMILY = Family("lifeline_maintenance_window_targets", "gauge",
                        "Targets of this agent the maintenance window covers.")
NEXT_FAMILY = Family("lifeline_maintenance_window_next_start_timestamp_seconds", "gauge",
                     "Unix time the maintenance window next starts; absent when it never will again.")


@dataclass
class _Span:
    """A window's state between two boundaries: valid for ``since <= t < until``."""

    since: float
    until: float
    current: tuple[datetime, datetime] | None
    next_start: datetime | None


@dataclass(frozen=True)
class _Setup:
    windows: tuple[Window, ...]
    covered: tuple[tuple[str, ...], ...]  # per window, its targets in config order
    names: tuple[str, ...]  # every target some window covers, config order
    zero: tuple[bytes, ...]  # per such target, its lifeline_maintenance_active line with 0 and 1,
    one: tuple[bytes, ...]
    suppressed: tuple[bytes, ...]  # and its lifeline_target_suppressed line


class Calendar:
    """The running configuration's windows over this agent's targets."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._setup = _Setup((), (), (), (), (), ())
        self._spans: dict[str, _Span] = {}
        self._bodies: dict[frozenset[str], tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()  # renders of /metrics and /status.json come from HTTP threads

    def apply(self, windows: Iterable[Window], targets: Iterable[Target],
              extra: tuple[tuple[str, str], ...] = ()) -> None:
        """``extra``: labels every target series carries besides target and tier (``vantage``)."""
        windows, targets = tuple(windows), tuple(targets)
        covered = tuple(tuple(t.name for t in targets if w.scope.covers(t)) for w in windows)
        under = {name for names in covered for name in names}
        keys = [labels((("target", t.name), ("tier", t.tier), *extra)).encode() for t in targets if t.name in under]
        setup = _Setup(windows=windows, covered=covered,
                       names=tuple(t.name for t in targets if t.name in under),
                       zero=tuple(b"lifeline_maintenance_active{%s} 0\n" % k for k in keys),
                       one=tuple(b"lifeline_maintenance_active{%s} 1\n" % k for k in keys),
                       suppressed=tuple(b'lifeline_target_suppressed{%s,cause="maintenance"} 1\n' % k
                                        for k in keys))
        with self._lock:
            # Assigned whole: a render sees the old setup or the new one.
            self._setup, self._spans, self._bodies = setup, {}, {}

    @property
    def windows(self) -> tuple[Window, ...]:
        return self._setup.windows

    def coverage(self) -> dict[str, tuple[str, ...]]:
        """Window name -> the targets it covers, config order."""
        setup = self._setup
        return {w.name: c for w, c in zip(setup.windows, setup.covered)}

    def span(self, window: Window, now: float) -> _Span:
        with self._lock:
            cached = self._spans.get(window.name)
            if cached is not None and cached.since <= now < cached.until:
                return cached
        moment = datetime.fromtimestamp(now, timezone.utc)
        current, nxt = window.around(moment)
        until = min(current[1].timestamp() if current else float("inf"), nxt.timestamp() if nxt else float("inf"))
        span = _Span(since=now, until=until, current=current, next_start=nxt)
        with self._lock:
            self._spans[window.name] = span
        return span

    def active(self, now: float | None = None) -> list[tuple[Window, tuple[str, ...], _Span]]:
        """Active windows with the targets they cover, in config order."""
        now = self.clock() if now is None else now
        setup = self._setup
        out = []
        for window, covered in zip(setup.windows, setup.covered):
            span = self.span(window, now)
            if span.current is not None:
                out.append((window, covered, span))
        return out

    def notes(self, now: float | None = None) -> dict[str, str]:
        """Target name -> the first active window covering it (for the status page)."""
        out: dict[str, str] = {}
        for window, covered, _ in self.active(now):
            for name in covered:
                out.setdefault(name, window.name)
        return out

    def _bodies_at(self, now: float) -> tuple[list[_Span], frozenset[str], tuple[bytes, bytes]]:
        """Spans, active window names, and (lifeline_maintenance_active lines, suppressed lines)."""
        setup = self._setup
        spans = [self.span(w, now) for w in setup.windows]
        active = frozenset(w.name for w, s in zip(setup.windows, spans) if s.current is not None)
        bodies = self._bodies.get(active)
        if bodies is None:
            covered = {name for w, c in zip(setup.windows, setup.covered) if w.name in active for name in c}
            rows = tuple(zip(setup.names, setup.zero, setup.one, setup.suppressed))
            bodies = (b"".join([one if name in covered else zero for name, zero, one, _ in rows]),
                      b"".join([line for name, _, _, line in rows if name in covered]))
            if len(self._bodies) > 64:  # many windows flipping: keep the cache bounded
                self._bodies.clear()
            self._bodies[active] = bodies
        return spans, active, bodies

    def suppressed_lines(self, now: float | None = None) -> bytes:
        """lifeline_target_suppressed{cause="maintenance"} lines, without the family header (the
        exposition writes one header for every cause, agent/suppression.py has the others)."""
        if not self._setup.windows:
            return b""
        return self._bodies_at(self.clock() if now is None else now)[2][1]

    def render(self, now: float | None = None) -> bytes:
        """The maintenance families; nothing when no window is configured."""
        now = self.clock() if now is None else now
        setup = self._setup
        if not setup.windows:
            return b""
        spans, active, (body, _) = self._bodies_at(now)
        body = ACTIVE_TARGET_FAMILY.header + body
        out: list[str] = []
        INFO_FAMILY.lines(out)
        out.extend(f'lifeline_maintenance_window_info{{window="{escape(w.name)}"}} 1' for w in setup.windows)
        ACTIVE_FAMILY.lines(out)
        out.extend(f'lifeline_maintenance_window_active{{window="{escape(w.name)}"}} {int(w.name in active)}'
                   for w in setup.windows)
        COVERED_FAMILY.lines(out)
        out.extend(f'lifeline_maintenance_window_targets{{window="{escape(w.name)}"}} {len(c)}'
                   for w, c in zip(setup.windows, setup.covered))
        NEXT_FAMILY.lines(out)
        out.extend(f'lifeline_maintenance_window_next_start_timestamp_seconds{{window="{escape(w.name)}"}} '
                   f"{s.next_start.timestamp():.0f}" for w, s in zip(setup.windows, spans) if s.next_start)
        return body + ("\n".join(out) + "\n").encode()
