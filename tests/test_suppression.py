"""Parent and isolation suppression (agent/suppression.py) driven result by result.

The store's real TargetState folds each result; a hand-moved clock stands for time, so
each ordering the issue names (parent recovers before a slow child's fresh cycle, a
child recovering with its parent, a child dead for its own reason under a flapping
parent, an outage confirmed before the parent failed) is played exactly. The same
rules run against real packets in tests/test_dependencies.py.
"""

from __future__ import annotations

from agent import topology
from agent.store import TargetState
from agent.suppression import ISOLATED, PARENT, Suppressor
from common.model import Target
from probes.base import ProbeResult


class World:
    def __init__(self, names: list[str], parents: dict[str, list[str]] | None = None,
                 anchors: list[str] = ()) -> None:
        self.now = 1000.0
        self.asked: list[str] = []
        self.states = {n: TargetState(Target(n, "192.0.2.1", "P0", "c", "s", (), ("icmp",)), {}) for n in names}
        own = {c: tuple(topology.Named(p, "f", 1, "p") for p in ps) for c, ps in (parents or {}).items()}
        declared = topology.Declared(own=own, anchors=tuple(topology.Named(a, "f", 1, "a") for a in anchors))
        graph, problems = topology.resolve(declared, [s.target for s in self.states.values()])
        assert problems == []
        self.sup = Suppressor(self._ask, clock=lambda: self.now)
        self.sup.apply(graph, self.states)

    def _ask(self, name: str) -> int:
        self.asked.append(name)
        return 1

    def result(self, name: str, ok: bool, took: float = 0.5) -> None:
        """A cycle of ``name`` that began ``took`` seconds ago ends now."""
        state = self.states[name]
        r = ProbeResult(ok=ok, reason=None if ok else "timeout", duration=took)
        state.last_run["icmp"] = self.now
        state.observe("icmp", r, self.now)
        self.sup.observe(state, "icmp", r)

    def tick(self, seconds: float) -> None:
        self.now += seconds

    def cause(self, name: str) -> str | None:
        c = self.sup.causes.get(name)
        return c[0] if c else None

    def pages(self, name: str) -> bool:
        """What LifelineTargetDown decides from the exported series."""
        s = self.states[name]
        return s.up == 0 and s.failing >= 3 and self.cause(name) is None


def test_router_dark_explains_its_children_and_is_asked_at_once():
    w = World(["router", "cam1", "cam2"], {"cam1": ["router"], "cam2": ["router"]})
    for n in w.states:
        w.result(n, True)
    w.tick(5)
    w.result("cam1", False)  # the first failure asks the parent now
    assert w.asked == ["router"]
    w.result("router", False)
    assert w.cause("cam1") == PARENT  # already failing: explained from the parent's failure on
    for _ in range(4):
        w.tick(5)
        for n in ("cam1", "cam2", "router"):
            w.result(n, False)
    assert w.pages("router")
    assert not w.pages("cam1") and not w.pages("cam2")
    assert w.cause("cam2") == PARENT
    lines = w.sup.suppressed_lines().decode()
    assert 'lifeline_target_suppressed{target="cam2",tier="P0",cause="parent"} 1' in lines
    assert 'target="router"' not in lines


def test_slow_child_stays_explained_until_its_own_fresh_cycle():
    # The race: the router recovers while the camera's last result is still a failure
    # from before; the camera (30 s tier) must not page until a cycle begun after the
    # recovery fails too, and then it must.
    w = World(["router", "cam"], {"cam": ["router"]})
    w.result("router", True)
    w.result("cam", True)
    for _ in range(4):
        w.tick(30)
        w.result("router", False)
        w.result("cam", False, took=2.0)
    assert w.cause("cam") == PARENT and w.states["cam"].failing >= 3
    w.tick(1)
    w.asked.clear()
    w.result("router", True)
    assert w.asked == ["cam"]  # its fresh cycle is asked for at once
    assert not w.pages("cam")  # last result still the old failure
    # A cycle that had begun before the recovery and ends after it is not fresh.
    w.tick(1)
    w.result("cam", False, took=1.5)
    assert not w.pages("cam")
    # The fresh cycle fails: the camera is dark for its own reason and pages at once.
    w.tick(1)
    w.result("cam", False, took=0.5)
    assert w.pages("cam")


def test_child_recovering_with_its_parent_never_pages():
    w = World(["router", "cam"], {"cam": ["router"]})
    w.result("router", True)
    w.result("cam", True)
    for _ in range(5):
        w.tick(30)
        w.result("router", False)
        w.result("cam", False)
        assert not w.pages("cam")
    w.tick(1)
    w.result("router", True)
    assert not w.pages("cam")
    w.tick(1)
    w.result("cam", True)
    assert w.states["cam"].up == 1 and w.cause("cam") is None


