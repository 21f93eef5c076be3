"""The status page and /status.json: states, ordering, history, escaping; and the page in a real browser.

The browser test runs Debian's headless chromium against a real agent and
keeps screenshots (wall screen and phone width) in test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from agent.status import StatusBoard, page
from probes.icmp.result import IcmpResult
from probes.base import ProbeResult
from tests import kit
from tests.helpers import ROOT, free_port, require_root, wait_for

ARTIFACTS = os.path.join(ROOT, "test-artifacts")


def _board(store: kit.StoreKit, clock: float = 1_800_000_000.0) -> StatusBoard:
    return StatusBoard(store.store, store.store.kinds, store.status, min_age=0, clock=lambda: clock)


def _ok(n=5, rtt=0.001):
    return IcmpResult(ok=True, sent=n, rtts=(rtt,) * n)


def test_states_order_counts_and_history():
    hosp = kit.target("hospital", "P0", site="putuo", labels=(("circuit_id", "ZS-0036"),))
    cam = kit.target("camera", "P3", site="daishan")
    lossy = kit.target("lossy", "P1", site="putuo")
    fresh = kit.target("fresh", "P2", site="daishan")
    clock = iter(range(1000, 2000))
    store = kit.StoreKit(hosp, cam, lossy, fresh, clock=lambda: float(next(clock)))
    store.record(hosp, "icmp", _ok())
    store.record(cam, "icmp", _ok())
    store.record(hosp, "icmp", IcmpResult(ok=False, reason="timeout", sent=5))  # down at t=1002
    store.record(cam, "icmp", IcmpResult(ok=False, reason="unreachable", sent=3))
    for _ in range(3):  # 2 of 5 lost every cycle: 40 % loss over the window, P1 warns at 5 %
        store.record(lossy, "icmp", IcmpResult(ok=True, sent=5, rtts=(0.001,) * 3))
    snap = _board(store, clock=1010.0).snapshot()

    states = [(t["target"], t["state"]) for t in snap["targets"]]
    # Down first (P0 before P3), then degraded, then unknown, then up.
    assert states == [("hospital", "down"), ("camera", "down"), ("lossy", "degraded"), ("fresh", "unknown")]
    hospital = snap["targets"][0]
    assert hospital["failing"] == [{"probe": "icmp", "reason": "timeout"}]
    assert hospital["since"] == "1970-01-01T00:16:42+00:00"  # t=1002
    assert [h["state"] for h in hospital["history"]] == ["down"]  # a first result "up" is not a change
    assert hospital["labels"] == {"circuit_id": "ZS-0036"}
    assert snap["targets"][2]["degraded"] == "loss 40% > 5%"
    tiers = {t["tier"]: t for t in snap["tiers"]}
    assert (tiers["P0"]["down"], tiers["P1"]["degraded"], tiers["P2"]["unknown"]) == (1, 1, 1)
    assert [t["tier"] for t in snap["tiers"]] == ["P0", "P1", "P2", "P3"]
    sites = {s["site"]: s["tiers"] for s in snap["sites"]}
    assert sites["putuo"]["P0"]["down"] == 1 and sites["daishan"]["P3"]["down"] == 1
    assert snap["agent"]["healthy"] and snap["data_as_of"] == "1970-01-01T00:16:46+00:00"  # the 7th result, t=1006
    # A frozen agent: no result for minutes shows as a problem, not as calm.
    stale = _board(store, clock=1010.0 + 600).snapshot()["agent"]
    assert not stale["healthy"] and "stale" in stale["problems"][0]


def test_recovery_is_recorded_and_reload_drops_removed_targets():
    a, b = kit.target("a"), kit.target("b")
    store = kit.StoreKit(a, b)
    store.record(a, "icmp", IcmpResult(ok=False, reason="timeout", sent=5))
    store.record(a, "icmp", _ok())
    store.apply(kit.config(a))
    snap = _board(store).snapshot()
    assert [t["target"] for t in snap["targets"]] == ["a"]
    assert [h["state"] for h in snap["targets"][0]["history"]] == ["down", "up"]


def test_a_failed_reload_raises_the_banner():
    store = kit.StoreKit(kit.target("a"))
    store.status.reload_ok = False
    agent = _board(store).snapshot()["agent"]
    assert not agent["healthy"] and "reload failed" in agent["problems"][0]


def test_service_failure_shows_which_probe_and_why():
    t = kit.target("hotline", "P1", probes=("icmp", "tcp"))
    store = kit.StoreKit(t)
    store.record(t, "icmp", _ok())
    store.record(t, "tcp", ProbeResult(ok=False, reason="refused"))
    row = _board(store).snapshot()["targets"][0]
    assert row["state"] == "down" and row["failing"] == [{"probe": "tcp", "reason": "refused"}]


def test_hostile_values_cannot_break_out_of_the_page():
    t = kit.target("x", site="</script><script>alert(1)</script>", labels=(("contact", "<b>&'\"</b>"),))
    store = kit.StoreKit(t)
    body = page(_board(store).json()).decode()
    inline = re.search(r'<script id="initial" type="application/json">(.*?)</script>', body, re.S).group(1)
    assert "</script>" not in inline
    assert json.loads(inline.replace("<\\/", "</"))["targets"][0]["site"].startswith("</script>")


def test_json_is_cached_between_builds():
    store = kit.StoreKit(kit.target("a"))
    board = StatusBoard(store.store, store.store.kinds, store.status, min_age=3600)
    first = board.json()
    store.record(kit.target("a"), "icmp", IcmpResult(ok=False, reason="timeout", sent=5))
    assert board.json() is first
    board.invalidate()
    assert b'"down"' in board.json()


# --- the page in a real browser ---------------------------------------------------------

def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise AssertionError("chromium not found: apt-get install -y chromium (or run `make test`)")
    return path


def _browser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=4000", *args], capture_output=True, text=True, timeout=90)


CONFIG = """\
tiers:
  P0: {{interval: 1s, timeout: 300ms, packets: 2, packet_interval: 50ms}}
  # Ten echoes a cycle: at 30 % loss all ten are lost once in ~170,000 cycles, so the lossy
  # host stays "degraded" rather than flickering to "down".
  P1: {{interval: 1s, timeout: 300ms, packets: 10, packet_interval: 20ms}}
