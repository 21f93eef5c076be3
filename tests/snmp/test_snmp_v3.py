"""SNMPv3 (USM) against real Net-SNMP snmpd on loopback: every auth/priv pair it supports, bad credentials,
agent restarts and engine changes, first contact in two exchanges, refused ports."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from probes.snmp import usm
from probes.snmp.caller import Batch
from probes.snmp.codec import GET, oid_content
from probes.snmp.config import Secret, SnmpSettings
from probes.snmp.transport import SnmpUdpClient
from probes.snmp.v3 import V3Client
from tests.snmp.agents import V3_AUTH, V3_PRIV, V3_USER, Snmpd, net_snmp_v3, snmpget
from tests.snmp.conftest import IF, IFX, FakeTarget, Poller, tier, v3
from tests.helpers import free_port

# What Net-SNMP 5.9 (Debian's snmpd) accepts in createUser and snmpget -a/-x here; AES192/AES256 with
# a shorter hash use its (Blumenthal) key extension. AES192C/AES256C/3DES are not in its build.
NET_SNMP_AUTH = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
NET_SNMP_PRIV = ("DES", "AES", "AES192", "AES256")
PAIRS = [(a, None) for a in NET_SNMP_AUTH] + [(a, p) for a in NET_SNMP_AUTH for p in NET_SNMP_PRIV]
AUTH_PASS, PRIV_PASS = "v3-auth-phrase-1", "v3-priv-phrase-2"
SYS_UPTIME, SYS_NAME, SYS_DESCR = "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.1.0"


def user_name(auth: str, priv: str | None) -> str:
    return f"u-{auth}-{priv or 'nopriv'}".lower()


def dashed(name: str) -> str:
    return name if name in ("MD5", "SHA", "AES", "DES") else name[:3] + "-" + name[3:]


def users_conf() -> str:
    lines = []
    for auth, priv in PAIRS:
        name = user_name(auth, priv)
        if priv:
            lines.append(f'createUser {name} {dashed(auth)} "{AUTH_PASS}" {dashed(priv)} "{PRIV_PASS}"')
        else:
            lines.append(f'createUser {name} {dashed(auth)} "{AUTH_PASS}"')
        lines.append(f"rouser {name} {'priv' if priv else 'auth'}")
    return "\n".join(lines) + "\n"


def settings(port: int, auth: str, priv: str | None, user: str | None = None, auth_pass: str = AUTH_PASS,
             priv_pass: str = PRIV_PASS) -> SnmpSettings:
    return SnmpSettings(version="3", port=port, user=user or user_name(auth, priv), auth_protocol=auth,
                        auth_key=Secret(auth_pass), priv_protocol=priv, priv_key=Secret(priv_pass) if priv else None)


@pytest.fixture(scope="module")
def v3_snmpd(tmp_path_factory) -> Iterator[Snmpd]:
    agent = Snmpd(tmp_path_factory.mktemp("snmpd-v3"), users_conf())
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def run(coro):
    return asyncio.run(coro)


async def poll_once(target: FakeTarget, t=None, probe: Poller | None = None):
    own = probe is None
    probe = probe or Poller()
    try:
        return await probe.run(target, t or tier(timeout=1.0))
    finally:
        if own:
            await probe.close()


# --- every auth/priv pair: the same values Net-SNMP's own client reads --------------------------

@pytest.mark.parametrize("auth,priv", PAIRS, ids=[f"{a}-{p or 'authNoPriv'}" for a, p in PAIRS])
def test_values_equal_net_snmp_v3(v3_snmpd, auth, priv):
    port = v3_snmpd.port
    cred = dict(user=user_name(auth, priv), auth=auth, auth_key=AUTH_PASS, priv=priv,
                priv_key=PRIV_PASS if priv else None)
    before = net_snmp_v3("snmpbulkwalk", port, [f"{IFX}"], **cred)
    up_before = int(net_snmp_v3("snmpget", port, [SYS_UPTIME], **cred)[SYS_UPTIME])
    result = run(poll_once(FakeTarget(f"v3-{auth}-{priv}", settings(port, auth, priv))))
    static = net_snmp_v3("snmpget", port, [SYS_NAME, SYS_DESCR, SYS_UPTIME], **cred)
    after = net_snmp_v3("snmpbulkwalk", port, [f"{IFX}"], **cred)
    table = net_snmp_v3("snmpbulkwalk", port, [f"{IF}"], **cred)
    assert result.ok, result
    assert (result.sys_name, result.sys_descr) == (static[SYS_NAME], static[SYS_DESCR])
    assert up_before / 100 <= result.sys_uptime <= int(static[SYS_UPTIME]) / 100
    assert sorted(r.ifindex for r in result.interfaces) == sorted(
        int(k.rsplit(".", 1)[1]) for k in table if k.startswith(f"{IF}.2."))
    for row in result.interfaces:
        i = row.ifindex
        assert (row.ifname, row.ifdescr) == (after[f"{IFX}.1.{i}"], table[f"{IF}.2.{i}"])
        assert (row.admin, row.oper) == (int(table[f"{IF}.7.{i}"]), int(table[f"{IF}.8.{i}"]))
        assert row.speed == int(after[f"{IFX}.15.{i}"]) * 1_000_000
        for field, col in (("in_octets", 6), ("out_octets", 10), ("in_ucast_pkts", 7), ("out_ucast_pkts", 11)):
            assert int(before[f"{IFX}.{col}.{i}"]) <= getattr(row, field) <= int(after[f"{IFX}.{col}.{i}"])
        for field, col in (("in_errors", 14), ("out_errors", 20)):
            assert getattr(row, field) == int(table[f"{IF}.{col}.{i}"])


# --- bad credentials: the right reason, once in the log, no secret anywhere ----------------------

@pytest.mark.parametrize("case,expect", [
    pytest.param(dict(auth_pass="wrong-auth-phrase"), "usmStatsWrongDigests", id="wrong-auth-key"),
    pytest.param(dict(priv_pass="wrong-priv-phrase"), "wrong privacy key", id="wrong-priv-key"),
    pytest.param(dict(user="nobody-here"), "usmStatsUnknownUserNames", id="unknown-user"),
    pytest.param(dict(priv="AES256", user=user_name("SHA256", "AES")), "wrong privacy key", id="wrong-priv-protocol"),
])
def test_bad_credentials_are_auth_and_logged_once(v3_snmpd, case, expect):
    kw = dict(auth="SHA256", priv="AES")
    kw.update({k: v for k, v in case.items() if k in ("auth", "priv")})
    s = settings(v3_snmpd.port, kw["auth"], kw["priv"], **{k: v for k, v in case.items() if k not in kw})
    target = FakeTarget("bad-credentials", s)

    async def go():
        probe = Poller()
        try:
            with capture_logs() as logs:
                results = [await probe.run(target, tier(timeout=0.5, retries=0)) for _ in range(3)]
                good = await probe.run(FakeTarget("good", settings(v3_snmpd.port, "SHA256", "AES")),
                                       tier(timeout=1.0))
            return results, logs, good, probe.probe.v3()
        finally:
            await probe.close()

    results, logs, good, client = run(go())
    assert [r.reason for r in results] == ["auth"] * 3, results
    assert all(expect in r.detail for r in results), results[0].detail
    events = [e["event"] for e in logs]
    assert events.count("snmp_poll_failed") == 1 and "snmp_poll_crashed" not in events, events
    assert events[-1] == "snmp_poll_recovered" or good.ok  # the other target's first poll logs nothing
    assert good.ok, good  # the same agent, right credentials, same client: unaffected
    text = repr(logs) + repr(results) + repr(client.__dict__)
    for secret in ("wrong-auth-phrase", "wrong-priv-phrase", AUTH_PASS, PRIV_PASS):
        assert secret not in text
    for engine in client._engines.values():
        for keys in engine.keys.values():
            assert keys is None or keys.auth_key.hex() not in text


def test_wrong_v3_auth_key_through_the_shared_snmpd_user(snmpd):
    """The conftest's user (SHA/AES), as the v3 agent test configures it, with a wrong key."""
    result = run(poll_once(FakeTarget("wrong", v3(snmpd.port, auth="not-the-auth-key")),
                           tier(timeout=0.5, retries=0)))
    assert (result.ok, result.reason) == (False, "auth")


