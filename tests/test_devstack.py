"""agent/devstack.unwind: the clean-up every test stack, bench and scripts/stack shares."""

from __future__ import annotations

import pytest

from agent.devstack import StackError, unwind, wait_for


def test_unwind_runs_every_step_last_first_and_raises_the_first_failure():
    ran: list[str] = []

    def fail(name: str):
        def step():
            ran.append(name)
            raise RuntimeError(name)
        return step

    steps = [lambda: ran.append("net"), fail("agent"), lambda: ran.append("prometheus"), fail("webhook")]
    with pytest.raises(RuntimeError, match="webhook"):
        unwind(steps)
    assert ran == ["webhook", "prometheus", "agent", "net"]  # a failed stop leaves nothing behind it


def test_unwind_with_report_hands_over_each_failure_and_raises_none():
    seen: list[str] = []
    unwind([lambda: 1 / 0, lambda: seen.append("ok")], report=lambda exc: seen.append(type(exc).__name__))
    assert seen == ["ok", "ZeroDivisionError"]


def test_wait_for_looks_once_even_when_its_deadline_has_passed():
    # A scenario computes its timeouts from wall-clock windows; when a late phase leaves a
    # negative timeout, what already happened must still count (it used to fail unchecked).
    looks = []
    assert wait_for(lambda: looks.append(1) or "there", -16.5, "something") == "there"
    assert looks == [1]
    with pytest.raises(StackError, match="timed out after 0s waiting for nothing"):
        wait_for(lambda: looks.append(1), 0, "nothing")
    assert len(looks) == 2
