"""Runs every (target, probe kind) pair on its tier's interval, most urgent tier first.

Each job has a fixed phase inside its interval, derived from the target name,
so start-up and reloads spread probes evenly instead of bursting, and a
target's schedule survives reloads unchanged. Due jobs go through one ready
queue ordered by (tier priority, due time) and at most ``max_in_flight``
cycles run at once: when the agent cannot keep up, P0 is served first and
lower tiers wait. A job that falls a whole interval behind skips the missed
cycles (counted) instead of bursting to catch up; a probe that raises is
logged and counted as an ``internal`` failure, and the loop goes on.

``run_now`` adds an extra cycle outside the schedule (a parent checked the moment a
child fails, anchors confirming an isolation): it goes through the same ready queue
and in-flight bound, leaves the job's phase alone, and reports no lag (-1).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from agent.reload import Plan
from common.model import Target, Tier
from common.ticker import DEFAULT_TICK, grid_number
from probes.base import REASON_INTERNAL, Probe, ProbeKind, ProbeResult

log = structlog.get_logger("lifeline.scheduler")

# (owner, kind, result, lag): ``owner`` is whatever the caller of ``apply`` gave for the target
# (the metrics store's TargetState), handed back with each of its results.
Sink = Callable[[Any, str, ProbeResult, float], None]
# Phase slots hold about this many cycles, are at most this wide, and at least one tick.
CYCLES_PER_SLOT = 20
PHASE_GRID_MAX = 0.05
# An extra cycle is not started within this long of the job's last start: a thousand
# children failing together ask for their parent once, not a thousand times.
EXTRA_MIN_GAP = 1.0
NO_LAG = -1.0  # the lag handed to the sink for an extra cycle


class Job:
    __slots__ = ("target", "tier", "kind", "probe", "owner", "state", "interval", "due", "running", "cancelled",
                 "key", "started", "extra")

    def __init__(self, target: Target, tier: Tier, kind: str, probe: Probe, owner: Any, state: Any,
                 interval: float, now: float, grid: float = 0.0) -> None:
        self.target, self.tier, self.kind, self.probe = target, tier, kind, probe
        self.owner, self.state = owner, state  # the target's state holder, and the kind's own state
        self.interval = interval
        self.key = (target.tier, kind)
        phase = zlib.crc32(f"{target.name}/{kind}".encode()) / 2**32 * self.interval
        if grid > 0:
            # Phases on a grid (Scheduler.phase_grid): jobs sharing a slot start, and send
            # their spaced echoes, in the same wakeup.
            phase -= phase % grid
        # First due time: the next moment at this job's phase, within one interval.
        self.due = now - (now % self.interval) + phase
        if self.due < now:
            self.due += self.interval
        self.running = False
        self.cancelled = False
        self.started = -math.inf  # loop time of the last start
        self.extra = False  # an extra cycle is queued or running


class Scheduler:
    def __init__(self, kinds: Mapping[str, ProbeKind], probes: Mapping[str, Probe], sink: Sink,
                 max_in_flight: int = 2000, loop: asyncio.AbstractEventLoop | None = None,
                 tick: float = DEFAULT_TICK) -> None:
        self.kinds = kinds
        self.probes = probes
        self.tick = tick
        self.sink = sink
        self.max_in_flight = max_in_flight
        self._loop = loop
        self._jobs: dict[tuple[str, str], Job] = {}
        self._timers: list[tuple[float, int, Job]] = []  # (due, seq, job)
        self._ready: list[tuple[int, float, int, Job, bool]] = []  # (priority, due, seq, job, extra)
        self._seq = itertools.count()
        self._in_flight = 0
        self._skipped: Counter[tuple[str, str]] = Counter()
        self._extra: Counter[tuple[str, str]] = Counter()  # extra cycles started, by (tier, kind)
        self._waker: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def stats(self) -> dict[str, Any]:
        return {"in_flight": self._in_flight, "queued": len(self._ready), "skipped": dict(self._skipped),
                "extra": dict(self._extra), "jobs": len(self._jobs)}

    def apply(self, plan: Plan, owners: Mapping[str, Any]) -> None:
        """Follow ``plan``: its removed jobs stop, its kept jobs keep their schedule, its added ones start.

        ``owners`` maps each target name to its state holder, whose ``kinds[kind]`` is the state
        passed to the probe; the holder comes back to the sink with each result.
        """
        now = self.loop.time()
        for key in plan.jobs_removed:
            job = self._jobs.pop(key, None)
            if job is not None:
                job.cancelled = True  # lazily dropped from the heaps
        if not plan.jobs_added:
            self._wake()
            return
        config = plan.new
        specs = []
        per_interval: Counter[float] = Counter()  # over every job, kept ones too: it sets the phase grid
        for target in config.targets:
            tier = config.tiers[target.tier]
            for kind in target.probes:
                interval = self.kinds[kind].interval(tier, target.setting(kind))
                per_interval[interval] += 1
                if (target.name, kind) in plan.jobs_added:
                    specs.append((target, tier, kind, interval))
        for target, tier, kind, interval in specs:
            old = self._jobs.get((target.name, kind))
            if old is not None:
                old.cancelled = True
            owner = owners[target.name]
            job = Job(target, tier, kind, self.probes[kind], owner, owner.kinds[kind], interval, now,
                      self.phase_grid(interval, per_interval[interval]))
            self._jobs[(target.name, kind)] = job
            heapq.heappush(self._timers, (job.due, next(self._seq), job))
        self._wake()

    def phase_grid(self, interval: float, jobs: int) -> float:
        """Width of the phase slots for ``jobs`` jobs sharing ``interval``: a multiple of the tick.

        Wakeups, not echoes, are most of the CPU at 1k targets on small VMs: 50 ms slots
        (5 cycles each) took 1k targets from ~150 to ~20 wakeups/s and CPU per 1,000 echoes
        from 0.31 to 0.10 s. Crowded slots make their last cycles start late: 50 per slot at
        10k targets put lag p99 at 35 ms; 20 per slot (20 ms) keeps it near 5 ms.
        """
        grid = min(PHASE_GRID_MAX, interval / 100, interval * CYCLES_PER_SLOT / max(jobs, 1))
        return max(self.tick, grid // self.tick * self.tick)

    def _wake(self) -> None:
        if self._waker is not None and not self._waker.done():
            self._waker.set_result(None)

    async def run(self) -> None:
        loop = self.loop
        while not self._stopped:
            now = loop.time()
            timers, ready = self._timers, self._ready
            while timers and timers[0][0] <= now:
                due, seq, job = heapq.heappop(timers)
                if not job.cancelled:
                    heapq.heappush(ready, (job.tier.priority, due, seq, job, False))
            while ready and self._in_flight < self.max_in_flight:
                _, due, _, job, extra = heapq.heappop(ready)
                if job.cancelled:
                    continue
                if extra:
                    if job.running or now - job.started < EXTRA_MIN_GAP:
                        job.extra = False  # a cycle on its way or just done: its result will do
                    else:
                        self._extra[job.key] += 1
                        self._start(job, NO_LAG, now)
                else:
                    self._dispatch(job, due, now)
            self._waker = loop.create_future()
            # Wake on the engine's tick grid (agent/ticker.py): cycles due within
            # one tick start together, sharing one wakeup with the echoes due then.
            handle = loop.call_at(grid_number(timers[0][0], self.tick) * self.tick, self._wake) if timers else None
            try:
                await self._waker
            finally:
                if handle is not None:
                    handle.cancel()
                self._waker = None

    def _dispatch(self, job: Job, due: float, now: float) -> None:
        lag = now - due
        if lag >= job.interval:
            # Too far behind: skip the missed cycles rather than burst to catch up.
            missed = int(lag // job.interval)
            self._skipped[job.key] += missed
            due += missed * job.interval
            lag = now - due
        job.due = due + job.interval
        heapq.heappush(self._timers, (job.due, next(self._seq), job))
        if job.running:
            if not job.extra:  # an extra cycle running now stands in for this one, not a skip
                self._skipped[job.key] += 1  # the previous cycle is still running
            return
        self._start(job, lag, now)

    def run_now(self, name: str) -> int:
        """Queue an extra cycle of each of target ``name``'s jobs; returns how many were queued.

        A job already running, already queued for an extra cycle, or started within
        EXTRA_MIN_GAP is left alone.
        """
        now = self.loop.time()
        queued = 0
        for kind in self.kinds:
            job = self._jobs.get((name, kind))
            if job is None or job.running or job.extra or now - job.started < EXTRA_MIN_GAP:
                continue
            job.extra = True
            heapq.heappush(self._ready, (job.tier.priority, now, next(self._seq), job, True))
            queued += 1
        if queued:
            self._wake()
        return queued

    def _start(self, job: Job, lag: float, now: float) -> None:
        job.running = True
        job.started = now
        self._in_flight += 1
        # Probes that can run a cycle on callbacks (ICMP to a literal address) skip the
        # task and its coroutine chain: at 1,000 cycles/s that was ~10 % of the agent's CPU.
        try:
            if job.probe.submit(job.target, job.tier, job.state, lambda result: self._finished(job, lag, result)):
                return
        except Exception as exc:  # noqa: BLE001 - same contract as run(): count it, keep going
            log.exception("probe_crashed", target=job.target.name, tier=job.target.tier, probe=job.kind)
            self._finished(job, lag, ProbeResult(ok=False, reason=REASON_INTERNAL, detail=type(exc).__name__))
            return
        task = self.loop.create_task(self._run(job, lag))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finished(self, job: Job, lag: float, result: ProbeResult) -> None:
        """End of a callback-driven cycle; runs inside the probe's I/O callback, so it must not raise."""
        job.running = job.extra = False
        self._in_flight -= 1
        if self._ready:
            self._wake()
        if job.cancelled or self._stopped:
            return
        try:
            self.sink(job.owner, job.kind, result, lag)
        except Exception:  # noqa: BLE001 - a sink bug must not break the socket reader that called us
            log.exception("sink_failed", target=job.target.name, probe=job.kind)

    async def _run(self, job: Job, lag: float) -> None:
        try:
            result = await job.probe.run(job.target, job.tier, job.state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken probe must not stop the schedule
            log.exception("probe_crashed", target=job.target.name, tier=job.target.tier, probe=job.kind)
            result = ProbeResult(ok=False, reason=REASON_INTERNAL, detail=type(exc).__name__)
        finally:
            job.running = job.extra = False
            self._in_flight -= 1
            if self._ready:
                self._wake()
        if not job.cancelled:
            self.sink(job.owner, job.kind, result, lag)

    async def stop(self) -> None:
        self._stopped = True
        self._wake()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
