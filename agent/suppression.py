"""Failures explained by something else: a parent that is down, or the probe site cut off.

Runs on the event loop after each result is stored (``observe``) and decides, per
failing target, whether its failure is explained:

* ``parent``: one of its parents (agent/topology.py) is down, or recovered only after
  the target's failing cycle had begun. The explanation holds until the target's own
  next cycle, started after the parent recovered, says otherwise: a camera whose last
  result is a failure from while its router was dark must not page when the router
  comes back (the race a `for:` clause hides on fast tiers, and a 30 s tier exposes);
* ``isolated``: every anchor has failed two cycles in a row (the site's own upstreams),
  so this agent cannot tell anything about its targets; one page, for the agent.

Never swallow a real fault: a target whose outage was confirmed (CONFIRM failed cycles,
the down rule's count) while nothing explained it keeps paging whatever its parent does
later, so it still gets its resolved notice; and when a parent recovers its suppressed
children are probed at once, so a child dead for its own reason pages even while the
parent flaps.

Extra cycles (``Scheduler.run_now``): a target's first failure probes its parents and
the anchors at once rather than at their next turn, and each later result of a child
explained by a down parent asks that parent again (its recovery is seen at the child's
pace); an anchor's first failure probes every anchor (two failed cycles confirm
isolation within about one timeout); a parent's recovery and the end of an isolation
re-probe the targets they were explaining.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from agent.topology import Graph
from common.textfmt import Family, escape
from probes.base import ProbeResult

log = structlog.get_logger("lifeline.suppression")

# Failed cycles in a row that make an outage "confirmed": the count LifelineTargetDown
# pages on (rules/lifeline.rules.yml, lifeline_target_consecutive_failures >= 3).
CONFIRM = 3
# Failed cycles in a row, of every anchor, that make the agent isolated.
ANCHOR_CONFIRM = 2

PARENT, ISOLATED = "parent", "isolated"

SUPPRESSED_FAMILY = Family("lifeline_target_suppressed", "gauge",
                           "Present (value 1) only while the target's alerts are suppressed, like ALERTS; cause "
                           "says why: maintenance (an active window covers it), parent (a target it depends_on "
                           "is down) or isolated (every anchor of this agent is down).")
ISOLATED_FAMILY = Family("lifeline_agent_isolated", "gauge",
                         "1 while every anchor has failed its last two cycles: this agent's probe site is cut off "
                         "and its targets' failures say nothing about them.")
ANCHOR_FAMILY = Family("lifeline_anchor_up", "gauge", "1 if the anchor target's last probe cycle succeeded.")


class Suppressor:
    """Parent and isolation suppression over the metrics store's target states."""

    def __init__(self, run_now: Callable[[str], int], clock: Callable[[], float] = time.time) -> None:
        self._run_now = run_now
        self._clock = clock
        self.graph = Graph()
        self._states: Mapping[str, Any] = {}  # name -> TargetState (agent/store.py)
        self._anchors: frozenset[str] = frozenset()
        self.active = False  # the graph has parents or anchors
        self.causes: dict[str, tuple[str, str]] = {}  # name -> (cause, what explains it)
        self._own: set[str] = set()  # failing targets whose outage is their own
        self._was_up: dict[str, int | None] = {}  # parents' and anchors' last `up`
        self.isolated = False
        self._isolation_end = float("-inf")  # when the last isolation ended
        self._lines = b""
        self._lock = threading.Lock()  # renders come from HTTP threads

    def apply(self, graph: Graph, states: Mapping[str, Any]) -> None:
        """A new configuration: its graph, and the store's target states by name."""
        self.graph, self._states = graph, states
        self._anchors = frozenset(graph.anchors)
        self.active = bool(graph.parents or graph.anchors)
        watched = set(graph.children) | self._anchors
        self._was_up = {n: states[n].up for n in watched if n in states}
        self.causes = {n: c for n, c in self.causes.items() if n in states}
        self._own &= set(states)
        for name in list(self.causes):  # a parent removed by the reload explains nothing any more
            if self.causes[name][0] == PARENT and not graph.parents.get(name):
                del self.causes[name]
        self._update_isolation()
        self._refresh()

    def observe(self, state: Any, kind: str, result: ProbeResult) -> None:
        """After the store folded ``result`` into ``state``: re-judge the target and what hangs on it."""
        if not self.active and not self.causes:
            return  # no depends_on, no anchors, nothing left explained: every result passes through here
        name = state.target.name
        # When the cycle that gave ``result`` began: the store has just stamped its end.
        started = state.last_run[kind] - result.duration
        changed = False
        if state.up == 0 and state.failing == 1:
            # The outage's first failed cycle: ask the parents and the anchors now.
            for parent in self.graph.parents.get(name, ()):
                self._run_now(parent)
            for anchor in self._anchors:
                self._run_now(anchor)
        elif self.causes.get(name, ("",))[0] == PARENT:
            # Explained by a parent that is down: each of the child's results asks it again, so its
            # recovery is seen within about a child interval, not at its own (maybe slow) turn.
            # The scheduler's EXTRA_MIN_GAP bounds this to about one cycle a second per parent.
            for parent in self.graph.parents.get(name, ()):
                if (ps := self._states.get(parent)) is not None and ps.up == 0:
                    self._run_now(parent)
        if name in self._was_up:
            was, now = self._was_up[name], state.up
            if was != now:
                self._was_up[name] = now
                changed |= self._transition(name, was, now)
        if name in self._anchors:  # the second failure in a row confirms, with no change of `up`
            changed |= self._update_isolation()
        changed |= self._judge(name, state, started)
        if changed:
            self._refresh()

    def _transition(self, name: str, was: int | None, now: int | None) -> bool:
        """A parent or an anchor changed state."""
        changed = False
        if name in self._anchors:
            if now == 0 and was != 0:
                for anchor in self._anchors:  # confirm (or not) the isolation within a timeout
                    self._run_now(anchor)
        children = self.graph.children.get(name, ())
        if now == 0:
            for child in children:  # children already failing are explained from now on
                cs = self._states.get(child)
                if cs is not None and cs.up == 0 and child not in self._own and child not in self.causes:
                    self.causes[child] = (PARENT, name)
                    changed = True
        elif now == 1:
            for child in children:  # a fresh cycle of each explained child decides whether it pages
                if self.causes.get(child, ("",))[0] == PARENT:
                    self._run_now(child)
        return changed

    def _update_isolation(self) -> bool:
        anchors = [self._states.get(a) for a in self._anchors]
        isolated = bool(anchors) and all(s is not None and s.up == 0 and s.failing >= ANCHOR_CONFIRM
                                         for s in anchors)
        if isolated == self.isolated:
            return False
        self.isolated = isolated
        if isolated:
            log.warning("probe_site_isolated", anchors=sorted(self._anchors))
            for name, st in self._states.items():
                if st.up == 0 and name not in self._own:
                    self.causes[name] = (ISOLATED, "")
        else:
            self._isolation_end = self._clock()
            log.warning("probe_site_reconnected", anchors=sorted(self._anchors))
            for name, (cause, _) in list(self.causes.items()):
                if cause == ISOLATED:
                    self._run_now(name)
        return True

    def _judge(self, name: str, state: Any, started: float) -> bool:
        """Explained or not, after the target's own result from a cycle begun at ``started``."""
        before = self.causes.get(name)
        if state.up != 0:
            self._own.discard(name)
            self.causes.pop(name, None)
            return before is not None
        if name in self._own:
            return False
        cause = None
        if self.isolated or self._isolation_end > started:
            cause = (ISOLATED, "")
        else:
            for parent in self.graph.parents.get(name, ()):
                ps = self._states.get(parent)
                if ps is None:
                    continue
                if ps.up == 0 or (ps.up == 1 and ps.since is not None and ps.since > started):
                    cause = (PARENT, parent)
                    break
        if cause is not None:
            self.causes[name] = cause
        else:
            self.causes.pop(name, None)
            if state.failing >= CONFIRM and self._parents_fresh(name, state) and not self._anchors_failing():
                self._own.add(name)
        return cause != before

    def _parents_fresh(self, name: str, state: Any) -> bool:
        """Every parent has a result from after this outage began: "parents up" is known, not assumed."""
        since = state.since or 0.0
        for parent in self.graph.parents.get(name, ()):
            ps = self._states.get(parent)
            if ps is not None and (not ps.last_run or max(ps.last_run.values()) < since):
                return False
        return True

    def _anchors_failing(self) -> bool:
        """Every anchor's last cycle failed: maybe an isolation not yet confirmed; judge nobody yet."""
        return bool(self._anchors) and all((s := self._states.get(a)) is not None and s.up == 0
                                           for a in self._anchors)

    def _refresh(self) -> None:
        states = self._states
        lines = b"".join([b'lifeline_target_suppressed{%s,cause="%s"} 1\n' % (states[n].key, c.encode())
                          for n, (c, _) in self.causes.items() if n in states])
        with self._lock:
            self._lines = lines

    def suppressed_lines(self) -> bytes:
        with self._lock:
            return self._lines

    def render(self) -> bytes:
        """lifeline_agent_isolated and lifeline_anchor_up (the suppressed lines go with maintenance's)."""
        out: list[str] = []
        ISOLATED_FAMILY.lines(out)
        out.append(f"lifeline_agent_isolated {int(self.isolated)}")
        if self._anchors:
            ANCHOR_FAMILY.lines(out)
            for name in self.graph.anchors:
                st = self._states.get(name)
                if st is not None and st.up is not None:
                    out.append(f'lifeline_anchor_up{{anchor="{escape(name)}"}} {st.up}')
        return ("\n".join(out) + "\n").encode()

    def notes(self) -> dict[str, tuple[str, str]]:
        """Target name -> (cause, what a person reads about it), for the status page."""
        return {name: (cause, f"depends on {by}, which is down or has just recovered" if cause == PARENT
                       else "this agent's probe site is isolated: every anchor is down")
                for name, (cause, by) in list(self.causes.items())}
