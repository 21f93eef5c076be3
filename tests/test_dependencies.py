"""Parent dependencies and probe-site isolation in a running agent, with real packets.

The agent probes hosts in a namespace this module creates (198.18.210-249.0/24);
nftables drops make a parent or the anchors dark. What is checked is what the
agent exports on /metrics, polled all along: a child must never look pageable
(down, three failed cycles, not suppressed) while its parent explains it. The
same decisions, order by order, are in tests/test_suppression.py; the pages that
come of them through Prometheus and Alertmanager are in tests/scenarios/.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.helpers import http_get, samples, value, wait_for
from tests.testnet import TestNet, available

CONFIG = """
tiers:
  # P0 every 2s keeps the module short. The router sits in a slow tier: its own next cycle is up to a minute away, so
  # only the extra cycle a child's failure asks for can tell the agent it is down in time.
  slow: {{priority: 3, interval: 60s, timeout: 1s, severity: warning, packets: 2, packet_interval: 50ms}}
  P0: {{interval: 2s, packets: 2, packet_interval: 50ms, timeout: 1s}}
anchors: [gw, resolver, remote]
sites:
  shenjiamen: {{depends_on: [agg-router-7]}}
targets:
  - {{name: agg-router-7, address: {router}, tier: slow, site: core}}
  - {{name: cam-1, address: {c1}, tier: P0, site: shenjiamen, category: checkpoint}}
  - {{name: cam-2, address: {c2}, tier: P0, site: shenjiamen, category: checkpoint}}
  - {{name: cam-7, address: {c7}, tier: P0, site: shenjiamen, category: checkpoint}}
  - {{name: hosp, address: {hosp}, tier: P0, site: north, category: hospital}}
  - {{name: gw, address: {a1}, tier: P0, site: probe, category: anchor}}
  - {{name: resolver, address: {a2}, tier: P0, site: probe, category: anchor}}
  - {{name: remote, address: {a3}, tier: P0, site: probe, category: anchor}}
