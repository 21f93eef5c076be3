"""What pages and what does not, end to end: real agents in network namespaces, a real
Prometheus (5 s scrape and evaluation, the shipped rules) and Alertmanager (the shipped
routing), and a webhook receiver standing in for the pager.

Four scenarios of issue 11, each reporting the notifications the webhook received
(printed, and written to test-artifacts/scenarios/<name>.json):
  1. uplink cut: 30 targets (5 P0) and 3 anchors behind the agent's uplink;
  2. parent down: a router with 20 children behind it, half of them on a 30 s tier;
  3. maintenance: a one-off window and the second occurrence of a recurring one;
  4. two vantages: one path cut, then both.
(Scenario 5, 20 minutes of loss and blackouts with no page, is bench/false_pages.py.)

Marked slow (minutes each, mostly waiting on production timings): run with
`make scenarios`. The agent-level decisions are also in the default suite
(tests/test_dependencies.py with packets, tests/test_suppression.py order by order,
rules/tests/*.yml through promtool).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agent.devstack import AlertingStack, Prometheus, WebhookReceiver, unwind
from tests import grafana_model as gm
from tests.helpers import ROOT, AgentProcess, require_root, require_tool, wait_for
from tests.pagenet import PageNet
from tests.testnet import available

pytestmark = pytest.mark.slow

PAGE = "oncall-page"  # the receiver in deploy/alertmanager.yml that pages on-call
ARTIFACTS = Path(ROOT) / "test-artifacts" / "scenarios"
AGENT_PORT = 9430


def _base(slot: int) -> int:
    """A 198.19.<b>.0/24 block per scenario, apart per process: b in 0..39."""
    return (slot * 10 + os.getpid() % 2 * 5) % 40


@dataclass
class Stack:
    net: PageNet
    agents: list[AgentProcess]
    prom: Prometheus
    hook: WebhookReceiver
    t0: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)

    def mark(self, what: str) -> float:
        now = time.monotonic()
        self.events.append({"at": round(now - self.t0, 1), "event": what})
        return now

    def received(self, since: float = 0.0) -> list[tuple[str, str, str, str, str]]:
        """Every (receiver, status, alertname, target or vantage or instance, severity) notified since ``since``."""
        out = set()
        for note in list(self.hook.notifications):
            if note.received < since:
                continue
            for alert in note.payload.get("alerts", []):
                labels = alert["labels"]
                who = labels.get("target") or labels.get("instance", "")
                if labels.get("vantage"):
                    who += f" from {labels['vantage']}"
                out.add((note.receiver, alert["status"], labels["alertname"], who, labels.get("severity", "")))
        return sorted(out)

    def pages(self, since: float = 0.0, status: str = "firing") -> list[tuple[str, str]]:
        return sorted({(name, who) for receiver, st, name, who, _ in self.received(since)
                       if receiver == PAGE and st == status})

    def firing(self) -> set[tuple[str, str]]:
        """(alertname, target or instance) firing in Prometheus now."""
        return {(a["metric"]["alertname"], a["metric"].get("target") or a["metric"].get("instance", ""))
                for a in self.prom.query('ALERTS{alertstate="firing"}')}

    def report(self, name: str, **figures: Any) -> dict[str, Any]:
        data = {"scenario": name, **figures, "events": self.events,
                "notifications": [dict(zip(("receiver", "status", "alertname", "who", "severity"), r))
                                  for r in self.received()]}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{name}.json").write_text(json.dumps(data, indent=2))
        print(f"\n[{name}]", json.dumps({k: v for k, v in data.items() if k != "events"}, indent=1))
        return data


def _stack(tmp_path: Path, net: PageNet, config: str, vantages: list[str] | None = None):
    """Namespaces, one agent per vantage namespace (listening on its management address), Prometheus
    scraping them every 5 s with the shipped rules, Alertmanager with the shipped routing."""
    require_root()
    problem = available()
    if problem:
        raise AssertionError(f"scenario: {problem}")
    for tool, package in (("prometheus", "prometheus"), ("prometheus-alertmanager", "prometheus-alertmanager")):
        require_tool(tool, package)
    cleanup = [net.destroy]
    try:
        net.create()
        path = tmp_path / "lifeline.yaml"
        path.write_text(config)
        agents = []
        for i, ns in enumerate(net.vantage_ns):
            extra = ["--vantage", vantages[i]] if vantages else []
            agent = AgentProcess(str(path), extra_args=extra, wrapper=["ip", "netns", "exec", ns],
                                 host=net.mgmt[i], port=AGENT_PORT)
            cleanup.append(agent.stop)
            agents.append(agent)
        alerting = AlertingStack.start(str(tmp_path), [f"{m}:{AGENT_PORT}" for m in net.mgmt[:len(agents)]],
                                       interval="5s")
        cleanup.append(alerting.stop)
        yield Stack(net, agents, alerting.prometheus, alerting.hook)
    finally:
        unwind(cleanup)


def _all_up(stack: Stack, count: int) -> None:
    wait_for(lambda: stack.prom.query(f"count(lifeline_target_up == 1) >= {count}"), 120,
             f"Prometheus to see {count} target series up", interval=1)
    assert not stack.received(), f"notifications before any fault: {stack.received()}"


def _watch(stack: Stack, seconds: float, allowed: set[str], what: str) -> None:
    """For ``seconds``, every 2 s: nothing fires in Prometheus but the ``allowed`` alert names."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bad = {f for f in stack.firing() if f[0] not in allowed}
        assert not bad, f"firing while {what}: {sorted(bad)}"
        time.sleep(2)


