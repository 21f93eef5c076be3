"""The whole agent polling snmpsim and snmpd: /metrics values equal what snmpget reads."""

from __future__ import annotations

import subprocess

from tests.helpers import require_tool, samples, value, wait_for
from tests.snmp.agents import V3_AUTH, V3_PRIV, V3_USER, snmpbulkwalk, snmpget
from tests.snmp.conftest import CPU_OID, IF, IFX, SIM_COMMUNITY

CONFIG = """\
tiers:
  P1: {{snmp_interval: 1s, snmp_timeout: 300ms, snmp_retries: 1}}
snmp_profiles:
  noc-v3:
    version: 3
    user: {user}
    auth_protocol: SHA
    auth_key_env: LIFELINE_TEST_V3_AUTH
    priv_protocol: AES
    priv_key_env: LIFELINE_TEST_V3_PRIV
targets:
  - name: sim
    address: 127.0.0.1
    tier: P1
    probes: [snmp]
    snmp:
      community: {sim_community}
      port: {sim_port}
      oids: [{{name: cpu_load, oid: "{cpu}"}}, {{name: absent, oid: "1.3.6.1.4.1.99999.1.0"}}]
  - {{name: snmpd-v3, address: 127.0.0.1, tier: P1, probes: [snmp], snmp: {{profile: noc-v3, port: {snmpd_port}}}}}
  - {{name: dead, address: 127.0.0.1, tier: P1, probes: [snmp], snmp: {{community: x, port: {dead_port}}}}}
"""


def oid_value(m, target, name):
    # tests.helpers.value() takes the metric as its own "name" argument, which is also this label.
    found = [v for (n, ls), v in m.items()
             if n == "lifeline_snmp_oid_value" and ("target", target) in ls and ("name", name) in ls]
    return found[0] if found else None


def test_metrics_equal_snmpget(agent_factory, snmpsim, snmpd, dead_port):
    text = CONFIG.format(user=V3_USER, sim_community=SIM_COMMUNITY, sim_port=snmpsim.port, cpu=CPU_OID,
                         snmpd_port=snmpd.port, dead_port=dead_port)
    agent = agent_factory(text, env={"LIFELINE_TEST_V3_AUTH": V3_AUTH, "LIFELINE_TEST_V3_PRIV": V3_PRIV})

    def ready():
        m = samples(agent.metrics())
        ups = [value(m, "lifeline_snmp_up", target=t) for t in ("sim", "snmpd-v3")]
        failed = value(m, "lifeline_probe_failures_total", target="dead", probe="snmp", reason="timeout")
        return m if ups == [1.0, 1.0] and failed else None

    m = wait_for(ready, 20, "both SNMP targets up and the dead one failing in /metrics")
    sim = snmpget(snmpsim.port, "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0", CPU_OID, community=SIM_COMMUNITY)
    assert value(m, "lifeline_snmp_sys_uptime_seconds", target="sim") == int(sim["1.3.6.1.2.1.1.3.0"]) / 100
    assert oid_value(m, "sim", "cpu_load") == float(sim[CPU_OID])
    assert oid_value(m, "sim", "absent") is None
    assert value(m, "lifeline_snmp_info", target="sim", sysname=sim["1.3.6.1.2.1.1.5.0"]) == 1
    walk = {**snmpbulkwalk(snmpsim.port, IF, community=SIM_COMMUNITY),
            **snmpbulkwalk(snmpsim.port, IFX, community=SIM_COMMUNITY)}
    for i in (1, 2, 3, 10):
        name = walk.get(f"{IFX}.1.{i}", walk[f"{IF}.2.{i}"])
        lab = dict(target="sim", ifindex=str(i), ifname=name)
        assert value(m, "lifeline_snmp_if_oper_status", **lab) == int(walk[f"{IF}.8.{i}"])
        hc = f"{IFX}.6.{i}" in walk
        expected_in = walk[f"{IFX}.6.{i}"] if hc else walk[f"{IF}.10.{i}"]
        assert value(m, "lifeline_snmp_if_in_octets_total", **lab) == int(expected_in)
        assert value(m, "lifeline_snmp_if_in_errors_total", **lab) == int(walk[f"{IF}.14.{i}"])
        assert value(m, "lifeline_snmp_if_out_discards_total", **lab) == int(walk[f"{IF}.19.{i}"])
        assert value(m, "lifeline_snmp_if_info", **lab, ifdescr=walk[f"{IF}.2.{i}"]) == 1
    assert value(m, "lifeline_snmp_reboots_total", target="sim") == 0
    assert value(m, "lifeline_snmp_up", target="dead") == 0

    d = snmpget(snmpd.port, "1.3.6.1.2.1.1.5.0")
    assert value(m, "lifeline_snmp_info", target="snmpd-v3", sysname=d["1.3.6.1.2.1.1.5.0"]) == 1
    ifx = snmpbulkwalk(snmpd.port, IFX)
    lo = dict(target="snmpd-v3", ifindex="1", ifname=ifx[f"{IFX}.1.1"])
    assert value(m, "lifeline_snmp_if_oper_status", **lo) == 1
    assert 0 < value(m, "lifeline_snmp_if_in_octets_total", **lo) <= int(ifx[f"{IFX}.6.1"])
    assert value(m, "lifeline_snmp_if_speed_bits_per_second", **lo) == int(ifx[f"{IFX}.15.1"]) * 1_000_000
    assert V3_AUTH not in agent.log() and V3_PRIV not in agent.log()


def test_exposition_passes_promtool(agent_factory, snmpsim):
    promtool = require_tool("promtool", "prometheus")
    text = CONFIG.split("  - {{name: snmpd-v3")[0].format(
        user=V3_USER, sim_community=SIM_COMMUNITY, sim_port=snmpsim.port, cpu=CPU_OID)
    agent = agent_factory(text, env={"LIFELINE_TEST_V3_AUTH": V3_AUTH, "LIFELINE_TEST_V3_PRIV": V3_PRIV})
    def snmp_series():
        text = agent.metrics()
        return text if "lifeline_snmp_if_info{" in text else None

    body = wait_for(snmp_series, 20, "SNMP series in /metrics")
    snmp_only = "\n".join(line for line in body.splitlines() if "lifeline_snmp_" in line) + "\n"
    out = subprocess.run([promtool, "check", "metrics"], input=snmp_only, capture_output=True, text=True)
    # The contract names the speed in bits per second, as IF-MIB does; promtool's
    # lint prefers bytes. That one known complaint is accepted, anything else fails.
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if line and not line.startswith('lifeline_snmp_if_speed_bits_per_second use base unit "bytes"')]
    assert problems == [], problems
