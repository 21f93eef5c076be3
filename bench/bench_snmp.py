"""Lifeline's SnmpProbe against Debian's prometheus-snmp-exporter, same devices, same columns.

N simulated devices are N UDP ports of one Net-SNMP snmpd on 127.0.0.1 (each
port is a separate target to both pollers). For v2c and then for each SNMPv3
authPriv pair (``--v3``), Lifeline polls every device ``--rounds`` times with
SnmpProbe in this process, then snmp_exporter scrapes every device as many
times through its /snmp endpoint (one module per security setting). CPU is read
from /proc/<pid>/stat for the exporter and from this process's own usage for
Lifeline (the scraping threads are not counted against either). Each side gets
one warm-up round first (Lifeline: engine discovery, interface discovery,
imports; snmp_exporter keeps no state between scrapes, so it discovers the
engine on every v3 scrape: that is its steady state). Loopback only.

    .venv/bin/python bench/bench_snmp.py --devices 200 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
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

ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, ROOT)

from agent.config import DEFAULT_TIERS  # noqa: E402
from common.model import Target  # noqa: E402
from probes.snmp import SnmpKind  # noqa: E402
from probes.snmp.probe import SnmpProbe  # noqa: E402
from probes.snmp.config import Secret, SnmpSettings  # noqa: E402

from benchlib import machine, wait_until  # noqa: E402

HOST = "127.0.0.1"
COMMUNITY = "bench-ro"
V3_AUTH_PASS, V3_PRIV_PASS = "bench-auth-phrase", "bench-priv-phrase"
# SNMPv3 authPriv pairs: (our and snmp_exporter's protocol names, Net-SNMP's createUser spelling).
V3_PAIRS = {"sha-aes": ("SHA", "AES", "SHA", "AES"), "sha256-aes256": ("SHA256", "AES256", "SHA-256", "AES-256")}
V3_GOAL = 2.0  # CPU per v3 poll within this factor of snmp_exporter's
CORE_GOAL = 0.05  # 1,000 v3 devices at 60 s under this share of one core
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


def exporter_module(name: str = "lifeline", auth: str = f"{{community: {COMMUNITY}}}", version: int = 2) -> str:
    lines = [f"{name}:", "  walk:"]
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
    lines += [f"  version: {version}", "  max_repetitions: 25", "  retries: 1", "  timeout: 2s", f"  auth: {auth}"]
    return "\n".join(lines) + "\n"


def v3_user(pair: str) -> str:
    return f"bench-{pair}"


def exporter_config(pairs: list[str]) -> str:
    text = exporter_module()
    for pair in pairs:
        auth, priv = V3_PAIRS[pair][:2]
        text += exporter_module(
            f"lifeline_{pair.replace('-', '_')}", version=3,
            auth=f"{{username: {v3_user(pair)}, security_level: authPriv, password: {V3_AUTH_PASS}, "
                 f"auth_protocol: {auth}, priv_protocol: {priv}, priv_password: {V3_PRIV_PASS}}}")
    return text


def snmp_in_pkts(port: int) -> int:
    """snmpd's snmpInPkts.0: every message it received, whoever sent it (same count for both pollers)."""
    out = subprocess.run(["snmpget", "-v2c", "-c", COMMUNITY, "-On", "-Oqv", "-t", "1", "-r", "2", f"{HOST}:{port}",
                          "1.3.6.1.2.1.11.1.0"], capture_output=True, text=True, env={**os.environ, "MIBS": ""})
    return int(out.stdout.strip())


def snmpget_ok(port: int) -> bool:
    out = subprocess.run(["snmpget", "-v2c", "-c", COMMUNITY, "-On", "-t", "0.3", "-r", "0", f"{HOST}:{port}",
                          "1.3.6.1.2.1.1.3.0"], capture_output=True, env={**os.environ, "MIBS": ""})
    return out.returncode == 0


def device(port: int, settings: SnmpSettings) -> Target:
    # The agent's own model, so the bench follows what probes read from a target.
    return Target(name=f"dev{port}", address=HOST, tier="bench", category="bench", site="bench", labels=(),
                  probes=("snmp",), settings=(("snmp", settings),))


def settings_for(pair: str | None, port: int) -> SnmpSettings:
    if pair is None:
        return SnmpSettings(version="2c", port=port, community=Secret(COMMUNITY))
    auth, priv = V3_PAIRS[pair][:2]
    return SnmpSettings(version="3", port=port, user=v3_user(pair), auth_protocol=auth, auth_key=Secret(V3_AUTH_PASS),
                        priv_protocol=priv, priv_key=Secret(V3_PRIV_PASS))