# ---------------------------------------------------------------- 1. uplink cut

UPLINK = """
tiers:
  P1: {{interval: 10s}}
  P2: {{interval: 20s}}
  P3: {{interval: 30s}}
anchors: [site-gateway, resolver-1, remote-anchor-a]
targets:
{targets}
"""


@pytest.fixture
def uplink(tmp_path):
    net = PageNet(f"s1{os.getpid() % 1000}", _base(0), vantages=1, hosts=33)
    lines = [f"  - {{name: {n}, address: {a}, tier: P0, category: anchor, site: probe-site}}"
             for n, a in zip(("site-gateway", "resolver-1", "remote-anchor-a"), net.hosts[:3])]
    tiers = ["P0"] * 5 + ["P1"] * 8 + ["P2"] * 8 + ["P3"] * 9
    lines += [f"  - {{name: t{i:02d}-{tier.lower()}, address: {a}, tier: {tier}, category: hospital, site: s{i % 4}}}"
              for i, (tier, a) in enumerate(zip(tiers, net.hosts[3:]))]
    yield from _stack(tmp_path, net, UPLINK.format(targets="\n".join(lines)))


def test_uplink_cut_pages_once_for_the_agent_and_never_for_its_targets(uplink):
    s = uplink
    _all_up(s, 33)
    cut = s.mark("uplink cut")
    s.net.cut_uplink(0)
    wait_for(lambda: ("LifelineProbeSiteIsolated", s.agents[0].url.split("//")[1]) in s.pages(), 90,
             "the isolation page", interval=0.5)
    paged = s.mark("isolation page received")
    # Long enough for every tier to fail three cycles (P3: 30 s) and be evaluated.
    _watch(s, max(0.0, cut + 110 - time.monotonic()), {"LifelineProbeSiteIsolated"}, "the uplink is cut")
    during = s.received()
    restored = s.mark("uplink restored")
    s.net.cut_uplink(0, False)
    wait_for(lambda: any(n == "LifelineProbeSiteIsolated" for n, _ in s.pages(status="resolved")), 120,
             "the isolation page to resolve", interval=0.5)
    resolved = s.mark("isolation resolved")
    _watch(s, 45, set(), "the uplink is back")
    target_notes = [r for r in s.received() if r[2] != "LifelineProbeSiteIsolated"]
    s.report("uplink-cut", pages_while_cut=s.pages(), target_notifications=target_notes,
             seconds_to_isolation_page=round(paged - cut, 1), seconds_to_resolved=round(resolved - restored, 1))
    assert [p for p in s.pages() if p[0] == "LifelineProbeSiteIsolated"] and len(s.pages()) == 1, during
    assert target_notes == []


# ---------------------------------------------------------------- 2. parent down

PARENT = """
tiers:
  # Half the children on a 30 s tier: their last result is still a failure from
  # before when the router comes back, which a `for:` could not hide.
  C30: {{priority: 1, interval: 30s, timeout: 2s, severity: critical}}
sites:
  shenjiamen: {{depends_on: [agg-router-7]}}
targets:
  - {{name: agg-router-7, address: {router}, tier: P0, category: aggregation, site: core}}
{children}
"""


