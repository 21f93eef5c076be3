"""The benchmarks still run: each at its smallest size, against the real peers, on loopback.

No figure is asserted (speed lives in bench/results.md); what fails here is a bench
that no longer runs against the current code. bench_snmp.py had quietly stopped
running when the SNMP kind started reading a target's category and site, which
its stand-in target class lacked: it now uses the agent's own model, and this
test keeps it honest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.helpers import ROOT, require_root, require_tool

BENCH = os.path.join(ROOT, "bench")


def test_bench_snmp_runs_v2c_and_v3_beside_snmp_exporter(tmp_path):
    require_tool("snmpd", "snmpd")
    require_tool("prometheus-snmp-exporter", "prometheus-snmp-exporter")
    results = tmp_path / "results.md"
    results.write_text("# earlier runs\n")
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "bench_snmp.py"), "--devices", "4", "--rounds", "1",
                           "--v3", "sha-aes", "--results", str(results)], capture_output=True, text=True, timeout=300,
                          check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| lifeline") or line.startswith("| snmp_exp")]
    assert len(rows) == 4, proc.stdout  # both pollers, v2c and one v3 pair
    # Every poll answered: the failures column (last) reads "0 (0)" on each row.
    assert all(row.rstrip(" |").endswith("0 (0)") for row in rows), proc.stdout
    # Recorded as the other benches record: appended under a heading with the date and the machine.
    recorded = results.read_text()
    assert recorded.startswith("# earlier runs\n\n## "), recorded[:200]
    heading = recorded.splitlines()[2]
    assert re.fullmatch(r"## \d{4}-\d\d-\d\d \d\d:\d\d UTC — SNMP v2c and SNMPv3 authPriv, \d+ CPUs \(.+\), .*", heading)
    assert all(row in recorded for row in rows)


def test_icmp_floor_pings_loopback_and_refuses_anything_else(tmp_path):
    require_root()
    good = tmp_path / "good.txt"
    good.write_text("".join(f"127.0.9.{i}\n" for i in range(1, 21)))
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "icmp_floor.py"), "--file", str(good),
                           "--interval", "0.5", "--packets", "2", "--packet-interval", "0.05",
                           "--warmup", "0.5", "--window", "1"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    # 20 targets x 2 echoes every 0.5 s over a 1 s window: about 80, every one answered by the kernel.
    assert 60 <= r["sent"] <= 100, r
    assert r["received"] >= r["sent"] - 2, r  # the last echoes of the window may land after it
    assert r["cpu"] > 0, r

    bad = tmp_path / "bad.txt"
    bad.write_text("127.0.0.1\n198.18.0.1\n")
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "icmp_floor.py"), "--file", str(bad), "--window", "1"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "loopback (127.0.0.0/8) addresses only" in proc.stderr
