"""The /metrics body: joins the store's rows and what each kind renders, caches it, gzips it.

Order: the core per-target families, then each kind's per-target families
(registry order, only kinds some target uses), the tier families (core, then
each kind's thresholds), the agent's own series with each kind's probe-wide
series, and prometheus_client's process collector.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from agent import pgzip
from agent.maintenance.calendar import Calendar
from agent.suppression import SUPPRESSED_FAMILY, Suppressor
from agent.store import CORE_FAMILIES, MetricsStore
from common.textfmt import Family, escape, fmt
from probes.base import Probe, ProbeKind

_CORE_HEADERS = tuple(f.header for f in CORE_FAMILIES)
_CHUNK_TARGETS = 1000  # targets per rendered piece: fewer GIL round trips than 250 (scrape p50 80-94 vs 88-110 ms)

_TIER_FAMILIES = (
    ("priority", Family("lifeline_tier_priority", "gauge", "Tier priority; 0 is the most urgent.")),
    ("interval", Family("lifeline_tier_interval_seconds", "gauge", "Probe interval of the tier.")),
    ("timeout", Family("lifeline_tier_timeout_seconds", "gauge", "Per-echo timeout of the tier.")),
)

# Per-tier tallies of what every target's series say (agent/store.py TierTally): the rules count
# up, down and failing targets and find the stale probes from these few series, not from 30,000.
_TARGETS = Family("lifeline_tier_targets", "gauge", "Targets configured per tier.")
_TARGETS_UP = Family("lifeline_tier_targets_up", "gauge", "Targets of the tier whose last cycle succeeded (every probe).")
_TARGETS_DOWN = Family("lifeline_tier_targets_down", "gauge", "Targets of the tier whose last cycle failed.")
_PROBES_FAILING = Family("lifeline_tier_probes_failing", "gauge",
                         "Targets of the tier whose last cycle of this probe failed.")
_LAST_RUN = Family("lifeline_tier_probe_last_run_timestamp_seconds", "gauge",
                   "Unix time the latest cycle of this probe in the tier ended.")


@dataclass
class AgentStatus:
    """Lifecycle facts for self-metrics; written by the agent, read at render."""

    version: str = "0.0.0"
    config_digest: str = ""
    reload_ok: bool = True
    reload_success_time: float = 0.0
    scheduler_stats: Callable[[], dict[str, Any]] | None = None
    tasks: int = 0  # asyncio tasks, sampled on the loop (all_tasks() is not safe from this thread)
    extra_lines: Callable[[list[str]], None] | None = None  # e.g. the http_sd sources' series
    consensus_quorum: int = 0  # the config's consensus.quorum; 0 (majority) is not exported


class Renderer:
    """The exposition text of a store, in pieces."""

    def __init__(self, store: MetricsStore, kinds: Mapping[str, ProbeKind], status: AgentStatus,
                 probes: Mapping[str, Probe] | None = None, maintenance: Calendar | None = None,
                 suppressor: Suppressor | None = None) -> None:
        self.store, self.kinds, self.status = store, kinds, status
        self.probes = probes if probes is not None else {}  # filled as the agent opens them
        self.maintenance = maintenance  # windows active by the wall clock at render time
        self.suppressor = suppressor  # parent and isolation suppression

    def chunks(self) -> Iterator[bytes]:
        """Pieces of a few MB at most, joined in C from the per-family rows.

        No per-target Python work at scrape time; bounded pieces keep each GIL-holding
        join short (the loop waits behind it) and let gzip stream without the whole
        25 MB text of 10k targets ever being held at once.
        """
        store = self.store
        yield from _rows(_CORE_HEADERS, store.core_rows)
        for name, rows in list(store.kind_rows.items()):
            if rows and rows[0]:  # some target uses the kind
                yield from _rows(tuple(f.header for f in self.kinds[name].families), rows)
        yield from self._suppression()
        out: list[str] = []
        self._tiers(out)
        self._self(out)
        yield ("\n".join(out) + "\n").encode()

    def _suppression(self) -> Iterator[bytes]:
        """Maintenance, then lifeline_target_suppressed of every cause under one header, then
        isolation; each only when configured, so an agent using none exports none of them."""
        calendar, suppressor = self.maintenance, self.suppressor
        windows = calendar is not None and bool(calendar.windows)
        graph = suppressor is not None and suppressor.active
        if windows:
            now = calendar.clock()  # one instant for both: the active windows and the suppressed lines agree
            yield calendar.render(now)
        if windows or graph:
            yield SUPPRESSED_FAMILY.header
            if windows:
                yield calendar.suppressed_lines(now)
            if graph:
                yield suppressor.suppressed_lines()
        if suppressor is not None and suppressor.graph.anchors:
            yield suppressor.render()

    def _tiers(self, out: list[str]) -> None:
        tiers = sorted(self.store.tiers.values(), key=lambda t: (t.priority, t.name))
        tally, in_use = self.store.tally, self.store.in_use
        for family, counter in ((_TARGETS, tally.configured), (_TARGETS_UP, tally.up), (_TARGETS_DOWN, tally.down)):
            family.lines(out)
            out.extend(f'{family.name}{{tier="{escape(t.name)}"}} {counter.get(t.name, 0)}' for t in tiers)
        _PROBES_FAILING.lines(out)
        out.extend(f'lifeline_tier_probes_failing{{tier="{escape(t)}",probe="{k}"}} {tally.failing.get((t, k), 0)}'
                   for t, k in in_use)
        _LAST_RUN.lines(out)
        out.extend(f'lifeline_tier_probe_last_run_timestamp_seconds{{tier="{escape(t)}",probe="{k}"}} {ended:.3f}'
                   for t, k in in_use if (ended := tally.last_run.get((t, k))) is not None)
        Family("lifeline_tier_info", "gauge", "Tier metadata; value is always 1.").lines(out)
        out.extend(f'lifeline_tier_info{{tier="{escape(t.name)}",severity="{t.severity}"}} 1' for t in tiers)
        for attr, family in _TIER_FAMILIES:
            family.lines(out)
            out.extend(f'{family.name}{{tier="{escape(t.name)}"}} {fmt(getattr(t, attr))}' for t in tiers)
        for kind in self.kinds.values():
            kind.render_tiers(tiers, out)
        Family("lifeline_tier_probe_interval_seconds", "gauge", "How often each probe kind runs in the tier.").lines(out)
        out.extend(f'lifeline_tier_probe_interval_seconds{{tier="{escape(t.name)}",probe="{k}"}} '
                   f"{fmt(self.kinds[k].interval(t))}" for t in tiers for k in sorted(self.kinds))

    def _self(self, out: list[str]) -> None:
        store, st = self.store, self.status
        Family("lifeline_scheduler_lag_seconds", "histogram", "Delay between a cycle's due time and its start.").lines(out)
        for tier, hist in sorted(store.lag.items()):
            hist.lines("lifeline_scheduler_lag_seconds", f'tier="{escape(tier)}"', out)
        Family("lifeline_probe_cycle_duration_seconds", "histogram", "Duration of probe cycles.").lines(out)
        for (tier, kind), hist in sorted(store.cycle.items()):
            hist.lines("lifeline_probe_cycle_duration_seconds", f'tier="{escape(tier)}",probe="{kind}"', out)
        sched = st.scheduler_stats() if st.scheduler_stats else {}
        Family("lifeline_scheduler_skipped_cycles_total", "counter",
               "Cycles not run because the agent fell behind or the previous cycle was still running.").lines(out)
        skipped = {**dict.fromkeys(store.in_use, 0), **sched.get("skipped", {})}
        out.extend(f'lifeline_scheduler_skipped_cycles_total{{tier="{escape(t)}",probe="{k}"}} {n}'
                   for (t, k), n in sorted(skipped.items()))
        extra = sched.get("extra", {})
        if extra:  # only once some dependency or anchor asked for one: most agents never do
            Family("lifeline_scheduler_extra_cycles_total", "counter",
                   "Cycles run outside the schedule: a parent or an anchor checked at once after a failure, "
                   "children re-checked after their parent recovered.").lines(out)
            out.extend(f'lifeline_scheduler_extra_cycles_total{{tier="{escape(t)}",probe="{k}"}} {n}'
                       for (t, k), n in sorted(extra.items()))
        Family("lifeline_scheduler_in_flight", "gauge", "Probe cycles running now.").lines(out)
        out.append(f"lifeline_scheduler_in_flight {sched.get('in_flight', 0)}")
        Family("lifeline_scheduler_queued", "gauge", "Due cycles waiting for a free slot.").lines(out)
        out.append(f"lifeline_scheduler_queued {sched.get('queued', 0)}")
        Family("lifeline_asyncio_tasks", "gauge", "asyncio tasks alive in the agent (leak watch).").lines(out)
        out.append(f"lifeline_asyncio_tasks {st.tasks}")
        for probe in list(self.probes.values()):
            out.extend(probe.collect())
        if st.extra_lines is not None:
            st.extra_lines(out)
        if st.consensus_quorum:
            Family("lifeline_consensus_quorum", "gauge",
                   "Vantages that must see a target down before it pages critical (consensus.quorum).").lines(out)
            out.append(f"lifeline_consensus_quorum {st.consensus_quorum}")
        Family("lifeline_build_info", "gauge", "Build information; value is always 1.").lines(out)
        out.append(f'lifeline_build_info{{version="{escape(st.version)}",'
                   f'python_version="{platform.python_version()}"}} 1')
        Family("lifeline_config_info", "gauge", "SHA-256 of the loaded configuration files.").lines(out)
        out.append(f'lifeline_config_info{{digest="{st.config_digest}"}} 1')
        Family("lifeline_config_last_reload_successful", "gauge",
               "1 if the last configuration load succeeded.").lines(out)
        out.append(f"lifeline_config_last_reload_successful {int(st.reload_ok)}")
        Family("lifeline_config_last_reload_success_timestamp_seconds", "gauge",
               "Unix time of the last successful configuration load.").lines(out)
        out.append(f"lifeline_config_last_reload_success_timestamp_seconds {st.reload_success_time:.3f}")


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


def _one_malloc_arena() -> None:
    """Make every thread allocate from glibc's one main arena.

    Each scrape and gzip thread otherwise gets an arena of its own and keeps what it freed
    there between trims: at 10,000 targets with 4 concurrent scrapers, bench_icmp's peak RSS
    went from 119 to 111 MB with one arena (MALLOC_ARENA_MAX=1, one run each), fresh render
    and lag p99 no worse (36 ms, 4.8 ms). Python objects come from pymalloc under the GIL, so
    the arena's lock is barely contended. Done before the first scrape thread starts.
    """
    if _malloc_trim is not None:  # glibc
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX


def _release_free_memory() -> None:
    """Hand the render's freed buffers back to the kernel.

    A render allocates ~30 MB of short-lived MB-sized buffers (joined rows, gzip pieces) from
    whichever scrape or gzip thread runs it, and glibc keeps what each thread's arena freed:
    at 10,000 targets with 4 concurrent scrapers, peak RSS went from 117 to 152 MB. A trim
    after each fresh render (at most one a second) holds it at ~120 MB for well under a
    millisecond; a fixed mmap threshold did too but cost 30 ms of scrape p99 in page faults.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def _rows(headers: Iterable[bytes], rows: Iterable[list[bytes]]) -> Iterator[bytes]:
    for header, row in zip(headers, rows):
        yield header
        for start in range(0, len(row), _CHUNK_TARGETS):
            yield b"".join(row[start:start + _CHUNK_TARGETS])