targets:
  - {{name: putuo-hospital-fever-clinic, address: 127.0.0.1, tier: P0, category: hospital, site: putuo,
     labels: {{circuit_id: ZS-MSTP-0036, carrier: telecom, contact: "+86-580-000000"}}}}
  - {{name: hotline-12345-sbc, address: 127.0.0.1, tier: P1, category: hotline, site: lincheng,
     probes: [icmp, tcp], tcp: {{port: {closed}}}, labels: {{circuit_id: ZS-MPLS-12345, carrier: unicom}}}}
  - {{name: gov-cloud-uplink, address: {lossy}, tier: P1, category: gov-cloud, site: dinghai}}
"""


def test_page_in_headless_chromium(agent_factory, testnet):
    require_root()
    lossy = testnet.hosts[4]
    testnet.set_loss(lossy, 30)
    try:
        agent = agent_factory(CONFIG.format(closed=free_port(), lossy=lossy))

        def settled():
            status = json.loads(subprocess.run(["curl", "-s", agent.url + "/status.json"], capture_output=True,
                                               text=True).stdout or "{}")
            states = {t["target"]: t["state"] for t in status.get("targets", [])}
            return states if states.get("gov-cloud-uplink") == "degraded" and \
                states.get("hotline-12345-sbc") == "down" else None

        wait_for(settled, 30, "the lossy host degraded and the closed service down in /status.json")
        dom = _browser("--dump-dom", agent.url + "/").stdout
        # What the script rendered (not the inline JSON): the problem rows and the grid cells.
        rows = re.findall(r'<tr><td><span class="badge s-(\w+)">(\w+)</span></td><td>(\w+)</td><td><strong>([^<]+)',
                          dom)
        assert ("down", "DOWN", "P1", "hotline-12345-sbc") in rows, rows
        assert ("degraded", "DEGRADED", "P1", "gov-cloud-uplink") in rows, rows
        assert "tcp: refused" in dom and "ZS-MPLS-12345" in dom
        assert re.search(r'<td class="cell s-down">1/1 DOWN</td>', dom)
        assert 'id="banner" role="alert" hidden' in dom  # the agent itself is healthy
        os.makedirs(ARTIFACTS, exist_ok=True)
        for name, size in (("status-page-wall.png", "1600,1000"), ("status-page-phone.png", "390,844")):
            shot = os.path.join(ARTIFACTS, name)
            if os.path.exists(shot):
                os.unlink(shot)
            _browser(f"--window-size={size}", f"--screenshot={shot}", agent.url + "/")
            assert os.path.getsize(shot) > 10_000, f"{shot} looks empty"
    finally:
        testnet.set_loss(lossy, 0)


@pytest.mark.parametrize("path", ["/", "/status.json"])
def test_endpoints_answer_without_data_yet(agent_factory, path):
    agent = agent_factory("targets: []\n")
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{content_type}", agent.url + path],
                         capture_output=True, text=True).stdout
    assert out.startswith("200 ")
    assert ("text/html" in out) if path == "/" else ("application/json" in out)
