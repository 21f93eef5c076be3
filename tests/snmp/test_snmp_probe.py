"""SnmpProbe against real agents (snmpd, snmpsim) and a scriptable fake one, all on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from probes.snmp.config import ExtraOid, InterfaceSelector
from probes.snmp.config import parse_oid as o
from tests.snmp import agents
from tests.snmp.agents import FakeAgent, counter32, counter64, gauge32, integer, octets, snmpbulkwalk, snmpget, ticks
from tests.snmp.conftest import (CPU_OID, IF, IFX, SIM_COMMUNITY, SIM_INTERFACES, SIM_UPTIME, FakeTarget, Poller,
                                 tier, v2, v3)

FIELDS_32 = {"in_octets": 10, "out_octets": 16, "in_ucast_pkts": 11, "out_ucast_pkts": 17}
FIELDS_HC = {"in_octets": 6, "out_octets": 10, "in_ucast_pkts": 7, "out_ucast_pkts": 11}
FIELDS_ERR = {"in_discards": 13, "in_errors": 14, "out_discards": 19, "out_errors": 20}


def run(coro):
    return asyncio.run(coro)


async def poll(probe: Poller, target: FakeTarget, t=None, times: int = 1):
    results = []
    for _ in range(times):
        results.append(await probe.run(target, t or tier()))
    return results if times > 1 else results[0]


# --- snmpsim: recorded device, exact equality with snmpget/snmpbulkwalk ---------------------

def test_snmpsim_values_equal_net_snmp(snmpsim):
    extra = (ExtraOid("cpu_load", o(CPU_OID)), ExtraOid("absent", o("1.3.6.1.4.1.99999.1.0")))
    target = FakeTarget("sim", v2(snmpsim.port, SIM_COMMUNITY, oids=extra))

    async def go():
        probe = Poller()
        try:
            return await poll(probe, target, times=2)
        finally:
            await probe.close()

    first, second = run(go())
    for r in (first, second):
        assert r.ok, r
    ref = snmpget(snmpsim.port, "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.1.0", CPU_OID,
                  community=SIM_COMMUNITY)
    assert second.sys_uptime == int(ref["1.3.6.1.2.1.1.3.0"]) / 100 == SIM_UPTIME / 100
    assert second.sys_name == ref["1.3.6.1.2.1.1.5.0"]
    assert second.sys_descr == ref["1.3.6.1.2.1.1.1.0"]
    assert second.oids == {"cpu_load": float(ref[CPU_OID])}
    assert second.missing_oids == {"absent": "noSuchObject"} or second.missing_oids == {"absent": "noSuchInstance"}

    walk = {**snmpbulkwalk(snmpsim.port, "1.3.6.1.2.1.2.2.1", community=SIM_COMMUNITY),
            **snmpbulkwalk(snmpsim.port, "1.3.6.1.2.1.31.1.1.1", community=SIM_COMMUNITY)}
    rows = {r.ifindex: r for r in second.interfaces}
    assert sorted(rows) == sorted(SIM_INTERFACES)
    for i, row in rows.items():
        assert row.ifdescr == walk[f"{IF}.2.{i}"]
        assert row.ifname == walk.get(f"{IFX}.1.{i}", row.ifdescr)
        assert row.ifalias == walk.get(f"{IFX}.18.{i}", "")
        assert (row.admin, row.oper) == (int(walk[f"{IF}.7.{i}"]), int(walk[f"{IF}.8.{i}"]))
        hc = f"{IFX}.6.{i}" in walk
        for field, col in (FIELDS_HC if hc else FIELDS_32).items():
            assert getattr(row, field) == int(walk[f"{IFX if hc else IF}.{col}.{i}"]), (i, field)
        for field, col in FIELDS_ERR.items():
            assert getattr(row, field) == int(walk[f"{IF}.{col}.{i}"]), (i, field)
        speed = int(walk[f"{IFX}.15.{i}"]) * 1_000_000 if f"{IFX}.15.{i}" in walk else int(walk[f"{IF}.5.{i}"])
        assert row.speed == speed
    # The 32-bit counter at its maximum is reported as is (Prometheus handles the wrap).
    assert rows[3].in_octets == 4294967295


@pytest.mark.parametrize("selectors,expected", [
    pytest.param((InterfaceSelector("name", "Gi0/0/2"),), [2], id="ifName-exact"),
    pytest.param((InterfaceSelector("name", "Serial1/0"),), [3], id="ifDescr-exact"),
    pytest.param((InterfaceSelector("alias", "~ ^MSTP-", __import__("re").compile("^MSTP-")),), [1, 2],
                 id="alias-regex"),
    pytest.param((InterfaceSelector("index", 10), InterfaceSelector("name", "Gi0/0/1")), [1, 10], id="index-and-name"),
    pytest.param((InterfaceSelector("name", "nope"),), [], id="nothing-matches"),
])
def test_interface_selection(snmpsim, selectors, expected):
    target = FakeTarget("sim", v2(snmpsim.port, SIM_COMMUNITY, interfaces=selectors))

    async def go():
        probe = Poller()
        try:
            return await poll(probe, target)
        finally:
            await probe.close()

    result = run(go())
    assert result.ok
    assert [r.ifindex for r in result.interfaces] == expected


# --- snmpd: v2c and v3 authPriv ------------------------------------------------------------

@pytest.mark.parametrize("version", ["2c", "3"])
def test_snmpd_values_match_snmpget(snmpd, version):
    settings = v2(snmpd.port) if version == "2c" else v3(snmpd.port)
    target = FakeTarget(f"snmpd-{version}", settings)

    async def go():
        probe = Poller()
        try:
            return await poll(probe, target, tier(timeout=1.0))
        finally:
            await probe.close()

    before = snmpbulkwalk(snmpd.port, "1.3.6.1.2.1.31.1.1.1")
    up_before = int(snmpget(snmpd.port, "1.3.6.1.2.1.1.3.0")["1.3.6.1.2.1.1.3.0"])
    result = run(go())
    after = snmpbulkwalk(snmpd.port, "1.3.6.1.2.1.31.1.1.1")
    static = snmpget(snmpd.port, "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.3.0")
    assert result.ok, result
    assert up_before / 100 <= result.sys_uptime <= int(static["1.3.6.1.2.1.1.3.0"]) / 100
    assert (result.sys_name, result.sys_descr) == (static["1.3.6.1.2.1.1.5.0"], static["1.3.6.1.2.1.1.1.0"])
    descr = snmpbulkwalk(snmpd.port, f"{IF}.2")
    assert sorted(r.ifindex for r in result.interfaces) == sorted(int(k.rsplit(".", 1)[1]) for k in descr)
    for row in result.interfaces:
        i = row.ifindex
        assert row.ifname == after[f"{IFX}.1.{i}"]
        assert row.ifdescr == descr[f"{IF}.2.{i}"]
        # Live counters (our own SNMP traffic moves lo's): between the readings either side.
        for field, col in FIELDS_HC.items():
            assert int(before[f"{IFX}.{col}.{i}"]) <= getattr(row, field) <= int(after[f"{IFX}.{col}.{i}"])
        assert row.speed == int(after[f"{IFX}.15.{i}"]) * 1_000_000


def test_agent_stops_answering_mid_run(own_snmpd):
    target = FakeTarget("pausing", v2(own_snmpd.port))
    t = tier(timeout=0.3, retries=1)

    async def go():
        probe = Poller()
        try:
            ok = await probe.run(target, t)
            own_snmpd.pause()
            started = time.monotonic()
            with capture_logs() as logs:
                dead = [await probe.run(target, t) for _ in range(3)]
            elapsed = time.monotonic() - started
            own_snmpd.resume()
            back = await probe.run(target, t)
            return ok, dead, elapsed, back, logs
        finally:
            await probe.close()

    ok, dead, elapsed, back, logs = run(go())
    assert ok.ok and back.ok
    assert [r.reason for r in dead] == ["timeout"] * 3
    budget = t.parts["snmp"].timeout * (t.parts["snmp"].retries + 1)
    assert all(r.duration < budget + 0.25 for r in dead), [r.duration for r in dead]
    assert elapsed < 3 * (budget + 0.25)
    assert [e["event"] for e in logs] == ["snmp_poll_failed"]  # once per state change, not per poll


def test_agent_restart_counts_a_reboot(own_snmpd):
    target = FakeTarget("restarting", v2(own_snmpd.port))

    async def go():
        probe = Poller()
        try:
            first = await probe.run(target, tier())
            # Let uptime grow past what the restarted agent will report.
            agents.wait_for(lambda: int(snmpget(own_snmpd.port, "1.3.6.1.2.1.1.3.0")["1.3.6.1.2.1.1.3.0"])
                            > first.sys_uptime * 100 + 150, 10, "snmpd uptime to grow")
            second = await probe.run(target, tier())
            own_snmpd.stop()
            own_snmpd.start()
            third = await probe.run(target, tier())
            fourth = await probe.run(target, tier())
            return first, second, third, fourth, probe.reboots
        finally:
            await probe.close()

    first, second, third, fourth, reboots = run(go())
    assert all(r.ok for r in (first, second, third, fourth))
    assert (second.rebooted, third.rebooted, fourth.rebooted) == (False, True, False)
    assert reboots == [0, 0, 1, 1]
    assert third.sys_uptime < second.sys_uptime


def test_wrong_community_times_out_and_logs_once(snmpd):
    target = FakeTarget("wrong-community", v2(snmpd.port, community="not-the-community"))

    async def go():
        probe = Poller()
        try:
            with capture_logs() as logs:
                results = [await probe.run(target, tier(timeout=0.2, retries=0)) for _ in range(3)]
            return results, logs
        finally:
            await probe.close()

    results, logs = run(go())
    assert {r.reason for r in results} == {"timeout"}
    assert [e["event"] for e in logs] == ["snmp_poll_failed"]
    assert "not-the-community" not in repr(logs) + repr(results)


def test_wrong_v3_key_is_auth_and_logged_once(snmpd):
    target = FakeTarget("wrong-key", v3(snmpd.port, auth="wrong-auth-key-1"))

    async def go():
        probe = Poller()
        try:
            with capture_logs() as logs:
                results = [await probe.run(target, tier(timeout=0.5, retries=0)) for _ in range(3)]
            good = await probe.run(FakeTarget("right-key", v3(snmpd.port)), tier(timeout=1.0))
            return results, logs, good
        finally:
            await probe.close()

    results, logs, good = run(go())
    assert {r.reason for r in results} == {"auth"}
    assert [e["event"] for e in logs] == ["snmp_poll_failed"]
    assert "wrong-auth-key-1" not in repr(logs) + repr(results)
    assert good.ok  # the same user with the right key on the same engine still works


# --- a fake agent: wraps, reboots, hostile replies -------------------------------------------

def fake_mib(uptime: int, in_octets: int, hc: bool = True) -> dict:
    mib = {
        o("1.3.6.1.2.1.1.1.0"): octets("fake"), o("1.3.6.1.2.1.1.3.0"): ticks(uptime),
        o("1.3.6.1.2.1.1.5.0"): octets("fake-1"), o("1.3.6.1.2.1.2.1.0"): integer(1),
        o(f"{IF}.2.1"): octets("eth0"), o(f"{IF}.7.1"): integer(1), o(f"{IF}.8.1"): integer(1),
        o(f"{IF}.10.1"): counter32(in_octets % 2**32), o(f"{IF}.5.1"): gauge32(100_000_000),
        o("1.3.6.1.4.1.9.9.1.0"): octets(" 12.5 "),
    }
    if hc:
        mib[o(f"{IFX}.6.1")] = counter64(in_octets)
    return mib


def test_counter_wraps_reboots_and_fallback_with_fake_agent():
    async def go():
        agent = await FakeAgent(fake_mib(1000, 2**32 - 6, hc=False)).start()
        probe = Poller()
        target = FakeTarget("fake", v2(agent.port, "fake", oids=(ExtraOid("temp", o("1.3.6.1.4.1.9.9.1.0")),)))
        try:
            a = await probe.run(target, tier())
            agent.mib = fake_mib(1500, 2**32 + 4, hc=False)  # the 32-bit counter wrapped
            b = await probe.run(target, tier())
            agent.mib = fake_mib(20, 7, hc=True)  # rebooted; now with HC counters
            c = await probe.run(target, tier())
            d = await probe.run(target, tier())
            return a, b, c, d, probe.reboots
        finally:
            await probe.close()
            agent.close()

    a, b, c, d, reboots = run(go())
    assert all(r.ok for r in (a, b, c, d)), (a, b, c, d)
    assert (a.interfaces[0].in_octets, b.interfaces[0].in_octets) == (2**32 - 6, 4)
    assert (b.rebooted, c.rebooted, d.rebooted) == (False, True, False)
    assert reboots == [0, 0, 1, 1]
    assert a.oids == {"temp": 12.5}
    # After the reboot the table is rediscovered; the interface stays on the 32-bit column
    # it fell back to, which is harmless, and reports the device's value.
    assert d.interfaces[0].in_octets == 7


@pytest.mark.parametrize("mode,reasons", [
    pytest.param("garbage", {"malformed"}, id="garbage"),
    pytest.param("truncated", {"malformed"}, id="truncated-ber"),
    pytest.param("wrong_id", {"timeout"}, id="wrong-request-id"),
    pytest.param("silent", {"timeout"}, id="silent"),
])
def test_hostile_replies_never_crash(mode, reasons):
    async def go():
        agent = await FakeAgent(fake_mib(1000, 5)).start()
        probe = Poller()
        target = FakeTarget("hostile", v2(agent.port, "fake"))
        t = tier(timeout=0.2, retries=1)
        try:
            agent.mode = mode
            bad = [await probe.run(target, t) for _ in range(2)]
            agent.mode = "normal"
            good = await probe.run(target, t)
            return bad, good
        finally:
            await probe.close()
            agent.close()

    bad, good = run(go())
    assert {r.reason for r in bad} <= reasons and not any(r.ok for r in bad)
    assert all(r.duration < 0.2 * 2 + 0.25 for r in bad)
    assert good.ok


def test_dead_device_does_not_delay_others(snmpsim):
    async def go():
        dead = await FakeAgent(fake_mib(1, 1), mode="silent").start()
        probe = Poller()
        t = tier(timeout=1.0, retries=1)
        try:
            slow = asyncio.ensure_future(probe.run(FakeTarget("dead", v2(dead.port, "fake")), t))
            started = time.monotonic()
            fast = await probe.run(FakeTarget("alive", v2(snmpsim.port, SIM_COMMUNITY)), t)
            fast_elapsed = time.monotonic() - started
            return fast, fast_elapsed, await slow
        finally:
            await probe.close()
            dead.close()

    fast, fast_elapsed, slow = run(go())
    assert fast.ok and fast_elapsed < 1.0
    assert slow.reason == "timeout"
