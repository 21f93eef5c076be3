"""Coalesced timers: callbacks due in the same short tick run in one event-loop wakeup.

At 10,000 targets the agent has about 3,000 timed events a second (cycle
starts, spaced echoes, timeouts). Given one asyncio timer each, the process
wakes for every one, and on this class of machine a wakeup costs more than
sending the echo (measured: ~80 µs per echo paced one by one against ~12 µs
sent thirty per wakeup). Rounding every due time up to a shared grid of
``tick`` seconds bounds wakeups to 1/tick a second whatever the target count;
the price is up to one tick of extra delay, which shows in the scheduler lag
metric. RTT is unaffected: it is measured from the send stamp to the kernel's
receive stamp, not from the tick.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

DEFAULT_TICK = 0.005
# A time this close after a grid point (as a share of the tick) counts as that grid point. Grid
# times are floats: 20020 * 0.005 + 0.2 is 100.30000000000001, whose plain ceil() is the next tick
# (32 of the 400 grid points from 20000 to 20399 do this with a 200 ms spacing), so a
# cycle's spaced echoes and the scheduler's next starts, meant for one wakeup, took two (measured
# at 10,000 targets: half the echo sends fired 5 ms after their cycle starts, ~50 extra wakeups a
# second). The slack (5 µs at 5 ms) is far below anything scheduled here.
SLACK = 1e-3


def grid_number(when: float, tick: float) -> int:
    """The grid point at or after ``when`` (within SLACK before it): ``when`` rounded up to the tick grid."""
    return math.ceil(when / tick - SLACK)


def grid_floor(when: float, tick: float) -> float:
    """The grid time at or before ``when`` (within SLACK after it): the tick ``when`` falls in."""
    return math.floor(when / tick + SLACK) * tick


class TickerCall:
    """One scheduled callback; ``cancel()`` it when it is no longer wanted."""

    __slots__ = ("callback", "args", "_slot", "cancelled")

    def __init__(self, callback: Callable[..., Any], args: tuple[Any, ...], slot: _Slot) -> None:
        self.callback, self.args, self._slot, self.cancelled = callback, args, slot, False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._slot.release()


class _Slot:
    __slots__ = ("ticker", "number", "calls", "live", "handle")

    def __init__(self, ticker: Ticker, number: int) -> None:
        self.ticker, self.number = ticker, number
        self.calls: list[TickerCall] = []
        self.live = 0
        self.handle = ticker.loop.call_at(number * ticker.tick, ticker._fire, number)

    def release(self) -> None:
        # The last live call of a slot cancelled: no wakeup at all for it (cycles
        # that end before their timeout are the common case).
        self.live -= 1
        if self.live == 0 and self.ticker._slots.get(self.number) is self:
            self.handle.cancel()
            del self.ticker._slots[self.number]
            self.calls.clear()  # calls point back at their slot: break the cycle so refcounting frees both


class Ticker:
    """``call_at`` with a granularity of ``tick`` seconds, on an absolute grid of the loop clock.

    The grid is absolute (multiples of ``tick``), so separate tickers on one
    loop, and the scheduler's own wakeups, share their wakeups.
    """

    __slots__ = ("loop", "tick", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = DEFAULT_TICK) -> None:
        if tick <= 0:
            raise ValueError("tick must be positive")
        self.loop = loop
        self.tick = tick
        self._slots: dict[int, _Slot] = {}

    def slot_time(self, when: float) -> float:
        """The grid time at which a callback due at ``when`` runs."""
        return grid_number(when, self.tick) * self.tick

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TickerCall:
        number = grid_number(when, self.tick)
        slot = self._slots.get(number)
        if slot is None:
            slot = self._slots[number] = _Slot(self, number)
        call = TickerCall(callback, args, slot)
        slot.calls.append(call)
        slot.live += 1
        return call

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TickerCall:
        return self.call_at(self.loop.time() + delay, callback, *args)

    def pending(self) -> int:
        """Calls scheduled and not cancelled (for tests and stats)."""
        return sum(slot.live for slot in self._slots.values())

    def wakeups(self) -> int:
        """Loop timers currently armed: one per occupied tick."""
        return len(self._slots)

    def _fire(self, number: int) -> None:
        slot = self._slots.pop(number, None)
        if slot is None:
            return
        for call in slot.calls:
            if call.cancelled:
                continue
            call.cancelled = True  # ran; a late cancel() must not touch the slot's count
            try:
                call.callback(*call.args)
            except Exception as exc:  # noqa: BLE001 - one bad callback must not drop the rest of the tick
                self.loop.call_exception_handler({"message": "exception in ticker callback", "exception": exc})
        # Break slot <-> call references: at 10k targets, garbage left to the cyclic
        # collector made 250-400 ms gen-2 pauses in the probe loop.
        slot.calls.clear()
