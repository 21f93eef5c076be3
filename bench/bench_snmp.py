"""Lifeline's SnmpProbe against Debian's prometheus-snmp-exporter, same devices, same columns.

N simulated devices are N UDP ports of one Net-SNMP snmpd on 127.0.0.1 (each
port is a separate target to both pollers). Phase 1 polls every device
``--rounds`` times with SnmpProbe in this process; phase 2 scrapes every device
as many times through snmp_exporter's /snmp endpoint. CPU is read from
/proc/<pid>/stat for the exporter and from this process's own usage for
Lifeline (the scraping threads of phase 2 are not counted against either).
Loopback only.

    .venv/bin/python bench/bench_snmp.py --devices 200 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import DEFAULT_TIERS  # noqa: E402
from probes.snmp import SnmpKind  # noqa: E402
from probes.snmp.probe import SnmpProbe  # noqa: E402
from probes.snmp.config import Secret, SnmpSettings  # noqa: E402

from benchlib import wait_until  # noqa: E402

HOST = "127.0.0.1"
COMMUNITY = "bench-ro"
CLK_TCK = os.sysconf("SC_CLK_TCK")
IF, IFX = "1.3.6.1.2.1.2.2.1", "1.3.6.1.2.1.31.1.1.1"
# The columns SnmpProbe reads, as (name, oid, type) for the exporter module.
COLUMNS = [("ifAdminStatus", f"{IF}.7", "gauge"), ("ifOperStatus", f"{IF}.8", "gauge"),
           ("ifHCInOctets", f"{IFX}.6", "counter"), ("ifHCOutOctets", f"{IFX}.10", "counter"),
           ("ifHCInUcastPkts", f"{IFX}.7", "counter"), ("ifHCOutUcastPkts", f"{IFX}.11", "counter"),
           ("ifInDiscards", f"{IF}.13", "counter"), ("ifInErrors", f"{IF}.14", "counter"),
           ("ifOutDiscards", f"{IF}.19", "counter"), ("ifOutErrors", f"{IF}.20", "counter"),
           ("ifHighSpeed", f"{IFX}.15", "gauge")]
LOOKUPS = [("ifDescr", f"{IF}.2"), ("ifName", f"{IFX}.1"), ("ifAlias", f"{IFX}.18")]


def free_udp_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def exporter_module() -> str:
    lines = ["lifeline:", "  walk:"]
    lines += [f"  - {oid}" for _, oid in LOOKUPS] + [f"  - {oid}" for _, oid, _ in COLUMNS]
    lines += ["  get: [1.3.6.1.2.1.1.3.0, 1.3.6.1.2.1.1.5.0, 1.3.6.1.2.1.1.1.0]", "  metrics:"]
    lines += ["  - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3, type: gauge, help: sysUpTime}",
              "  - {name: sysName, oid: 1.3.6.1.2.1.1.5, type: DisplayString, help: sysName}",
              "  - {name: sysDescr, oid: 1.3.6.1.2.1.1.1, type: DisplayString, help: sysDescr}"]
    for name, oid in LOOKUPS:
        lines += [f"  - {{name: {name}, oid: {oid}, type: DisplayString, help: {name},",
                  "     indexes: [{labelname: ifIndex, type: gauge}]}"]
    for name, oid, kind in COLUMNS:
        lines += [f"  - name: {name}", f"    oid: {oid}", f"    type: {kind}", f"    help: {name}",
                  "    indexes: [{labelname: ifIndex, type: gauge}]",
                  "    lookups:",
                  f"    - {{labels: [ifIndex], labelname: ifName, oid: {IFX}.1, type: DisplayString}}"]
    lines += ["  version: 2", "  max_repetitions: 25", "  retries: 1", "  timeout: 2s",
              f"  auth: {{community: {COMMUNITY}}}"]
    return "\n".join(lines) + "\n"


def snmpget_ok(port: int) -> bool:
    out = subprocess.run(["snmpget", "-v2c", "-c", COMMUNITY, "-On", "-t", "0.3", "-r", "0", f"{HOST}:{port}",
                          "1.3.6.1.2.1.1.3.0"], capture_output=True, env={**os.environ, "MIBS": ""})
    return out.returncode == 0


@dataclasses.dataclass
class Target:
    name: str
    settings: SnmpSettings
    address: str = HOST
    tier: str = "bench"

    def setting(self, kind: str) -> SnmpSettings:
        return self.settings


async def lifeline_phase(ports: list[int], rounds: int, concurrency: int, snmpd_pid: int) -> dict:
    probe, kind = SnmpProbe(), SnmpKind()
    base = DEFAULT_TIERS["P1"]
    tier = dataclasses.replace(base, parts={**base.parts, "snmp": dataclasses.replace(
        base.parts["snmp"], timeout=2.0, retries=1, interval=60.0)})
    targets = [Target(f"dev{p}", SnmpSettings(version="2c", port=p, community=Secret(COMMUNITY))) for p in ports]
    states = {t.name: kind.new_state(t) for t in targets}
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(t: Target) -> None:
        # What the agent does per poll: the poll, then recording and formatting its lines.
        nonlocal failures
        async with sem:
            state = states[t.name]
            r = await probe.run(t, tier, state)
            kind.record(state, r)
            kind.fragments(state, b'target="%s",tier="bench"' % t.name.encode())
            failures += not r.ok

    await asyncio.gather(*(one(t) for t in targets))  # warm-up: discovery, socket, imports
    interfaces = len(states[targets[0].name].interfaces or {})
    failures = 0
    sent0 = probe._udp.stats.sent
    cpu0, wall0, agent0 = time.process_time(), time.monotonic(), cpu_seconds(snmpd_pid)
    for _ in range(rounds):
        await asyncio.gather(*(one(t) for t in targets))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    agent_cpu = cpu_seconds(snmpd_pid) - agent0
    pdus = probe._udp.stats.sent - sent0
    await probe.close()
    polls = rounds * len(targets)
    return dict(polls=polls, failures=failures, wall=wall, cpu=cpu, agent_cpu=agent_cpu, interfaces=interfaces,
                pdus=pdus)


def exporter_phase(ports: list[int], rounds: int, concurrency: int, workdir: Path, snmpd_pid: int) -> dict:
    exe = shutil.which("prometheus-snmp-exporter")
    if exe is None:
        raise SystemExit("prometheus-snmp-exporter not found: apt-get install -y prometheus-snmp-exporter")
    (workdir / "snmp.yml").write_text(exporter_module())
    port = free_tcp_port()
    proc = subprocess.Popen([exe, f"--config.file={workdir / 'snmp.yml'}", f"--web.listen-address={HOST}:{port}",
                             "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=open(workdir / "exporter.log", "wb"))
    try:
        wait_until(lambda: http.client.HTTPConnection(HOST, port, timeout=1).request("GET", "/") or True, 10,
                 "snmp_exporter to listen")
        local = __import__("threading").local()
        failures = 0

        def scrape(dev: int) -> None:
            nonlocal failures
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(HOST, port, timeout=30)
            conn.request("GET", f"/snmp?target={HOST}:{dev}&module=lifeline")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or b"ifHCInOctets{" not in body:
                failures += 1

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(scrape, ports))  # warm-up
            failures = 0
            cpu0, wall0, agent0 = cpu_seconds(proc.pid), time.monotonic(), cpu_seconds(snmpd_pid)
            list(pool.map(scrape, ports * rounds))
            wall = time.monotonic() - wall0
            cpu, agent_cpu = cpu_seconds(proc.pid) - cpu0, cpu_seconds(snmpd_pid) - agent0
        return dict(polls=rounds * len(ports), failures=failures, wall=wall, cpu=cpu, agent_cpu=agent_cpu)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def start_snmpd(ports: list[int], workdir: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("snmpd") or "/usr/sbin/snmpd"
    if not os.path.exists(exe):
        raise SystemExit("snmpd not found: apt-get install -y snmpd snmp")
    conf = workdir / "snmpd.conf"
    # Endpoints go on the command line: one agentAddress line for hundreds of ports
    # overflows snmpd's config line buffer. smux is off so it needs no TCP port.
    conf.write_text(f"rocommunity {COMMUNITY} {HOST}\n")
    (workdir / "persist").mkdir()
    endpoints = [f"udp:{HOST}:{p}" for p in ports]
    proc = subprocess.Popen([exe, "-f", "-C", "-c", str(conf), "-I", "-smux", "-Lf", str(workdir / "snmpd.log"),
                             *endpoints],
                            env={**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(workdir / "persist")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: snmpget_ok(ports[-1]), 15, "snmpd to answer")
    except BaseException:
        proc.terminate()
        proc.wait(10)
        raise
    return proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=50)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-snmp-") as tmp:
        work = Path(tmp)
        ports = free_udp_ports(args.devices)
        snmpd = start_snmpd(ports, work)
        try:
            ll = asyncio.run(lifeline_phase(ports, args.rounds, args.concurrency, snmpd.pid))
            ex = exporter_phase(ports, args.rounds, args.concurrency, work, snmpd.pid)
        finally:
            snmpd.terminate()
            snmpd.wait(10)
    print(f"{args.devices} devices x {args.rounds} rounds, {ll['interfaces']} interfaces each, "
          f"concurrency {args.concurrency}, one snmpd on {args.devices} loopback ports")
    print(f"{'poller':<16}{'polls/s':>10}{'CPU ms/poll':>13}{'snmpd ms/poll':>15}{'failures':>10}")
    for name, r in (("lifeline", ll), ("snmp_exporter", ex)):
        print(f"{name:<16}{r['polls'] / r['wall']:>10.0f}{1000 * r['cpu'] / r['polls']:>13.3f}"
              f"{1000 * r['agent_cpu'] / r['polls']:>15.3f}{r['failures']:>10}")
    print(f"lifeline requests per poll: {ll['pdus'] / ll['polls']:.2f} (snmp_exporter walks each of its "
          f"{len(COLUMNS) + len(LOOKUPS)} columns separately, plus one GET)")
    ratio = (ll["cpu"] / ll["polls"]) / max(ex["cpu"] / ex["polls"], 1e-9)
    print(f"CPU per poll, lifeline / snmp_exporter: {ratio:.2f}x (goal: within 3x)")
    per_core = 1000 / 60 * ll["cpu"] / ll["polls"]
    print(f"lifeline at 1000 devices every 60 s: {per_core:.3f} of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