async def lifeline_phase(ports: list[int], rounds: int, concurrency: int, snmpd_pid: int,
                         pair: str | None = None) -> dict:
    probe, kind = SnmpProbe(), SnmpKind()
    base = DEFAULT_TIERS["P1"]
    tier = dataclasses.replace(base, parts={**base.parts, "snmp": dataclasses.replace(
        base.parts["snmp"], timeout=2.0, retries=1, interval=60.0)})
    targets = [device(p, settings_for(pair, p)) for p in ports]
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
    warm_pdus, warm_failures = probe._udp.stats.sent, failures
    interfaces = len(states[targets[0].name].interfaces or {})
    failures = 0
    sent0, in0 = probe._udp.stats.sent, snmp_in_pkts(ports[0])
    cpu0, wall0, agent0 = time.process_time(), time.monotonic(), cpu_seconds(snmpd_pid)
    for _ in range(rounds):
        await asyncio.gather(*(one(t) for t in targets))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    agent_cpu = cpu_seconds(snmpd_pid) - agent0
    pdus, received = probe._udp.stats.sent - sent0, snmp_in_pkts(ports[0]) - in0 - 1
    await probe.close()
    polls = rounds * len(targets)
    return dict(polls=polls, failures=failures, wall=wall, cpu=cpu, agent_cpu=agent_cpu, interfaces=interfaces,
                pdus=pdus, received=received, warm_pdus=warm_pdus, warm_failures=warm_failures)


def start_exporter(workdir: Path, pairs: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("prometheus-snmp-exporter")
    if exe is None:
        raise SystemExit("prometheus-snmp-exporter not found: apt-get install -y prometheus-snmp-exporter")
    (workdir / "snmp.yml").write_text(exporter_config(pairs))
    port = free_tcp_port()
    proc = subprocess.Popen([exe, f"--config.file={workdir / 'snmp.yml'}", f"--web.listen-address={HOST}:{port}",
                             "--log.level=warn"], stdout=subprocess.DEVNULL,
                            stderr=open(workdir / "exporter.log", "wb"))
    try:
        wait_until(lambda: http.client.HTTPConnection(HOST, port, timeout=1).request("GET", "/") or True, 10,
                   "snmp_exporter to listen")
    except BaseException:
        proc.terminate()
        proc.wait(10)
        raise
    return proc, port


def exporter_phase(ports: list[int], rounds: int, concurrency: int, exporter: tuple[subprocess.Popen[bytes], int],
                   snmpd_pid: int, pair: str | None = None) -> dict:
    proc, port = exporter
    module = "lifeline" if pair is None else f"lifeline_{pair.replace('-', '_')}"
    local = __import__("threading").local()
    failures = 0

    def scrape(dev: int) -> None:
        nonlocal failures
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.request("GET", f"/snmp?target={HOST}:{dev}&module={module}")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or b"ifHCInOctets{" not in body:
            failures += 1

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(scrape, ports))  # warm-up
        warm_failures, failures = failures, 0
        in0 = snmp_in_pkts(ports[0])
        cpu0, wall0, agent0 = cpu_seconds(proc.pid), time.monotonic(), cpu_seconds(snmpd_pid)
        list(pool.map(scrape, ports * rounds))
        wall = time.monotonic() - wall0
        cpu, agent_cpu = cpu_seconds(proc.pid) - cpu0, cpu_seconds(snmpd_pid) - agent0
        received = snmp_in_pkts(ports[0]) - in0 - 1
    return dict(polls=rounds * len(ports), failures=failures, wall=wall, cpu=cpu, agent_cpu=agent_cpu,
                received=received, warm_failures=warm_failures)


