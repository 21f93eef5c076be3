"""The scheduler's task-free path for probes with ``submit`` (ICMP to literal addresses), with fake probes."""

from __future__ import annotations

import asyncio

from agent.config import DEFAULT_TIERS, Config
from common.model import Target
from tests.kit import TestScheduler, retier
from probes.base import Probe, ProbeResult


def _config(*names, interval=0.05):
    tiers = {n: retier(t, interval=interval, timeout=interval / 4, packets=1) for n, t in DEFAULT_TIERS.items()}
    targets = tuple(Target(name=n, address="127.0.0.1", tier="P0", category="c", site="s", labels=(),
                           probes=("icmp",)) for n in names)
    return Config(tiers=tiers, targets=targets)


async def _until(cond, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class CallbackProbe(Probe):
    """Finishes each cycle from a loop callback, as the ICMP engine does; ``mode`` picks a behaviour."""

    def __init__(self, mode="ok"):
        self.mode = mode
        self.submitted: list[str] = []
        self.ran: list[str] = []
        self.hold: list = []  # (callback, result) kept back when mode == "hold"

    def submit(self, target, tier, state, on_result):
        if self.mode == "decline":
            return False
        if self.mode == "raise":
            raise RuntimeError("broken submit")
        self.submitted.append(target.name)
        if self.mode == "hold":
            self.hold.append(on_result)
        else:
            asyncio.get_running_loop().call_soon(on_result, ProbeResult(ok=True))
        return True

    async def run(self, target, tier, state=None):
        self.ran.append(target.name)
        return ProbeResult(ok=True)


def _run(probe, names, until, sink=None):
    async def main():
        results = []
        sched = TestScheduler({"icmp": probe}, sink or (lambda t, k, r, lag: results.append((t.name, r))))
        sched.apply_config(_config(*names))
        runner = asyncio.create_task(sched.run())
        await _until(lambda: until(results, sched))
        stats, tasks = sched.stats(), len(sched._tasks)
        await sched.stop()
        runner.cancel()
        return results, stats, tasks
    return asyncio.run(main())


def test_results_arrive_without_a_task_per_cycle():
    probe = CallbackProbe()
    results, stats, tasks = _run(probe, ["a", "b"], lambda r, s: len(r) >= 6)
    assert {n for n, _ in results} == {"a", "b"} and all(r.ok for _, r in results)
    assert probe.ran == [] and tasks == 0


def test_declined_submit_falls_back_to_run():
    probe = CallbackProbe("decline")
    results, _, _ = _run(probe, ["named-host"], lambda r, s: len(r) >= 2)
    assert probe.ran and all(r.ok for _, r in results)


def test_a_raising_submit_is_an_internal_failure_and_the_schedule_goes_on():
    probe = CallbackProbe("raise")
    results, stats, _ = _run(probe, ["a"], lambda r, s: len(r) >= 3)
    assert all(not r.ok and r.reason == "internal" for _, r in results)
    assert stats["in_flight"] == 0


def test_a_cycle_still_running_is_not_started_again_and_is_counted_as_skipped():
    probe = CallbackProbe("hold")
    _, stats, _ = _run(probe, ["slow"], lambda r, s: s.stats()["skipped"].get(("P0", "icmp"), 0) >= 3)
    assert probe.submitted == ["slow"] and stats["in_flight"] == 1


def test_results_of_a_target_removed_while_in_flight_are_dropped():
    async def main():
        probe = CallbackProbe("hold")
        results = []
        sched = TestScheduler({"icmp": probe}, lambda t, k, r, lag: results.append(t.name))
        sched.apply_config(_config("gone", "kept"))
        runner = asyncio.create_task(sched.run())
        await _until(lambda: len(probe.hold) == 2)
        sched.apply_config(_config("kept"))
        for on_result in probe.hold:
            on_result(ProbeResult(ok=True))
        await sched.stop()
        runner.cancel()
        return results, sched.stats()
    results, stats = asyncio.run(main())
    assert results == ["kept"] and stats["in_flight"] == 0


def test_a_failing_sink_does_not_escape_into_the_probe_callback():
    calls = []

    def sink(target, kind, result, lag):
        calls.append(target.name)
        raise ValueError("bug in sink")

    probe = CallbackProbe()
    _, stats, _ = _run(probe, ["a"], lambda r, s: len(calls) >= 3, sink=sink)
    assert stats["in_flight"] <= 1  # the loop kept dispatching after each failure
