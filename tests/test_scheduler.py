"""Scheduler behaviour with fake probes: priority under saturation, failures, skips, reload diffs."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from agent.config import DEFAULT_TIERS, Config
from common.model import Target
from tests.kit import TestScheduler, retier
from probes.base import Probe, ProbeResult


def _tiers(interval: float):
    return {name: retier(t, interval=interval, timeout=interval / 4, packets=1)
            for name, t in DEFAULT_TIERS.items()}


def _config(targets, interval=0.2):
    return Config(tiers=_tiers(interval), targets=tuple(targets))


def _target(name, tier="P3"):
    return Target(name=name, address="127.0.0.1", tier=tier, category="c", site="s", labels=(), probes=("icmp",))


async def _until(cond, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class FakeProbe(Probe):
    def __init__(self, behaviour=None):
        self.started: list[str] = []
        self.behaviour = behaviour
        self.concurrent: dict[str, int] = {}
        self.max_concurrent_same_target = 0

    async def run(self, target, tier, state=None):
        self.started.append(target.name)
        self.concurrent[target.name] = self.concurrent.get(target.name, 0) + 1
        self.max_concurrent_same_target = max(self.max_concurrent_same_target, self.concurrent[target.name])
        try:
            if self.behaviour:
                return await self.behaviour(target)
            return ProbeResult(ok=True)
        finally:
            self.concurrent[target.name] -= 1


def test_p0_served_first_when_saturated():
    async def main():
        gate = asyncio.Event()

        async def behaviour(target):
            await gate.wait()
            return ProbeResult(ok=True)

        probe = FakeProbe(behaviour)
        sched = TestScheduler({"icmp": probe}, lambda *a: None, max_in_flight=1)
        targets = [_target(f"cam-{i}", "P3") for i in range(6)] + [_target("hospital", "P0"),
                                                                    _target("gov", "P1")]
        sched.apply_config(_config(targets, interval=10.0))
        for job in sched._jobs.values():  # make everything due now, lower tiers first
            job.due = 0.0
        sched._timers = [(0.0 if job.target.tier == "P3" else 0.001, i, job)
                         for i, job in enumerate(sched._jobs.values())]
        runner = asyncio.create_task(sched.run())
        await _until(lambda: len(probe.started) == 1 and sched.stats()["queued"] == 7)
        first = probe.started[0]
        gate.set()
        await _until(lambda: len(probe.started) == 8)
        await sched.stop()
        runner.cancel()
        return first, probe.started[1:]
    first, rest = asyncio.run(main())
    # Whatever held the only slot, P0 and then P1 go before the remaining P3 cameras.
    waiting = [n for n in ["hospital", "gov"] if n != first]
    assert rest[: len(waiting)] == waiting


def test_failing_probe_does_not_stop_the_loop():
    async def main():
        async def behaviour(target):
            if target.name == "broken":
                raise RuntimeError("bug in probe")
            return ProbeResult(ok=True)

        results: list[tuple[str, ProbeResult]] = []
        sched = TestScheduler({"icmp": FakeProbe(behaviour)}, lambda t, k, r, lag: results.append((t.name, r)))
        sched.apply_config(_config([_target("broken"), _target("fine")], interval=0.1))
        runner = asyncio.create_task(sched.run())
        await _until(lambda: sum(n == "fine" for n, _ in results) >= 3 and sum(n == "broken" for n, _ in results) >= 3)
        await sched.stop()
        runner.cancel()
        return results
    results = asyncio.run(main())
    broken = [r for n, r in results if n == "broken"]
    assert all(not r.ok and r.reason == "internal" for r in broken)
    assert all(r.ok for n, r in results if n == "fine")


def test_slow_probe_skips_cycles_and_never_overlaps_itself():
    async def main():
        async def behaviour(target):
            await asyncio.sleep(0.35)  # longer than the 0.1 s interval
            return ProbeResult(ok=True)

        probe = FakeProbe(behaviour)
        sched = TestScheduler({"icmp": probe}, lambda *a: None)
        sched.apply_config(_config([_target("slow")], interval=0.1))
        runner = asyncio.create_task(sched.run())
        await _until(lambda: len(probe.started) >= 3, timeout=5)
        await sched.stop()
        runner.cancel()
        return probe, sched.stats()
    probe, stats = asyncio.run(main())
    assert probe.max_concurrent_same_target == 1
    assert stats["skipped"][("P3", "icmp")] >= 4


def test_apply_keeps_unchanged_jobs_and_their_schedule():
    async def main():
        sched = TestScheduler({"icmp": FakeProbe()}, lambda *a: None)
        a, b = _target("a"), _target("b")
        assert sched.apply_config(_config([a, b], interval=5)) == (2, 0, 0)
        job_a = sched._jobs[("a", "icmp")]
        due = job_a.due
        c = _target("c")
        b_moved = replace(b, address="127.0.0.9")
        added, removed, kept = sched.apply_config(_config([a, b_moved, c], interval=5))
        assert (added, removed, kept) == (2, 1, 1)
        assert sched._jobs[("a", "icmp")] is job_a and job_a.due == due
        assert sched._jobs[("b", "icmp")].target.address == "127.0.0.9"
        assert sched.apply_config(_config([c], interval=5)) == (0, 2, 1)
        assert set(sched._jobs) == {("c", "icmp")}
    asyncio.run(main())


def test_phases_are_spread_across_the_interval():
    async def main():
        sched = TestScheduler({"icmp": FakeProbe()}, lambda *a: None)
        before = asyncio.get_running_loop().time()  # read before apply: due times are >= apply's clock
        sched.apply_config(_config([_target(f"cam-{i}") for i in range(1000)], interval=10))
        after = asyncio.get_running_loop().time()
        return [job.due - before for job in sched._jobs.values()], after - before
    offsets, elapsed = asyncio.run(main())
    assert all(0 <= o <= 10 + elapsed for o in offsets)
    # Ten one-second buckets each get roughly a tenth: no burst at start-up.
    buckets = [sum(int(o) == i for o in offsets) for i in range(10)]
    assert min(buckets) > 60 and max(buckets) < 140, buckets


@pytest.mark.parametrize("interval", [0.05, 0.2])
def test_lag_is_reported_to_the_sink(interval):
    async def main():
        lags = []
        sched = TestScheduler({"icmp": FakeProbe()}, lambda t, k, r, lag: lags.append(lag))
        sched.apply_config(_config([_target("x")], interval=interval))
        runner = asyncio.create_task(sched.run())
        await _until(lambda: len(lags) >= 3)
        await sched.stop()
        runner.cancel()
        return lags
    lags = asyncio.run(main())
    assert all(0 <= lag < interval for lag in lags)


def test_run_now_adds_one_extra_cycle_without_moving_the_schedule():
    async def main():
        gate = asyncio.Event()
        results: list[tuple[str, float]] = []

        async def behaviour(target):
            await gate.wait()
            return ProbeResult(ok=True)

        probe = FakeProbe(behaviour)
        sched = TestScheduler({"icmp": probe}, lambda owner, kind, result, lag: results.append((kind, lag)))
        sched.apply_config(_config([_target("router"), _target("cam")], interval=60.0))
        runner = asyncio.create_task(sched.run())
        job = sched._jobs[("router", "icmp")]
        due = job.due
        assert sched.run_now("router") == 1
        assert sched.run_now("router") == 0  # already queued: a second ask adds nothing
        await _until(lambda: probe.started == ["router"])
        assert sched.run_now("router") == 0  # running: its result will answer
        gate.set()
        await _until(lambda: len(results) == 1)
        assert results == [("icmp", -1.0)]  # an extra cycle has no lag to count
        assert sched.run_now("router") == 0  # started within EXTRA_MIN_GAP
        assert job.due == due  # the phase is untouched
        assert sched.run_now("nobody") == 0
        assert sched.stats()["skipped"] == {} and sched.stats()["extra"] == {("P3", "icmp"): 1}
        await sched.stop()
        runner.cancel()
    asyncio.run(main())