class Exposition:
    """Renders at most every ``min_age`` seconds, from whatever thread scrapes, and caches it."""

    def __init__(self, renderer: Renderer, min_age: float = 1.0) -> None:
        self.renderer = renderer
        self.min_age = min_age
        self._lock = threading.Lock()
        self._rendered_at = float("-inf")
        self._plain = b""
        self._gzipped = b""
        self._pool: ThreadPoolExecutor | None = None
        self._process = CollectorRegistry()
        _one_malloc_arena()
        ProcessCollector(registry=self._process)

    def invalidate(self) -> None:
        """Make the next scrape render afresh (after a reload, so removed targets vanish at once)."""
        self._rendered_at = float("-inf")

    def get(self, gzipped: bool = False) -> bytes:
        with self._lock:
            now = time.monotonic()
            if now - self._rendered_at >= self.min_age:
                self._plain = b""
                self._gzipped = b""
                self._rendered_at = now
            if gzipped:
                if not self._gzipped:
                    # Compressed piece by piece in two threads (agent/pgzip.py); zlib releases
                    # the GIL, so the probe loop runs meanwhile. The plain text is built only if
                    # a client asks for it (Prometheus asks for gzip).
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gzip",
                                                        initializer=pgzip.lower_priority)
                    self._gzipped = pgzip.compress(self._chunks(), self._pool)
                    _release_free_memory()
                return self._gzipped
            if not self._plain:
                self._plain = b"".join(self._chunks())
                _release_free_memory()
            return self._plain

    def _chunks(self) -> Iterator[bytes]:
        yield from self.renderer.chunks()
        yield generate_latest(self._process)
