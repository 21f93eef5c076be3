"""Fixtures for the SNMP tests: snmpd, snmpsim with a recorded router, targets and tiers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from agent.config import DEFAULT_TIERS
from common.model import Tier
from probes.snmp import SnmpKind
from probes.snmp.config import Secret, SnmpSettings
from probes.snmp.probe import SnmpProbe
from tests.kit import retier
from tests.snmp.agents import V2_COMMUNITY, V3_AUTH, V3_PRIV, V3_USER, Snmpd, Snmpsim, silent_port

SYS = "1.3.6.1.2.1.1"
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
SIM_COMMUNITY = "core-router"

# A CPE-like router: HC counters on 1 and 2, none on 3 (32-bit about to wrap) and no
# ifXTable row at all on 10; ifIndex has a gap, as real devices do.
SIM_INTERFACES = {
    1: dict(descr="GigabitEthernet0/0/1", name="Gi0/0/1", alias="MSTP-gov-cloud", admin=1, oper=1,
            hc=(987654321012, 123456789012, 5550001, 4440001), c32=(1234, 5678, 11, 22), speed_m=100,
            errs=(3, 4, 5, 6)),
    2: dict(descr="GigabitEthernet0/0/2", name="Gi0/0/2", alias="MSTP-hospital", admin=1, oper=2,
            hc=(10, 20, 30, 40), c32=(10, 20, 30, 40), speed_m=1000, errs=(0, 0, 0, 0)),
    3: dict(descr="Serial1/0", name="Se1/0", alias="backup line", admin=1, oper=1, hc=None,
            c32=(4294967295, 4294967000, 77, 88), speed_b=2048000, errs=(7, 8, 9, 10)),
    10: dict(descr="NULL0", name=None, alias=None, admin=1, oper=1, hc=None, c32=(0, 0, 0, 0),
             speed_b=10000000, errs=(0, 0, 0, 0)),
}
SIM_UPTIME = 8640000  # ticks: one day
CPU_OID = "1.3.6.1.4.1.2011.6.3.4.1.2.0"


def sim_records() -> list[tuple[str, int, object]]:
    rows: list[tuple[str, int, object]] = [
        (f"{SYS}.1.0", 4, "Huawei Versatile Routing Platform Software AR651"),
        (f"{SYS}.3.0", 67, SIM_UPTIME),
        (f"{SYS}.5.0", 4, "gov-cloud-cpe-01"),
        ("1.3.6.1.2.1.2.1.0", 2, len(SIM_INTERFACES)),
        ("1.3.6.1.2.1.31.1.5.0", 67, 100),
        (CPU_OID, 66, 37),
    ]
    for i, d in SIM_INTERFACES.items():
        rows += [(f"{IF}.1.{i}", 2, i), (f"{IF}.2.{i}", 4, d["descr"]), (f"{IF}.7.{i}", 2, d["admin"]),
                 (f"{IF}.8.{i}", 2, d["oper"])]
        for col, v in zip((10, 16, 11, 17), d["c32"]):
            rows.append((f"{IF}.{col}.{i}", 65, v))
        for col, v in zip((13, 14, 19, 20), d["errs"]):
            rows.append((f"{IF}.{col}.{i}", 65, v))
        if "speed_b" in d:
            rows.append((f"{IF}.5.{i}", 66, d["speed_b"]))
        else:
            rows.append((f"{IF}.5.{i}", 66, min(d["speed_m"] * 1_000_000, 4294967295)))
        if d["name"] is not None:
            rows += [(f"{IFX}.1.{i}", 4, d["name"]), (f"{IFX}.18.{i}", 4, d["alias"])]
        if d["hc"]:
            for col, v in zip((6, 10, 7, 11), d["hc"]):
                rows.append((f"{IFX}.{col}.{i}", 70, v))
        if "speed_m" in d:
            rows.append((f"{IFX}.15.{i}", 66, d["speed_m"]))
    return rows


@dataclasses.dataclass(frozen=True)
class FakeTarget:
    """The slice of agent.config.Target the probe reads."""

    name: str
    settings: SnmpSettings
    address: str = "127.0.0.1"
    tier: str = "P1"
    category: str = "router"
    site: str = "lab"

    def setting(self, kind: str) -> Any:
        return self.settings if kind == "snmp" else None


def tier(timeout: float = 0.3, retries: int = 1, interval: float = 10.0) -> Tier:
    return retier(DEFAULT_TIERS["P1"], snmp_timeout=timeout, snmp_retries=retries, snmp_interval=interval)


class Poller:
    """An SnmpProbe with each target's state kept and results recorded, as the agent's store does."""

    def __init__(self, **kwargs: Any) -> None:
        self.probe = SnmpProbe(**kwargs)
        self.kind = SnmpKind()
        self.states: dict[str, Any] = {}
        self.reboots: list[int] = []  # the target's reboot counter after each poll

    async def run(self, target: Any, t: Tier) -> Any:
        state = self.states[target.name] = self.kind.new_state(target, self.states.get(target.name))
        result = await self.probe.run(target, t, state)
        self.kind.record(state, result)
        self.reboots.append(state.reboots)
        return result

    async def close(self) -> None:
        await self.probe.close()


def v2(port: int, community: str = V2_COMMUNITY, **kw: Any) -> SnmpSettings:
    return SnmpSettings(version="2c", port=port, community=Secret(community), **kw)


def v3(port: int, auth: str = V3_AUTH, priv: str = V3_PRIV, **kw: Any) -> SnmpSettings:
    return SnmpSettings(version="3", port=port, user=V3_USER, auth_protocol="SHA", auth_key=Secret(auth),
                        priv_protocol="AES", priv_key=Secret(priv), **kw)


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory) -> Iterator[Snmpd]:
    """One snmpd shared by a module's read-only tests."""
    agent = Snmpd(tmp_path_factory.mktemp("snmpd"))
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def own_snmpd(tmp_path) -> Iterator[Snmpd]:
    """An snmpd a test may pause, kill and restart."""
    agent = Snmpd(tmp_path / "snmpd")
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="module")
def snmpsim(tmp_path_factory) -> Iterator[Snmpsim]:
    sim = Snmpsim(tmp_path_factory.mktemp("snmpsim"), {SIM_COMMUNITY: sim_records()})
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback SNMP port that never answers (bound, never read): its polls time out."""
    with silent_port() as port:
        yield port
