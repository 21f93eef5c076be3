"""What the status page and /status.json show: every target's state, per-tier counts, the agent's health.

Built from the metrics store on the HTTP thread (a read of plain attributes the
event loop writes; a half-updated target shows its previous or next state,
never a broken one), at most every ``min_age`` seconds, and cached as JSON
bytes, like /metrics: a wall of screens refreshing every few seconds costs one
build per interval.

Schema (documented in README, "Status page"):
``{"generated_at", "data_as_of", "agent": {...}, "tiers": [...], "sites": [...], "targets": [...]}``;
a target is ``{"target", "tier", "site", "category", "address", "state": "up"|"down"|"degraded"|"unknown",
"since", "failing": [{"probe", "reason"}], "degraded": str|null, "maintenance": str|null (the active
maintenance window covering it; the state stays what the probes say), "explained": {"cause": "parent"|
"isolated", "detail"}|null (a failure agent/suppression.py explains: no page), "labels": {...}, "history": [...]}``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from agent.exposition import AgentStatus
from agent.maintenance.calendar import Calendar
from agent.store import MetricsStore
from agent.suppression import Suppressor
from probes.base import ProbeKind

STATE_ORDER = {"down": 0, "degraded": 1, "unknown": 2, "up": 3}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class StatusBoard:
    """Builds and caches the status snapshot.

    Each target's JSON is kept and rebuilt only when its state changed (state, since,
    failing reasons, history, degraded reason), so a fresh build at 10,000 targets is
    mostly a join; the first version built every target's dict each time and took
    ~285 ms at 10k on a 2-core machine, holding the GIL (bench/bench_status.py).
    """

    def __init__(self, store: MetricsStore, kinds: Mapping[str, ProbeKind], status: AgentStatus,
                 min_age: float = 2.0, clock: Callable[[], float] = time.time,
                 maintenance: Calendar | None = None, suppressor: Suppressor | None = None) -> None:
        self.store, self.kinds, self.status = store, kinds, status
        self.maintenance = maintenance
        self.suppressor = suppressor
        self.min_age = min_age
        self._clock = clock
        self._lock = threading.Lock()
        self._built_at: dict[bool, float] = {}
        self._body: dict[bool, bytes] = {}
        self._rows: dict[str, tuple[tuple[Any, ...], bytes]] = {}  # target -> (state key, JSON)
        self._skipped_seen: tuple[float, int] = (0.0, 0)  # (when, total) to tell new skips from old

    def json(self, problems_only: bool = False) -> bytes:
        """The snapshot; ``problems_only`` lists only targets not up (what the page shows)."""
        with self._lock:
            now = time.monotonic()
            if now - self._built_at.get(problems_only, float("-inf")) >= self.min_age:
                self._body[problems_only] = self._build(problems_only)
                self._built_at[problems_only] = now
            return self._body[problems_only]

    def invalidate(self) -> None:
        self._built_at.clear()

    def snapshot(self, problems_only: bool = False) -> dict[str, Any]:
        return json.loads(self._build(problems_only))

    def _build(self, problems_only: bool) -> bytes:
        now = self._clock()
        store = self.store
        tiers = dict(store.tiers)
        counts: dict[str, dict[str, int]] = {name: dict.fromkeys(STATE_ORDER, 0) for name in tiers}
        sites: dict[str, dict[str, dict[str, int]]] = {}
        rows: list[tuple[tuple[Any, ...], bytes]] = []
        cache, fresh = self._rows, {}
        last_run = 0.0
        notes = self.maintenance.notes(now) if self.maintenance is not None else {}
        explained = self.suppressor.notes() if self.suppressor is not None else {}
        suppressed: dict[str, dict[str, int]] = {}  # tier -> cause -> targets down or degraded but explained
        for state in list(store.targets.values()):
            target = state.target
            tier = tiers.get(target.tier)
            degraded = None
            if state.up == 1 and tier is not None:
                degraded = next((why for kind, kstate in list(state.kinds.items())
                                 if (why := self.kinds[kind].degraded(kstate, tier))), None)
            status = ("unknown" if state.up is None else "down" if state.up == 0
                      else "degraded" if degraded else "up")
            if state.last_run:
                last_run = max(last_run, max(state.last_run.values()))
            counts.setdefault(target.tier, dict.fromkeys(STATE_ORDER, 0))[status] += 1
            sites.setdefault(target.site, {}).setdefault(target.tier, dict.fromkeys(STATE_ORDER, 0))[status] += 1
            note = notes.get(target.name)
            why = explained.get(target.name)
            for cause, present in (("maintenance", note), (why and why[0], why)):
                if present is not None and status in ("down", "degraded"):
                    by_cause = suppressed.setdefault(target.tier, {})
                    by_cause[cause] = by_cause.get(cause, 0) + 1
            key = (target, status, state.since, len(state.history or ()), tuple(state.reasons.items()), degraded, note,
                   why)
            hit = cache.get(target.name)
            row = hit[1] if hit is not None and hit[0] == key else self._row(state, status, degraded, note, why)
            fresh[target.name] = (key, row)
            if problems_only and status == "up":
                continue
            priority = tier.priority if tier else 99
            rows.append(((STATE_ORDER[status], priority, state.since or float("inf"), target.name), row))
        self._rows = fresh  # removed targets' rows go with them
        rows.sort(key=lambda r: r[0])
        ordered = sorted(tiers.values(), key=lambda tier: (tier.priority, tier.name))
        head = {
            "generated_at": _iso(now),
            "data_as_of": _iso(last_run or None),  # the newest result: a frozen agent shows an old time
            "agent": self._agent(now, last_run),
            "tiers": [{"tier": tier.name, "priority": tier.priority, "severity": tier.severity,
                       "targets": sum(counts[tier.name].values()), **counts[tier.name],
                       "suppressed": suppressed.get(tier.name, {})} for tier in ordered],
            "sites": [{"site": name, "tiers": by_tier} for name, by_tier in sorted(sites.items())],
            "targets": None,
        }
        text = json.dumps(head, ensure_ascii=False, separators=(",", ":")).encode()
        return text[:-len(b"null}")] + b"[" + b",".join(r for _, r in rows) + b"]}"

    def _row(self, state: Any, status: str, degraded: str | None, maintenance: str | None = None,
             explained: tuple[str, str] | None = None) -> bytes:
        target = state.target
        return json.dumps({
            "target": target.name, "tier": target.tier, "site": target.site, "category": target.category,
            "address": target.address, "probes": list(target.probes), "state": status, "since": _iso(state.since),
            "failing": [{"probe": k, "reason": r} for k, r in list(state.reasons.items())],
            "degraded": degraded, "maintenance": maintenance,
            "explained": {"cause": explained[0], "detail": explained[1]} if explained else None,
            "labels": dict(target.labels),
            "history": [{"at": _iso(at), "state": "up" if up else "down",
                         "failing": [dict(zip(("probe", "reason"), f.split(":", 1))) for f in failing]}
                        for at, up, failing in list(state.history or ())],
        }, ensure_ascii=False, separators=(",", ":")).encode()

    def _agent(self, now: float, last_run: float) -> dict[str, Any]:
        st = self.status
        sched = st.scheduler_stats() if st.scheduler_stats else {}
        skipped = sum(sched.get("skipped", {}).values())
        seen_at, seen = self._skipped_seen
        if now - seen_at > 60:  # compare with about a minute ago: old skips are history
            self._skipped_seen = (now, skipped)
        problems = []
        if not st.reload_ok:
            problems.append("the last configuration reload failed; the previous configuration is running")
        if skipped > seen:
            problems.append(f"{skipped - seen} probe cycles skipped recently: the agent is overloaded")
        if sched.get("queued", 0) > 0:
            problems.append(f"{sched['queued']} probe cycles waiting for a free slot")
        if last_run and now - last_run > 120:
            problems.append(f"no probe result for {now - last_run:.0f}s: the data below is stale")
        if self.suppressor is not None and self.suppressor.isolated:
            problems.append("probe site isolated: every anchor is down, so the targets' failures below say "
                            "nothing about them")
        return {"version": st.version, "healthy": not problems, "problems": problems,
                "config_reload_ok": st.reload_ok, "targets": len(self.store.targets)}