# --- first contact: discovery answered at once, then the request ------------------------------------

def test_first_contact_is_discovery_plus_request(v3_snmpd):
    s = settings(v3_snmpd.port, "SHA", "AES")
    scalars = Batch([oid_content((1, 3, 6, 1, 2, 1, 1, 3, 0)), oid_content((1, 3, 6, 1, 2, 1, 1, 5, 0))])

    async def go():
        udp = SnmpUdpClient()
        client = V3Client(udp)
        try:
            # A retry would show as a third datagram sent; the timeout is long so a lost
            # discovery could not hide behind a fast resend either.
            first = await client.request(s, "127.0.0.1", v3_snmpd.port, GET, scalars, 5.0, 1)
            after_first = (udp.stats.sent, udp.stats.received)
            second = await client.request(s, "127.0.0.1", v3_snmpd.port, GET, scalars, 5.0, 1)
            return first, after_first, second, (udp.stats.sent, udp.stats.received)
        finally:
            await udp.close()

    first, after_first, second, totals = run(go())
    assert first.error_status == 0 and isinstance(first.varbinds[0][1], int)
    assert first.varbinds[1][1] == snmpget(v3_snmpd.port, "1.3.6.1.2.1.1.5.0")["1.3.6.1.2.1.1.5.0"].encode()
    assert after_first == (2, 2)  # discovery and its report, the GET and its response
    assert totals == (3, 3)  # later requests: one exchange each
    assert second.error_status == 0


