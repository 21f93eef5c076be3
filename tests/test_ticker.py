"""Coalesced timers: one loop wakeup per occupied tick, cancellation, and no garbage cycles."""

from __future__ import annotations

import asyncio
import math

import pytest

from common.ticker import SLACK, Ticker, grid_floor, grid_number
from tests.helpers import cyclic_garbage


class _FakeLoop:
    """Records call_at requests instead of running them; ``fire`` runs what is due."""

    def __init__(self) -> None:
        self.now = 100.0
        self.armed: list[tuple[float, object, tuple, bool]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback, *args):
        loop = self

        class Handle:
            cancelled = False

            def cancel(self) -> None:
                self.cancelled = True

        handle = Handle()
        loop.armed.append((when, callback, args, handle))
        return handle

    def live(self):
        return [(w, cb, a) for w, cb, a, h in self.armed if not h.cancelled]

    def fire(self, until: float) -> None:
        self.now = until
        due = sorted((w, i) for i, (w, _, _, h) in enumerate(self.armed) if w <= until and not h.cancelled)
        for _, i in due:
            _, callback, args, handle = self.armed[i]
            handle.cancelled = True
            callback(*args)

    def call_exception_handler(self, context) -> None:
        self.errors = getattr(self, "errors", []) + [context]


def test_callbacks_in_one_tick_share_one_wakeup_on_the_grid():
    loop = _FakeLoop()
    ticker = Ticker(loop, tick=0.005)
    ran = []
    for delay in (0.0001, 0.002, 0.0049):
        ticker.call_later(delay, ran.append, delay)
    ticker.call_later(0.0051, ran.append, "next tick")
    assert [w for w, _, _ in loop.live()] == [pytest.approx(100.005), pytest.approx(100.01)]
    assert ticker.wakeups() == 2 and ticker.pending() == 4
    loop.fire(100.005)
    assert ran == [0.0001, 0.002, 0.0049]  # in the order they were scheduled
    loop.fire(100.01)
    assert ran[-1] == "next tick" and ticker.pending() == 0


def test_never_early_beyond_the_slack_and_at_most_one_tick_late():
    loop = _FakeLoop()
    ticker = Ticker(loop, tick=0.005)
    for when in (100.0, 100.0001, 100.0049999, 100.005, 123.4567):
        slot = ticker.slot_time(when)
        assert when - 0.005 * SLACK <= slot < when + 0.005


def test_float_error_does_not_push_a_grid_time_into_the_next_tick():
    # A cycle started on grid point 20020 plans its next echo 200 ms later: 20020 * 0.005 + 0.2 is
    # 100.30000000000001, whose plain ceil() is grid point 20061, one tick after the cycles that
    # start at 100.3 (20060), costing a second wakeup for what was meant as one.
    tick = 0.005
    start = 20020 * tick
    spaced = start + 0.2
    assert math.ceil(spaced / tick) == 20061  # the float error this guards against
    assert grid_number(spaced, tick) == grid_number(20060 * tick, tick) == 20060
    assert grid_floor(start + 1e-12, tick) == start  # the tick it starts, not the one before
    assert grid_floor(start - tick * SLACK / 2, tick) == start
    loop = _FakeLoop()
    ticker = Ticker(loop, tick=tick)
    loop.now = 100.0
    ticker.call_at(spaced, lambda: None)
    ticker.call_at(20060 * tick, lambda: None)
    assert ticker.wakeups() == 1
    # Early by at most the slack; anything later than that waits for the next tick.
    assert ticker.slot_time(100.3 + tick * SLACK / 2) == pytest.approx(100.3)
    assert ticker.slot_time(100.3 + tick * SLACK * 2) == pytest.approx(100.305)


def test_cancelling_every_call_of_a_tick_removes_its_wakeup():
    loop = _FakeLoop()
    ticker = Ticker(loop, tick=0.005)
    ran = []
    a = ticker.call_later(0.001, ran.append, "a")
    b = ticker.call_later(0.002, ran.append, "b")
    a.cancel()
    assert len(loop.live()) == 1  # b still needs the tick
    b.cancel()
    b.cancel()  # idempotent
    assert loop.live() == [] and ticker.wakeups() == 0
    loop.fire(101)
    assert ran == []


def test_cancel_after_running_is_harmless_and_late_calls_get_a_new_tick():
    loop = _FakeLoop()
    ticker = Ticker(loop, tick=0.005)
    ran = []
    call = ticker.call_later(0.001, ran.append, 1)
    loop.fire(100.005)
    call.cancel()
    ticker.call_at(100.004, ran.append, 2)  # already past: runs at the next grid point it maps to
    loop.fire(100.01)
    assert ran == [1, 2]


def test_a_failing_callback_does_not_drop_the_rest_of_its_tick():
    loop = _FakeLoop()
    ticker = Ticker(loop, tick=0.005)
    ran = []
    ticker.call_later(0.001, lambda: 1 / 0)
    ticker.call_later(0.002, ran.append, "after")
    loop.fire(100.005)
    assert ran == ["after"]
    assert isinstance(loop.errors[0]["exception"], ZeroDivisionError)


def test_rejects_a_non_positive_tick():
    with pytest.raises(ValueError):
        Ticker(_FakeLoop(), tick=0)


def test_on_a_real_loop_leaves_no_cyclic_garbage():
    """At 10k targets, garbage left to the cyclic collector meant 250-400 ms gen-2 pauses."""
    async def main():
        ticker = Ticker(asyncio.get_running_loop(), tick=0.001)
        done = asyncio.Event()
        calls = [ticker.call_later(0.002, lambda: None) for _ in range(50)]
        for c in calls[::2]:
            c.cancel()
        ticker.call_later(0.003, done.set)
        await done.wait()
    assert cyclic_garbage(main, ("TickerCall", "_Slot")) == []