def start_snmpd(ports: list[int], workdir: Path, pairs: list[str]) -> subprocess.Popen[bytes]:
    exe = shutil.which("snmpd") or "/usr/sbin/snmpd"
    if not os.path.exists(exe):
        raise SystemExit("snmpd not found: apt-get install -y snmpd snmp")
    conf = workdir / "snmpd.conf"
    # Endpoints go on the command line: one agentAddress line for hundreds of ports
    # overflows snmpd's config line buffer. smux is off so it needs no TCP port.
    users = "".join(f'createUser {v3_user(p)} {V3_PAIRS[p][2]} "{V3_AUTH_PASS}" {V3_PAIRS[p][3]} "{V3_PRIV_PASS}"\n'
                    f"rouser {v3_user(p)} priv\n" for p in pairs)
    conf.write_text(f"rocommunity {COMMUNITY} {HOST}\n" + users)
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
    ap.add_argument("--v3", default=",".join(V3_PAIRS),
                    help=f"SNMPv3 authPriv pairs to measure, comma-separated from {', '.join(V3_PAIRS)}; "
                         "'none' for v2c only")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"),
                    help="file the table is appended to ('' for none)")
    args = ap.parse_args(argv)
    host = machine()
    started = time.monotonic()
    pairs = [] if args.v3 == "none" else [p.strip() for p in args.v3.split(",") if p.strip()]
    unknown = [p for p in pairs if p not in V3_PAIRS]
    if unknown:
        ap.error(f"unknown --v3 pair(s) {', '.join(unknown)}; choose from {', '.join(V3_PAIRS)}")
    phases: list[tuple[str, dict, dict]] = []
    with tempfile.TemporaryDirectory(prefix="bench-snmp-") as tmp:
        work = Path(tmp)
        ports = free_udp_ports(args.devices)
        snmpd = start_snmpd(ports, work, pairs)
        try:
            exporter = start_exporter(work, pairs)
            try:
                for pair in [None, *pairs]:
                    label = "v2c" if pair is None else f"v3 {V3_PAIRS[pair][0]}/{V3_PAIRS[pair][1]}"
                    ll = asyncio.run(lifeline_phase(ports, args.rounds, args.concurrency, snmpd.pid, pair))
                    ex = exporter_phase(ports, args.rounds, args.concurrency, exporter, snmpd.pid, pair)
                    phases.append((label, ll, ex))
            finally:
                exporter[0].send_signal(signal.SIGTERM)
                exporter[0].wait(10)
        finally:
            snmpd.terminate()
            snmpd.wait(10)
    lines = report(args, phases)
    command = "bench/bench_snmp.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC — SNMP v2c"
              f"{' and SNMPv3 authPriv' if pairs else ''}, {host}\n\n"
              f"`{command.strip()}`: run took {time.monotonic() - started:.0f} s.\n\n")
    text = header + "\n".join(lines)
    print(text)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write("\n" + text + "\n")
    return 0


def report(args: argparse.Namespace, phases: list[tuple[str, dict, dict]]) -> list[str]:
    out: list[str] = []
    interfaces = phases[0][1]["interfaces"]
    out.append(f"{args.devices} devices x {args.rounds} rounds, {interfaces} interfaces each, "
               f"concurrency {args.concurrency}, one snmpd on {args.devices} loopback ports")
    out.append("")
    out.append("| poller | security | polls/s | CPU ms/poll | snmpd ms/poll | messages/poll (snmpd) | failures (warm-up) |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for label, ll, ex in phases:
        for name, r in (("lifeline", ll), ("snmp_exporter", ex)):
            out.append(f"| {name} | {label} | {r['polls'] / r['wall']:.0f} | {1000 * r['cpu'] / r['polls']:.3f} | "
                       f"{1000 * r['agent_cpu'] / r['polls']:.3f} | {r['received'] / r['polls']:.2f} | "
                       f"{r['failures']} ({r['warm_failures']}) |")
    out.append("")
    out.append(f"messages/poll: snmpInPkts counted by snmpd during the measured rounds. snmp_exporter walks each of "
               f"its {len(COLUMNS) + len(LOOKUPS)} columns separately, plus one GET.")
    v2c_cpu = phases[0][1]["cpu"] / phases[0][1]["polls"]
    for label, ll, ex in phases:
        mine, theirs = ll["cpu"] / ll["polls"], ex["cpu"] / ex["polls"]
        ratio = mine / max(theirs, 1e-9)
        share = 1000 / 60 * mine
        if label == "v2c":
            out.append(f"- {label}: CPU per poll, lifeline / snmp_exporter: {ratio:.2f}x (goal: within 3x, "
                       f"{'met' if ratio <= 3 else 'NOT met'}); 1000 devices at 60 s: {share:.4f} of one core")
            continue
        first_contact = (ll["warm_pdus"] - phases[0][1]["warm_pdus"]) / args.devices
        out.append(f"- {label}: CPU per poll, lifeline / snmp_exporter: {ratio:.2f}x (goal: within {V3_GOAL:.0f}x, "
                   f"{'met' if ratio <= V3_GOAL else 'NOT met'}); lifeline v3 / v2c: {mine / v2c_cpu:.2f}x; "
                   f"1000 devices at 60 s: {share:.4f} of one core (goal: under {CORE_GOAL:.0%}, "
                   f"{'met' if share < CORE_GOAL else 'NOT met'}); first poll: {first_contact:+.2f} requests per "
                   f"device over v2c's first poll (the engine discovery)")
    return out


if __name__ == "__main__":
    sys.exit(main())