"""

CHILDREN = ("cam-1", "cam-2", "cam-7")
ANCHORS = ("gw", "resolver", "remote")


@pytest.fixture(scope="module")
def net():
    problem = available()
    if problem:
        raise AssertionError(f"dependency tests: {problem}")
    pid = os.getpid()
    net = TestNet(f"lld-{pid}", 210 + pid % 40, f"lld{pid % 100000}")
    net.create(host_count=8)
    try:
        yield net
    finally:
        net.destroy()


@pytest.fixture
def agent(net, agent_factory, needs_root):
    router, c1, c2, c7, hosp, a1, a2, a3 = net.hosts
    for host in net.hosts:
        net.set_loss(host, 0)
    agent = agent_factory(CONFIG.format(router=router, c1=c1, c2=c2, c7=c7, hosp=hosp, a1=a1, a2=a2, a3=a3))
    wait_for(lambda: all(value(agent.metrics(), "lifeline_target_up", target=t) == 1
                         for t in (*CHILDREN, "hosp", *ANCHORS)), 20, "every P0 target up")
    return agent


def _status(agent) -> dict[str, dict]:
    return {t["target"]: t for t in json.loads(http_get(agent.url + "/status.json")[1])["targets"]}


def _pageable(s, target: str) -> bool:
    """What LifelineTargetDown would page on, from one scrape."""
    return (value(s, "lifeline_target_up", target=target) == 0
            and (value(s, "lifeline_target_consecutive_failures", target=target) or 0) >= 3
            and not any(name == "lifeline_target_suppressed" and dict(labels).get("target") == target
                        for name, labels in s))


def _watch(agent, until, seconds: float, never: tuple[str, ...], what: str):
    """Poll /metrics until ``until(samples)`` holds, failing if any of ``never`` is pageable in any poll."""
    deadline = time.monotonic() + seconds
    while True:
        s = samples(agent.metrics())
        bad = [t for t in never if _pageable(s, t)]
        assert not bad, f"{bad} would page while {what}"
        if until(s):
            return s
        assert time.monotonic() < deadline, f"timed out after {seconds}s waiting for {what}"
        time.sleep(0.3)


def test_dark_router_explains_its_children_and_a_child_dark_after_it_pages(net, agent):
    router, c1, c2, c7 = net.hosts[:4]
    for host in (router, c1, c2, c7):  # the router dies and everything behind it with it
        net.set_loss(host, 100)
    cut = time.monotonic()
    s = _watch(agent, lambda s: all((value(s, "lifeline_target_consecutive_failures", target=c) or 0) >= 4
                                    for c in CHILDREN), 40, CHILDREN, "the router is dark")
    # The router's next own cycle was up to 60 s away; it was asked at the children's first failure.
    assert value(s, "lifeline_target_up", target="agg-router-7") == 0
    assert time.monotonic() - cut < 40
    assert (value(s, "lifeline_scheduler_extra_cycles_total", tier="slow", probe="icmp") or 0) >= 1
    for child in CHILDREN:
        assert value(s, "lifeline_target_suppressed", target=child, cause="parent") == 1
    assert value(s, "lifeline_target_suppressed", target="agg-router-7") is None
    # Partial anchor failure (the router is none of them) changes nothing.
    assert value(s, "lifeline_agent_isolated") == 0
    # The status page says why the cameras page nobody (built at most every 2 s).
    status = wait_for(lambda: _status(agent) if _status(agent)["cam-1"]["explained"] else None, 10,
                      "the status page to explain cam-1")
    assert status["cam-1"]["explained"]["cause"] == "parent" and "agg-router-7" in status["cam-1"]["explained"]["detail"]
    assert status["agg-router-7"]["explained"] is None and status["agg-router-7"]["state"] == "down"

    # The router comes back; cam-7 stays dark. Its fresh cycle (asked at once) fails: it pages.
    # The others come back with the router and never page.
    for host in (router, c1, c2):
        net.set_loss(host, 0)
    s = _watch(agent, lambda s: _pageable(s, "cam-7") and all(value(s, "lifeline_target_up", target=c) == 1
                                                              for c in ("cam-1", "cam-2", "agg-router-7")),
               40, ("cam-1", "cam-2"), "the router recovers")
    assert value(s, "lifeline_target_suppressed", target="cam-7") is None
    status = agent.metrics()
    assert 'lifeline_target_suppressed{target="cam-7"' not in status


def test_all_anchors_dark_isolates_the_agent_and_explains_everything(net, agent):
    a1, a2, a3 = net.hosts[5:8]
    hosp = net.hosts[4]
    # Two of three anchors dark: not isolated, however long.
    net.set_loss(a1, 100)
    net.set_loss(a2, 100)
    s = _watch(agent, lambda s: all((value(s, "lifeline_target_consecutive_failures", target=a) or 0) >= 3
                                    for a in ("gw", "resolver")), 30, (), "two anchors are dark")
    assert value(s, "lifeline_agent_isolated") == 0
    assert value(s, "lifeline_anchor_up", anchor="remote") == 1
    assert value(s, "lifeline_anchor_up", anchor="gw") == 0

    # The uplink goes: every anchor and the hospital dark. Isolated within two anchor cycles,
    # and nothing of this agent looks pageable meanwhile (the two anchors already dark were
    # already pageable: they are their own outage and keep paging).
    for host in (a1, a2, a3, hosp):
        net.set_loss(host, 100)
    s = _watch(agent, lambda s: value(s, "lifeline_agent_isolated") == 1, 15, ("remote", "hosp"),
               "the uplink is cut")
    s = _watch(agent, lambda s: (value(s, "lifeline_target_consecutive_failures", target="hosp") or 0) >= 4,
               30, ("remote", "hosp"), "the agent is isolated")
    assert value(s, "lifeline_target_suppressed", target="hosp", cause="isolated") == 1
    assert value(s, "lifeline_target_suppressed", target="remote", cause="isolated") == 1
    assert value(s, "lifeline_target_suppressed", target="gw") is None  # its own outage, confirmed before

    # The uplink is back: isolation ends, and the others are re-probed at once and up.
    for host in (a1, a2, a3, hosp):
        net.set_loss(host, 0)
    s = _watch(agent, lambda s: value(s, "lifeline_agent_isolated") == 0
               and all(value(s, "lifeline_target_up", target=t) == 1 for t in ("hosp", *ANCHORS)),
               30, ("remote", "hosp"), "the uplink comes back")
    assert not any(name == "lifeline_target_suppressed" for name, _ in s)