@pytest.fixture
def parent(tmp_path):
    net = PageNet(f"s2{os.getpid() % 1000}", _base(1), vantages=1, hosts=0, children=20)
    children = "\n".join(f"  - {{name: child-{i + 1:02d}, address: {a}, tier: {'C30' if i % 2 == 0 else 'P0'}, "
                         f"category: checkpoint, site: shenjiamen}}" for i, a in enumerate(net.children))
    yield from _stack(tmp_path, net, PARENT.format(router=net.router, children=children))


def test_router_down_pages_for_the_router_only_and_a_child_still_dark_after_pages(parent):
    s = parent
    _all_up(s, 21)
    dark = s.mark("router dark")
    s.net.set_router_dark(True)
    wait_for(lambda: ("LifelineTargetDown", "agg-router-7") in s.pages(), 90, "the router's page", interval=0.5)
    router_paged = s.mark("router page received")
    # Until every child has failed three cycles (30 s tier: ~90 s) and been evaluated: no child alert.
    wait_for(lambda: s.prom.query('count(lifeline_target_consecutive_failures{target=~"child-.*"} >= 3) == 20'),
             150, "every child to fail three cycles", interval=1)
    _watch(s, 15, {"LifelineTargetDown"}, "the router is dark")
    assert s.firing() == {("LifelineTargetDown", "agg-router-7")}
    while_dark = s.pages()
    # child-07 (30 s tier) stays dark; the router comes back with the other 19.
    s.net.set_dark(s.net.children[6])
    back = s.mark("router back, child-07 still dark")
    s.net.set_router_dark(False)
    wait_for(lambda: ("LifelineTargetDown", "child-07") in s.pages(), 90, "child-07's page", interval=0.5)
    child_paged = s.mark("child-07 page received")
    _watch(s, 30, {"LifelineTargetDown"}, "the router is back")
    assert {f for f in s.firing()} == {("LifelineTargetDown", "child-07")}
    s.report("parent-down", pages_while_router_dark=while_dark, pages_after=s.pages(back),
             seconds_to_router_page=round(router_paged - dark, 1),
             seconds_to_child_page_after_router_back=round(child_paged - back, 1))
    assert while_dark == [("LifelineTargetDown", "agg-router-7")]
    assert s.pages(back) == [("LifelineTargetDown", "child-07")]


# ---------------------------------------------------------------- 3. maintenance

MAINTENANCE = """
maintenance:
  - name: dinghai-cutover
    match: {{site: dinghai}}
    start: "{start}"
    end: "{end}"
  - name: putuo-every-minute
    match: {{site: putuo}}
    schedule: "* * * * *"
    duration: 30s
    timezone: Asia/Shanghai
targets:
  - {{name: hosp-dinghai, address: {a}, tier: P0, category: hospital, site: dinghai}}
  - {{name: hosp-putuo-1, address: {b}, tier: P0, category: hospital, site: putuo}}
  - {{name: hosp-putuo-2, address: {c}, tier: P0, category: hospital, site: putuo}}
"""


@pytest.fixture
def maintenance(tmp_path):
    net = PageNet(f"s3{os.getpid() % 1000}", _base(2), vantages=1, hosts=3)
    now = datetime.now(timezone(timedelta(hours=8)))
    start, end = now + timedelta(seconds=40), now + timedelta(seconds=100)
    net.window = (start.timestamp(), end.timestamp())
    yield from _stack(tmp_path, net, MAINTENANCE.format(start=start.isoformat(timespec="seconds"),
                                                        end=end.isoformat(timespec="seconds"), a=net.hosts[0],
                                                        b=net.hosts[1], c=net.hosts[2]))


def _at(wall: float) -> None:
    """Sleep until the wall-clock time ``wall`` (window boundaries are wall-clock)."""
    time.sleep(max(0.0, wall - time.time()))


def _first_page_wall(stack: Stack, target: str) -> float | None:
    """Wall-clock time the first firing page for ``target`` reached the webhook."""
    offset = time.time() - time.monotonic()
    times = [n.received for n in list(stack.hook.notifications) if n.receiver == PAGE
             and n.alerts(alertname="LifelineTargetDown", target=target) and n.status == "firing"]
    return min(times) + offset if times else None


