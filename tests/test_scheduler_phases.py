"""Phase slots: jobs share start ticks (fewer wakeups) without crowding, and stay spread over the interval."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from agent.config import DEFAULT_TIERS, Config
from common.model import Target
from tests.kit import TestScheduler, retier


@pytest.mark.parametrize("jobs,expected", [(100, 0.05), (1000, 0.05), (10000, 0.02), (100000, 0.005)],
                         ids=["100", "1k", "10k", "100k"])
def test_grid_is_a_multiple_of_the_tick_between_one_tick_and_50_ms(jobs, expected):
    sched = TestScheduler({}, lambda *a: None, tick=0.005)
    assert sched.phase_grid(10.0, jobs) == pytest.approx(expected)


def test_short_intervals_keep_at_least_100_slots():
    sched = TestScheduler({}, lambda *a: None, tick=0.005)
    assert sched.phase_grid(1.0, 10) == pytest.approx(0.01)
    assert sched.phase_grid(0.1, 10) == pytest.approx(0.005)  # never below one tick


def test_due_times_fall_on_the_grid_and_stay_spread():
    async def main():
        tiers = {n: retier(t, interval=10.0) for n, t in DEFAULT_TIERS.items()}
        targets = tuple(Target(name=f"cam-{i}", address="127.0.0.1", tier="P3", category="c", site="s",
                               labels=(), probes=("icmp",)) for i in range(1000))
        sched = TestScheduler({"icmp": object()}, lambda *a: None, tick=0.005)
        sched.apply_config(Config(tiers=tiers, targets=targets))
        return [job.due for job in sched._jobs.values()], asyncio.get_running_loop().time()
    dues, now = asyncio.run(main())
    slots = Counter(round((d % 10.0) / 0.05) for d in dues)
    assert all(abs((d % 10.0) / 0.05 - round((d % 10.0) / 0.05)) < 1e-6 for d in dues)  # on the 50 ms grid
    assert len(slots) > 150  # of 200 slots: spread, not bunched
    assert max(slots.values()) <= 20
