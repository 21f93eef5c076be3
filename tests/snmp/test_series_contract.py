"""The exposition's contract: the same configuration yields the same families and series.

The golden file lists every family header (HELP and TYPE) and every series
(name and labels, values dropped) of an agent probing ICMP on loopback (up),
the snmpsim router and a silent SNMP port (reason "timeout"). It was written by the code before the probe
kinds owned their own metrics; a refactor must reproduce it. After a
deliberate change to the metrics, regenerate it with
``LIFELINE_UPDATE_GOLDEN=1 pytest tests/snmp/test_series_contract.py`` and say
why in the commit.
"""

from __future__ import annotations

import os
import re

from tests.helpers import ROOT, value, samples, wait_for
from tests.snmp.conftest import CPU_OID, SIM_COMMUNITY

GOLDEN = os.path.join(ROOT, "tests", "golden", "series.txt")

CONFIG = """\
tiers:
  P1: {{interval: 1s, timeout: 300ms, packets: 2, packet_interval: 50ms,
        snmp_interval: 1s, snmp_timeout: 300ms, snmp_retries: 1}}
  lab: {{priority: 7, interval: 2s, timeout: 500ms, packets: 1}}
targets:
  - {{name: loop-v4, address: 127.0.0.1, tier: P1, category: hospital, site: putuo,
      labels: {{circuit_id: ZS-0001, carrier: telecom}}}}
  - {{name: loop-v6, address: "::1", tier: lab, site: dinghai}}
  - name: sim
    address: 127.0.0.1
    tier: P1
    probes: [icmp, snmp]
    snmp:
      community: {community}
      port: {sim_port}
      oids: [{{name: cpu_load, oid: "{cpu}"}}]
  - {{name: silent, address: 127.0.0.1, tier: P1, probes: [snmp], snmp: {{community: x, port: {dead_port}}}}}
"""

# Present or not depending on timing, or different on every machine: compared by name only.
VOLATILE_LABELS = {"lifeline_config_info": "digest", "lifeline_build_info": "python_version"}
TIMING_DEPENDENT = ("lifeline_icmp_replies_ignored_total",)


def contract(text: str) -> list[str]:
    """Family headers and series identities of an exposition, sorted; values and process_* dropped."""
    out = set()
    for line in text.splitlines():
        if not line or line.startswith(("process_", "# HELP process_", "# TYPE process_")):
            continue
        if line.startswith("#"):
            out.add(line)
            continue
        ident = line.rsplit(" ", 1)[0]
        name = ident.split("{", 1)[0]
        if name.startswith(TIMING_DEPENDENT):
            continue
        if name in VOLATILE_LABELS:
            ident = re.sub(rf'{VOLATILE_LABELS[name]}="[^"]*"', f'{VOLATILE_LABELS[name]}="*"', ident)
        out.add(ident)
    return sorted(out)


def test_series_set_matches_golden(agent_factory, snmpsim, dead_port):
    text = CONFIG.format(community=SIM_COMMUNITY, sim_port=snmpsim.port, cpu=CPU_OID,
                         dead_port=dead_port)
    agent = agent_factory(text)

    def settled():
        body = agent.metrics()
        m = samples(body)
        done = (value(m, "lifeline_snmp_up", target="sim") == 1
                and value(m, "lifeline_target_up", target="loop-v6") == 1
                and value(m, "lifeline_target_up", target="loop-v4") == 1
                and value(m, "lifeline_probe_failures_total", target="silent", probe="snmp", reason="timeout"))
        return body if done else None

    body = wait_for(settled, 30, "every target probed at least once")
    got = contract(body)
    if os.environ.get("LIFELINE_UPDATE_GOLDEN"):
        with open(GOLDEN, "w") as fh:
            fh.write("\n".join(got) + "\n")
    with open(GOLDEN) as fh:
        want = fh.read().splitlines()
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert (missing, extra) == ([], []), f"series missing: {missing[:20]}\nseries extra: {extra[:20]}"