def test_maintenance_holds_pages_and_a_target_still_down_at_the_end_pages_at_once(maintenance):
    s = maintenance
    a, b, c = s.net.hosts
    _all_up(s, 3)
    start, end = s.net.window
    # One-off: dark 2 s into the window, still dark when it ends.
    _at(start + 2)
    s.net.set_dark(a)
    s.mark("hosp-dinghai dark 2 s into its one-off window")
    # Recurring (each minute, 30 s): hosp-putuo-1 dark through the first occurrence after this
    # point, hosp-putuo-2 through the second, each still dark when its occurrence ends.
    first = (int(time.time()) // 60 + 1) * 60
    ends = {"hosp-dinghai": end, "hosp-putuo-1": first + 30.0, "hosp-putuo-2": first + 90.0}
    _at(first + 2)
    s.net.set_dark(b)
    s.mark("hosp-putuo-1 dark 2 s into an occurrence")
    wait_for(lambda: _first_page_wall(s, "hosp-putuo-1"), first + 60 - time.time(),
             "hosp-putuo-1's page before the next occurrence", interval=0.2)
    s.net.set_dark(b, False)  # back before the next occurrence, which would hold its alert again
    s.mark("hosp-putuo-1 paged and back")
    _at(first + 62)
    s.net.set_dark(c)
    s.mark("hosp-putuo-2 dark 2 s into the next occurrence")
    for name, ended in ends.items():
        wait_for(lambda: _first_page_wall(s, name), ended + 30 - time.time() + 5, f"{name}'s page", interval=0.2)
    delays = {name: round(_first_page_wall(s, name) - ended, 1) for name, ended in ends.items()}
    s.report("maintenance", seconds_from_window_end_to_page=delays, pages=s.pages())
    # Nothing paged inside its window (a negative delay), and each paged within 30 s of the end.
    assert all(0 <= d <= 30 for d in delays.values()), delays


# ---------------------------------------------------------------- 4. two vantages

VANTAGES = """
targets:
  - {{name: fever-clinic-b, address: {a}, tier: P0, category: clinic, site: putuo}}
  - {{name: hosp-north, address: {b}, tier: P0, category: hospital, site: north}}
"""


@pytest.fixture
def vantages(tmp_path):
    net = PageNet(f"s4{os.getpid() % 1000}", _base(3), vantages=2, hosts=2)
    yield from _stack(tmp_path, net, VANTAGES.format(a=net.hosts[0], b=net.hosts[1]), vantages=["a", "b"])


def test_one_vantage_is_a_warning_naming_it_and_both_page_critical(vantages):
    s = vantages
    clinic = s.net.hosts[0]
    _all_up(s, 4)  # two targets from two vantages
    s.mark("path from a to fever-clinic-b cut")
    s.net.block_path(0, clinic)
    wait_for(lambda: ("LifelineTargetDownFromVantage", "fever-clinic-b") in s.firing(), 60,
             "the one-vantage warning", interval=0.5)
    warning = s.prom.query('ALERTS{alertname="LifelineTargetDownFromVantage",alertstate="firing"}')
    assert [w["metric"]["vantage"] for w in warning] == ["a"]
    # The NOC dashboard's one-vantage-only panel shows it (the one-agent e2e stack cannot).
    panels = [q for q in gm.all_queries() if q.needs_vantages]
    assert panels and all(s.prom.query(q.substituted()) for q in panels), [str(q) for q in panels]
    _watch(s, 45, {"LifelineTargetDownFromVantage"}, "only a's path is cut")
    assert s.pages() == []
    both = s.mark("path from b cut too")
    s.net.block_path(1, clinic)
    wait_for(lambda: ("LifelineTargetDownConsensus", "fever-clinic-b") in s.pages(), 45,
             "the critical page within 45 s of both paths cut", interval=0.2)
    paged = s.mark("critical page received")
    s.report("two-vantages", pages=s.pages(), seconds_to_critical_page=round(paged - both, 1),
             warning_vantages=[w["metric"]["vantage"] for w in warning])
    assert s.pages() == [("LifelineTargetDownConsensus", "fever-clinic-b")]