def test_child_dead_for_its_own_reason_pages_while_parent_flaps():
    w = World(["router", "cam"], {"cam": ["router"]})
    w.result("router", True)
    w.result("cam", True)
    paged_at = None
    for i in range(12):
        w.tick(5)
        w.asked.clear()
        w.result("router", i % 2 == 1)  # flapping every cycle
        w.result("cam", False)  # dead all along; this cycle began before the router's change
        if "cam" in w.asked:  # the router recovered: the extra cycle the agent runs at once
            w.tick(1)
            w.result("cam", False)
        if w.pages("cam") and paged_at is None:
            paged_at = i
    assert paged_at == 1  # at the first recovery of the router, not never
    # Once confirmed as its own outage it keeps paging whatever the parent does.
    w.tick(5)
    w.result("router", False)
    w.result("cam", False)
    assert w.pages("cam")


def test_outage_confirmed_before_the_parent_failed_keeps_paging_and_resolves():
    w = World(["router", "cam"], {"cam": ["router"]})
    w.result("router", True)
    for _ in range(3):
        w.tick(5)
        w.result("cam", False)
        w.result("router", True)
    assert w.pages("cam")
    w.tick(5)
    w.result("router", False)  # the parent goes down later: the camera's page stands
    w.result("cam", False)
    assert w.pages("cam") and w.cause("cam") is None
    w.tick(5)
    w.result("cam", True)  # and its resolved notice comes from its own recovery
    assert not w.pages("cam") and w.states["cam"].up == 1


def test_no_parent_result_since_the_outage_began_judges_nothing():
    # The child's outage is confirmed only against a parent result newer than its start.
    w = World(["router", "cam"], {"cam": ["router"]})
    w.result("router", True)
    w.result("cam", True)
    for _ in range(3):
        w.tick(5)
        w.result("cam", False)
    assert "cam" not in w.sup._own  # the router has not answered since: not yet "its own"
    w.tick(1)
    w.result("router", False)
    assert w.cause("cam") == PARENT


def test_isolation_needs_every_anchor_twice_and_explains_everything():
    w = World(["a1", "a2", "a3", "hosp", "clinic"], anchors=["a1", "a2", "a3"])
    for n in w.states:
        w.result(n, True)
    w.tick(5)
    w.result("a1", False)
    w.result("a2", False)
    assert not w.sup.isolated  # partial anchor failure changes nothing
    w.asked.clear()
    w.result("a3", False)
    assert set(w.asked) >= {"a1", "a2", "a3"}  # confirm at once
    assert not w.sup.isolated  # one failed cycle each is not yet isolation
    w.result("hosp", False)
    w.tick(1)
    for a in ("a1", "a2", "a3"):
        w.result(a, False)
    assert w.sup.isolated
    assert {n: w.cause(n) for n in w.states} == {"a1": ISOLATED, "a2": ISOLATED, "a3": ISOLATED,
                                                "hosp": ISOLATED, "clinic": None}
    text = w.sup.render().decode()
    assert "lifeline_agent_isolated 1" in text and 'lifeline_anchor_up{anchor="a2"} 0' in text
    for _ in range(4):
        w.tick(5)
        for n in w.states:
            w.result(n, False)
    assert not any(w.pages(n) for n in w.states)
    # Uplink back: anchors recover first; the others stay explained until their own fresh cycle.
    w.tick(5)
    w.asked.clear()
    for a in ("a1", "a2", "a3"):
        w.result(a, True)
    assert not w.sup.isolated
    assert {"hosp", "clinic"} <= set(w.asked)
    assert not w.pages("hosp")
    w.tick(1)
    w.result("hosp", True)
    w.result("clinic", False)  # the clinic is really dead: its fresh cycle fails, it pages
    assert w.pages("clinic") and not w.pages("hosp")
    assert "lifeline_agent_isolated 0" in w.sup.render().decode()


def test_reload_dropping_the_parent_drops_the_explanation():
    w = World(["router", "cam"], {"cam": ["router"]})
    w.result("router", False)
    w.result("cam", False)
    assert w.cause("cam") == PARENT
    graph, _ = topology.resolve(topology.Declared(), [s.target for s in w.states.values()])
    w.sup.apply(graph, w.states)
    assert w.cause("cam") is None


def test_suppressed_lines_carry_the_vantage_label():
    # lifeline.consensus selects lifeline_target_suppressed{vantage!=""}.
    w = World(["router", "cam"], {"cam": ["router"]})
    w.states = {n: TargetState(s.target, {}, (("vantage", "putuo"),)) for n, s in w.states.items()}
    w.sup.apply(w.sup.graph, w.states)
    w.result("router", False)
    w.result("cam", False)
    assert (b'lifeline_target_suppressed{target="cam",tier="P0",vantage="putuo",cause="parent"} 1\n'
            in w.sup.suppressed_lines())