def test_concurrent_first_polls_share_one_discovery(v3_snmpd):
    targets = [FakeTarget(f"same-device-{i}", settings(v3_snmpd.port, "SHA", "AES", )) for i in range(4)]

    async def go():
        probe = Poller()
        v2probe = Poller()
        try:
            results = await asyncio.gather(*(probe.run(t, tier(timeout=5.0)) for t in targets))
            # The same polls over v2c: the v3 ones may only add the one discovery exchange.
            v2 = [FakeTarget(f"v2-{i}", SnmpSettings(version="2c", port=v3_snmpd.port,
                                                     community=Secret("lifeline-test-ro"))) for i in range(4)]
            await asyncio.gather(*(v2probe.run(t, tier(timeout=5.0)) for t in v2))
            return results, probe.probe._udp.stats, v2probe.probe._udp.stats
        finally:
            await probe.close()
            await v2probe.close()

    results, v3_stats, v2_stats = run(go())
    assert all(r.ok for r in results), results
    assert v3_stats.sent == v2_stats.sent + 1, (v3_stats, v2_stats)


# --- agent restarts: engine boots change, engine id change --------------------------------------

@pytest.fixture
def persistent_snmpd(tmp_path) -> Iterator[Snmpd]:
    """An snmpd that keeps its engine id and counts its boots across restarts, as deployed agents do."""
    agent = Snmpd(tmp_path / "snmpd", persistent=True)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def test_engine_boots_change_after_restart(persistent_snmpd):
    own_snmpd = persistent_snmpd
    target = FakeTarget("restarting-v3", v3(own_snmpd.port))

    async def go():
        probe = Poller()
        try:
            first = await probe.run(target, tier(timeout=1.0))
            engine = next(iter(probe.probe.v3()._engines.values()))
            boots_before, id_before = engine.boots, engine.engine_id
            own_snmpd.stop()
            own_snmpd.start()
            udp = probe.probe._udp
            sent, received = udp.stats.sent, udp.stats.received
            uptime = Batch([oid_content((1, 3, 6, 1, 2, 1, 1, 3, 0))])
            await probe.probe.v3().request(target.settings, "127.0.0.1", own_snmpd.port, GET, uptime, 5.0, 1)
            resync = (udp.stats.sent - sent, udp.stats.received - received)
            with capture_logs() as logs:
                second = await probe.run(target, tier(timeout=1.0))
            third = await probe.run(target, tier(timeout=1.0))
            return first, second, third, boots_before, id_before, engine, logs, resync
        finally:
            await probe.close()

    first, second, third, boots_before, id_before, engine, logs, resync = run(go())
    assert first.ok and second.ok and third.ok, (first, second, third)
    assert engine.engine_id == id_before and engine.boots == boots_before + 1
    assert "snmp_poll_failed" not in [e["event"] for e in logs]
    # The first request after the restart got a notInTimeWindow report and was resent at once.
    assert resync == (2, 2)


def test_engine_id_change_is_rediscovered(tmp_path):
    agent = Snmpd(tmp_path / "snmpd", "engineID lifeline-engine-a\n")
    agent.start()
    target = FakeTarget("new-engine", v3(agent.port))

    async def go():
        probe = Poller()
        try:
            first = await probe.run(target, tier(timeout=1.0))
            old = next(iter(probe.probe.v3()._engines.values())).engine_id
            agent.stop()
            agent.write_conf("engineID lifeline-engine-b\n")
            shutil.rmtree(agent.dir / "persist")
            (agent.dir / "persist").mkdir()
            agent.start()
            second = await probe.run(target, tier(timeout=1.0))
            new = next(iter(probe.probe.v3()._engines.values())).engine_id
            return first, second, old, new
        finally:
            await probe.close()

    try:
        first, second, old, new = run(go())
    finally:
        agent.stop()
    assert first.ok and second.ok, (first, second)
    assert old != new and new.endswith(b"lifeline-engine-b")


# --- the shared transport: a closed port is refused at once ----------------------------------------

def test_refused_v3_port_is_refused():
    port = free_port(kind=__import__("socket").SOCK_DGRAM)
    result = run(poll_once(FakeTarget("closed-v3", v3(port)), tier(timeout=1.0, retries=2)))
    assert result.reason == "refused", result


def test_every_protocol_name_in_the_config_has_an_implementation():
    from probes.snmp.config import AUTH_PROTOCOLS, PRIV_PROTOCOLS

    assert set(AUTH_PROTOCOLS) == set(usm.AUTH)
    assert set(PRIV_PROTOCOLS) == set(usm.PRIV)
    assert V3_USER and V3_AUTH and V3_PRIV  # the conftest user is SHA/AES, covered above
