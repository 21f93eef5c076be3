#!/usr/bin/env python3
"""Service probes side by side: Lifeline vs prometheus-blackbox-exporter, same servers, same rate, loopback only.

    .venv/bin/python bench/bench_services.py            # 4 kinds x 2 sides, then the scale runs (~5 min)

One nginx (plain HTTP and HTTPS with a throwaway CA, on 127.0.0.1 only) and one
unbound (a static zone, on 127.0.0.1 only) serve both sides. For each kind

* tcp    connect to nginx's plain port and close      (blackbox prober: tcp)
* http   GET http://127.0.0.1:P/health, body "ok\\n"    (prober: http, valid status 200)
* https  GET https://127.0.0.1:Q/health, full TLS handshake every probe, verified
         against the test CA (Lifeline tls.ca_file; blackbox tls_config.ca_file)
* dns    A query for portal.gov.example over UDP       (prober: dns)

it runs ``lifeline run`` as a real process with N targets (distinct names, same
server) at N / interval probes per second, and then drives the exporter's
``/probe`` endpoint at the same rate from a paced, bounded asyncio client in
this process. Each side gets a warm-up and then a fixed window; CPU is
utime+stime from ``/proc`` of the Lifeline process, of the exporter, and of
nginx (master and workers) or unbound, so the server-side cost of both sides
can be compared too. The bench's own CPU (the /probe client, the scrapes'
parsing) is counted against neither side. Probes are counted by completion
inside the window: Lifeline's from the deltas of its own
``lifeline_probe_cycle_duration_seconds_count`` and
``lifeline_probe_failures_total``, blackbox's from ``probe_success`` in each
answer. Failures are reported, not hidden.

Then, on Lifeline alone: N_scale http targets at 15 s (scheduler lag p99 from
the deltas of ``lifeline_scheduler_lag_seconds``), N_icmp ICMP loopback targets
(3 echoes every 10 s as in bench_icmp's 1k row), and both in one agent, which
gives ICMP's CPU per echo and its lag with the services running beside it.

It prints the tables and appends them, with the date, the machine and the
command, to bench/results.md. Safety: every address is checked to be in
127.0.0.0/8 before anything is sent; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # tests.httpd / tests.dnsd: the nginx runner, the test CA, unbound

from bench_icmp import Agent, addresses, cpu_seconds, free_port, hist_quantile, http_get, stop_process  # noqa: E402
from benchlib import ProbeCounts, drive_probes, log, machine, wait_until  # noqa: E402
from tests.dnsd import ZONE, Unbound  # noqa: E402
from tests.httpd import Nginx, Pki, free_port_on  # noqa: E402

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
SERVER_IP = "127.0.0.1"
KINDS = ("tcp", "http", "https", "dns")
# Goal from the issue: Lifeline's CPU per probe at most this fraction of blackbox_exporter's.
GOALS = {"tcp": 0.5, "http": 0.5, "https": 1.0, "dns": 1.0}
LAG_GOAL = 0.050


def check_loopback(host: str) -> str:
    if ipaddress.ip_address(host) not in LOOPBACK:
        raise SystemExit(f"refusing to probe {host}: not loopback")
    return host


def host_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole host so far, from /proc/stat, plus this process's own CPU."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]
    tck = os.sysconf("SC_CLK_TCK")
    busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / tck  # user nice system irq softirq
    return busy, v[7] / tck


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


class HostWindow:
    """What else ran on the host during a window: CPU of every other process (cores) and steal (cores).

    The figures are side-by-side ratios on a shared 2-core VM; this says how quiet each window was.
    """

    def __init__(self) -> None:
        self.t0, (self.busy0, self.steal0), self.self0 = time.monotonic(), host_cpu(), self_cpu()

    def end(self, measured_cpu: float) -> dict:
        seconds = time.monotonic() - self.t0
        busy, steal = host_cpu()
        others = busy - self.busy0 - measured_cpu - (self_cpu() - self.self0)
        return {"other": max(others, 0.0) / seconds, "steal": (steal - self.steal0) / seconds}


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its direct children (nginx's master and workers)."""
    total = cpu_seconds(pid)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pid:
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# --- the servers ---------------------------------------------------------------------

class Servers:
    """nginx (plain + TLS, test CA) and unbound (static zone), all on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        pki = Pki(workdir / "pki")
        root = pki.root("Bench Root")
        inter = pki.intermediate("Bench Intermediate", root)
        leaf = pki.leaf("bench leaf", inter, sans=("portal.test", "localhost", SERVER_IP))
        chain = pki.chain_file("bench", leaf, inter)
        self.ca_file = str(root.cert_path)
        self.http_port = free_port_on(SERVER_IP)
        self.https_port = free_port_on(SERVER_IP)
        self.tls_log = workdir / "nginx" / "tls.log"
        # One line per TLS request: protocol, "r" if the session was resumed, the key-exchange group;
        # checks that both sides do a full handshake of the same kind on every probe.
        servers = f"""
    log_format tls '$ssl_protocol $ssl_session_reused $ssl_curve';
    server {{
        listen {SERVER_IP}:{self.http_port};
        keepalive_requests 1000;
        location = /health {{ return 200 "ok\\n"; }}
    }}
    server {{
        listen {SERVER_IP}:{self.https_port} ssl;
        ssl_protocols TLSv1.2 TLSv1.3;  # nginx 1.22's default stops at 1.2
        ssl_certificate {chain}; ssl_certificate_key {leaf.key_path};
        access_log {self.tls_log} tls;
        location = /health {{ return 200 "ok\\n"; }}
    }}"""
        self.nginx = Nginx(workdir / "nginx", servers, [(SERVER_IP, self.http_port), (SERVER_IP, self.https_port)])
        udir = workdir / "unbound"
        udir.mkdir()
        try:
            self.unbound = Unbound(str(udir)).start()
        except BaseException:
            self.nginx.stop()
            raise
        self.dns_port = self.unbound.port
        self.query_name = f"portal.{ZONE}".rstrip(".")

    def cpu(self, kind: str) -> float:
        """CPU seconds so far of the server that ``kind`` probes."""
        return cpu_seconds(self.unbound.proc.pid) if kind == "dns" else tree_cpu(self.nginx.proc.pid)

    def tls_lines(self) -> list[str]:
        try:
            return self.tls_log.read_text().splitlines()
        except OSError:
            return []

    def stop(self) -> None:
        self.unbound.stop()
        self.nginx.stop()


# --- Lifeline -------------------------------------------------------------------------

def lifeline_block(kind: str, servers: Servers) -> str:
    if kind == "tcp":
        return f"probes: [tcp], tcp: {{port: {servers.http_port}}}"
    if kind == "http":
        return (f"probes: [http], http: {{url: 'http://{SERVER_IP}:{servers.http_port}/health', "
                f"valid_status_codes: [200]}}")
    if kind == "https":
        return (f"probes: [http], http: {{url: 'https://{SERVER_IP}:{servers.https_port}/health', "
                f"valid_status_codes: [200], tls: {{ca_file: '{servers.ca_file}'}}}}")
    if kind == "dns":
        return (f"probes: [dns], dns: {{query_name: {servers.query_name}, query_type: A, "
                f"port: {servers.dns_port}, transport: udp}}")
    raise ValueError(kind)


def target_lines(prefix: str, n: int, tier: str, block: str, address_of=lambda i: SERVER_IP) -> list[str]:
    """N targets with realistic labels (as bench_icmp), distinct names, the same server."""
    out = []
    for i in range(n):
        address = check_loopback(address_of(i))
        out.append(f"  - {{name: {prefix}-{i:05d}, address: {address}, tier: {tier}, category: service, "
                   f"site: site-{i % 40}, labels: {{circuit_id: ZS-{i:05d}}}, {block}}}")
    return out


_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Snap:
    at: float
    cpu: float
    server_cpu: float
    cycles: dict[str, float] = field(default_factory=dict)  # probe kind -> cycles completed
    failures: dict[tuple[str, str], float] = field(default_factory=dict)  # (probe, reason) -> count
    skipped: float = 0.0
    host: HostWindow | None = None
    lag: dict[str, dict[float, float]] = field(default_factory=dict)  # tier -> le -> cumulative count
    echoes: float = 0.0
    replies: float = 0.0


def scrape(agent: Agent) -> str:
    status, body = http_get("127.0.0.1", agent.port, "/metrics", timeout=30)
    if status != 200:
        raise SystemExit(f"lifeline /metrics answered {status}")
    return body.decode()


def parse(text: str, snap: Snap) -> Snap:
    for line in text.splitlines():
        if not line.startswith(("lifeline_probe_cycle_duration_seconds_count", "lifeline_probe_failures_total",
                                "lifeline_scheduler_", "lifeline_icmp_re")):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        name, value = m.group(1), float(m.group(3))
        lab = dict(_LABEL.findall(m.group(2) or ""))
        if name == "lifeline_probe_cycle_duration_seconds_count":
            snap.cycles[lab["probe"]] = snap.cycles.get(lab["probe"], 0.0) + value
        elif name == "lifeline_probe_failures_total":
            key = (lab["probe"], lab.get("reason", ""))
            snap.failures[key] = snap.failures.get(key, 0.0) + value
        elif name == "lifeline_scheduler_skipped_cycles_total":
            snap.skipped += value
        elif name == "lifeline_scheduler_lag_seconds_bucket":
            hist = snap.lag.setdefault(lab["tier"], {})
            le = float(lab["le"])
            hist[le] = hist.get(le, 0.0) + value
        elif name == "lifeline_icmp_requests_total":
            snap.echoes += value
        elif name == "lifeline_icmp_responses_total":
            snap.replies += value
    return snap


def snap_start(agent: Agent, servers: Servers, kind: str) -> Snap:
    text = scrape(agent)  # the scrape's own render happens before the CPU is read
    snap = Snap(time.monotonic(), cpu_seconds(agent.proc.pid), servers.cpu(kind))
    snap.host = HostWindow()
    return parse(text, snap)


def snap_end(agent: Agent, servers: Servers, kind: str) -> Snap:
    snap = Snap(time.monotonic(), cpu_seconds(agent.proc.pid), servers.cpu(kind))  # read before the scrape
    return parse(scrape(agent), snap)


def merged_lag(snap: Snap) -> dict[float, float]:
    out: dict[float, float] = {}
    for hist in snap.lag.values():
        for le, v in hist.items():
            out[le] = out.get(le, 0.0) + v
    return out


def run_agent(name: str, config: str, workdir: Path, args: argparse.Namespace, server_kind: str,
              warmup: float, window: float) -> tuple[Snap, Snap]:
    path = workdir / f"lifeline-{name}.yaml"
    path.write_text(config)
    agent = Agent(str(path), str(workdir / f"lifeline-{name}.log"), [], args.agent_command)
    try:
        wait_until(agent.ready, 120, f"lifeline ({name}) to become ready")
        time.sleep(warmup)
        a = snap_start(agent, args.servers, server_kind)
        time.sleep(window)
        b = snap_end(agent, args.servers, server_kind)
        b.host = a.host.end((b.cpu - a.cpu) + (b.server_cpu - a.server_cpu))  # type: ignore[union-attr]
        if agent.proc.poll() is not None:
            raise SystemExit(f"lifeline ({name}) exited during the window")
        return a, b
    finally:
        agent.stop()


def bench_lifeline(kind: str, args: argparse.Namespace, workdir: Path) -> dict:
    probe = "tcp" if kind == "tcp" else "dns" if kind == "dns" else "http"
    config = "\n".join([
        "tiers:",
        f"  bench: {{priority: 0, interval: {args.interval:g}s, timeout: {args.timeout:g}s, packets: 1}}",
        "targets:",
        *target_lines(f"{kind}", args.targets, "bench", lifeline_block(kind, args.servers)),
    ]) + "\n"
    tls_before = len(args.servers.tls_lines())
    log(f"lifeline {kind}: {args.targets} targets every {args.interval:g}s ({args.targets / args.interval:.0f}/s)")
    a, b = run_agent(kind, config, workdir, args, kind, args.warmup, args.window)
    seconds = b.at - a.at
    done = b.cycles.get(probe, 0.0) - a.cycles.get(probe, 0.0)
    fails = {r: b.failures.get((p, r), 0.0) - a.failures.get((p, r), 0.0) for p, r in b.failures if p == probe}
    failed = sum(fails.values())
    return {"probes_s": done / seconds, "probes": done, "ok": done - failed, "failed": failed,
            "reasons": {r: n for r, n in fails.items() if n}, "cpu_ms": (b.cpu - a.cpu) / done * 1e3 if done else nan,
            "server_ms": (b.server_cpu - a.server_cpu) / done * 1e3 if done else nan,
            "util": (b.cpu - a.cpu) / seconds, "skipped": b.skipped - a.skipped, "host": b.host,
            "lag_p99": hist_quantile(0.99, merged_lag(a), merged_lag(b)),
            "tls": tls_summary(args.servers.tls_lines()[tls_before:]) if kind == "https" else ""}


def tls_summary(lines: list[str]) -> str:
    """'1234 TLSv1.3 X25519 full, 0 resumed' from nginx's per-request TLS log."""
    if not lines:
        return "no TLS log"
    resumed = sum(1 for ln in lines if ln.split()[1:2] == ["r"])
    kinds: dict[str, int] = {}
    for ln in lines:
        parts = ln.split()
        key = f"{parts[0]} {parts[2]}" if len(parts) >= 3 else ln
        kinds[key] = kinds.get(key, 0) + 1
    main = max(kinds, key=kinds.get)
    return f"{len(lines)} requests, {main} {kinds[main] / len(lines) * 100:.0f} %, {resumed} resumed"


nan = float("nan")


# --- blackbox_exporter ---------------------------------------------------------------

def blackbox_config(servers: Servers, timeout: float) -> str:
    return f"""modules:
  tcp:
    prober: tcp
    timeout: {timeout:g}s
    tcp: {{preferred_ip_protocol: ip4, ip_protocol_fallback: false}}
  http:
    prober: http
    timeout: {timeout:g}s
    http:
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  https:
    prober: http
    timeout: {timeout:g}s
    http:
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      tls_config: {{ca_file: '{servers.ca_file}'}}
  dns:
    prober: dns
    timeout: {timeout:g}s
    dns:
      query_name: {servers.query_name}
      query_type: A
      transport_protocol: udp
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""


def blackbox_target(kind: str, servers: Servers) -> str:
    return {"tcp": f"{SERVER_IP}:{servers.http_port}",
            "http": f"http://{SERVER_IP}:{servers.http_port}/health",
            "https": f"https://{SERVER_IP}:{servers.https_port}/health",
            "dns": f"{SERVER_IP}:{servers.dns_port}"}[kind]


class Blackbox:
    def __init__(self, workdir: Path, servers: Servers, timeout: float) -> None:
        exe = shutil.which("prometheus-blackbox-exporter")
        if exe is None:
            raise SystemExit("prometheus-blackbox-exporter not found: apt-get install -y prometheus-blackbox-exporter")
        path = workdir / "blackbox.yml"
        path.write_text(blackbox_config(servers, timeout))
        self.port = free_port()
        self._log = open(workdir / "blackbox.log", "wb")
        self.proc = subprocess.Popen([exe, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{self.port}",
                                      "--log.level=warn"], stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(lambda: http_get("127.0.0.1", self.port, "/-/healthy", timeout=2)[0] == 200, 30,
                   "blackbox_exporter")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


async def _measure(bb: Blackbox, servers: Servers, kind: str, args: argparse.Namespace, counts: ProbeCounts) -> dict:
    rate = args.targets / args.interval
    query = urllib.parse.urlencode({"module": kind, "target": blackbox_target(kind, servers)})
    driver = asyncio.ensure_future(drive_probes(bb.port, lambda i: query, rate, args.bb_warmup + args.window + 0.5,
                                                args.concurrency, counts))
    await asyncio.sleep(args.bb_warmup)
    t0, cpu0, srv0, c0 = time.monotonic(), cpu_seconds(bb.proc.pid), servers.cpu(kind), ProbeCounts(**vars(counts))
    host = HostWindow()
    await asyncio.sleep(args.window)
    t1, cpu1, srv1, c1 = time.monotonic(), cpu_seconds(bb.proc.pid), servers.cpu(kind), ProbeCounts(**vars(counts))
    host_use = host.end((cpu1 - cpu0) + (srv1 - srv0))  # the driver is in self_cpu
    await driver
    done = (c1.ok - c0.ok) + (c1.failed - c0.failed)
    return {"probes_s": done / (t1 - t0), "probes": done, "ok": c1.ok - c0.ok, "failed": c1.failed - c0.failed,
            "errors": c1.errors - c0.errors, "cpu_ms": (cpu1 - cpu0) / done * 1e3 if done else nan,
            "server_ms": (srv1 - srv0) / done * 1e3 if done else nan, "util": (cpu1 - cpu0) / (t1 - t0),
            "host": host_use}


def bench_blackbox(kind: str, bb: Blackbox, args: argparse.Namespace) -> dict:
    log(f"blackbox {kind}: {args.targets / args.interval:.0f} probes/s through /probe")
    tls_before = len(args.servers.tls_lines())
    out = asyncio.run(_measure(bb, args.servers, kind, args, ProbeCounts()))
    out["tls"] = tls_summary(args.servers.tls_lines()[tls_before:]) if kind == "https" else ""
    return out


# --- scale: 1,000 http targets at 15 s, ICMP beside them ----------------------------------

def bench_scale(args: argparse.Namespace, workdir: Path) -> dict:
    servers = args.servers
    http_tier = f"  web: {{priority: 1, interval: {args.scale_interval:g}s, timeout: {args.timeout:g}s, packets: 1}}"
    icmp_tier = "  icmp: {priority: 0, interval: 10s, timeout: 1s, packets: 3, packet_interval: 200ms}"
    http_targets = target_lines("web", args.scale_targets, "web", lifeline_block("http", servers))
    icmp_addrs = addresses(args.icmp_targets) if args.icmp_targets else []
    icmp_targets = target_lines("icmp", len(icmp_addrs), "icmp", "probes: [icmp]", lambda i: icmp_addrs[i])
    runs = {"http": ["tiers:", http_tier, "targets:", *http_targets]}
    if icmp_addrs:
        runs["icmp"] = ["tiers:", icmp_tier, "targets:", *icmp_targets]
        runs["mixed"] = ["tiers:", icmp_tier, http_tier, "targets:", *icmp_targets, *http_targets]
    out = {}
    for name, lines in runs.items():
        log(f"lifeline scale/{name}: {args.scale_targets if name != 'icmp' else 0} http targets at "
            f"{args.scale_interval:g}s, {len(icmp_addrs) if name != 'http' else 0} icmp targets")
        # Warm-up of one http interval: every target has run before the window.
        a, b = run_agent(f"scale-{name}", "\n".join(lines) + "\n", workdir, args, "http",
                         max(args.warmup, args.scale_interval if name != "icmp" else 0), args.scale_window)
        seconds = b.at - a.at
        http_done = b.cycles.get("http", 0.0) - a.cycles.get("http", 0.0)
        http_failed = sum(v - a.failures.get(k, 0.0) for k, v in b.failures.items() if k[0] == "http")
        icmp_failed = sum(v - a.failures.get(k, 0.0) for k, v in b.failures.items() if k[0] == "icmp")
        echoes = b.echoes - a.echoes
        out[name] = {
            "seconds": seconds, "cpu": b.cpu - a.cpu, "util": (b.cpu - a.cpu) / seconds,
            "http_s": http_done / seconds, "http": http_done, "http_failed": http_failed,
            "echoes_s": echoes / seconds, "echoes": echoes,
            "answered": (b.replies - a.replies) / echoes if echoes else nan, "icmp_failed": icmp_failed,
            "skipped": b.skipped - a.skipped, "host": b.host,
            "lag": {tier: (hist_quantile(0.5, a.lag.get(tier, {}), hist),
                           hist_quantile(0.99, a.lag.get(tier, {}), hist),
                           max(hist.values()) - max(a.lag.get(tier, {0: 0.0}).values()))
                    for tier, hist in b.lag.items()},
        }
    return out


# --- report ----------------------------------------------------------------------------

def f3(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1e3:.1f} ms"


def success(d: dict) -> str:
    total = d["probes"]
    text = f"{d['ok'] / total * 100:.1f} %" if total else "n/a"
    if d.get("reasons"):
        text += " (" + ", ".join(f"{r} {n:.0f}" for r, n in sorted(d["reasons"].items())) + ")"
    if d.get("errors"):
        text += f" ({d['errors']} client errors)"
    return text


def report(life: dict, bb: dict, scale: dict, args: argparse.Namespace) -> tuple[str, list[str]]:
    rate = args.targets / args.interval
    lines = [
        "| kind | Lifeline probes/s | Lifeline success | Lifeline CPU ms/probe | blackbox probes/s | blackbox success "
        "| blackbox CPU ms/probe | ratio L/B | goal | met? | server CPU ms/probe L / B | Lifeline lag p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    verdicts = []
    for kind in life:
        lf, bx = life[kind], bb[kind]
        ratio = lf["cpu_ms"] / bx["cpu_ms"] if bx["cpu_ms"] else nan
        clean = lf["failed"] == 0 and bx["failed"] == 0 and not bx["errors"] and lf["probes"] and bx["probes"]
        sustained = lf["probes_s"] >= 0.95 * rate and bx["probes_s"] >= 0.95 * rate
        ok = ratio <= GOALS[kind]
        met = ("met" if ok else "NOT met") + ("" if clean and sustained else " (failures or rate short, see below)")
        lines.append(f"| {kind} | {lf['probes_s']:.1f} | {success(lf)} | {f3(lf['cpu_ms'])} | {bx['probes_s']:.1f} "
                     f"| {success(bx)} | {f3(bx['cpu_ms'])} | {ratio:.2f} | <= {GOALS[kind]:g} | {met} "
                     f"| {f3(lf['server_ms'])} / {f3(bx['server_ms'])} | {ms(lf['lag_p99'])} |")
        verdicts.append(f"- {'met' if ok else 'NOT met'}: {kind} CPU per probe {ratio:.2f}x blackbox_exporter's "
                        f"(goal <= {GOALS[kind]:g}x)")
        if not clean:
            verdicts.append(f"  - {kind}: failures: Lifeline {lf['failed']:.0f} of {lf['probes']:.0f}, blackbox "
                            f"{bx['failed']} of {bx['probes']} and {bx['errors']} client errors")
        if not sustained:
            verdicts.append(f"  - {kind}: rate short of {rate:.0f}/s: Lifeline {lf['probes_s']:.1f}, "
                            f"blackbox {bx['probes_s']:.1f}")
    tls = [f"- https handshakes seen by nginx: Lifeline {life['https']['tls']}; blackbox {bb['https']['tls']}"] \
        if "https" in life else []
    lines += [""] + tls
    if life:
        lines.append("- rest of the host during each window, in cores (CPU of every other process / VM steal): "
                     + "; ".join(f"{k} L {life[k]['host']['other']:.2f}/{life[k]['host']['steal']:.2f}, "
                                 f"B {bb[k]['host']['other']:.2f}/{bb[k]['host']['steal']:.2f}" for k in life))
    if scale:
        lines += ["", "| Lifeline alone, one agent | http probes/s (failed) | ICMP echoes/s (answered) "
                      "| CPU (share of one core) | lag p50 / p99 http tier | lag p50 / p99 icmp tier | skipped "
                      "| rest of host, cores (other / steal) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        names = {"http": f"{args.scale_targets:,} http @ {args.scale_interval:g} s",
                 "icmp": f"{args.icmp_targets:,} ICMP (3 echoes / 10 s)",
                 "mixed": f"both ({args.scale_targets:,} http + {args.icmp_targets:,} ICMP)"}
        for name, d in scale.items():
            def lag(tier: str) -> str:
                got = d["lag"].get(tier)
                return f"{ms(got[0])} / {ms(got[1])}" if got else "-"
            http = f"{d['http_s']:.1f} ({d['http_failed']:.0f})" if name != "icmp" else "-"
            icmp = f"{d['echoes_s']:.0f} ({d['answered'] * 100:.2f} %)" if name != "http" else "-"
            lines.append(f"| {names[name]} | {http} | {icmp} | {d['util'] * 100:.1f} % | {lag('web')} "
                         f"| {lag('icmp')} | {d['skipped']:.0f} | {d['host']['other']:.2f} / {d['host']['steal']:.2f} |")
        h = scale["http"]
        http_ms = h["cpu"] / h["http"] * 1e3 if h["http"] else nan
        lines += ["", f"- http at {args.scale_interval:g} s: {f3(http_ms)} ms CPU per probe"]
        lag_ok = h["lag"].get("web", (nan, nan))[1] < LAG_GOAL and h["http_failed"] == 0 and h["skipped"] == 0
        verdicts.append(f"- {'met' if lag_ok else 'NOT met'}: {args.scale_targets:,} http targets at "
                        f"{args.scale_interval:g} s on one agent, scheduler lag p99 "
                        f"{ms(h['lag'].get('web', (nan, nan))[1])} (goal < 50 ms), "
                        f"{h['http_failed']:.0f} failed, {h['skipped']:.0f} skipped")
        if "mixed" in scale:
            i, m = scale["icmp"], scale["mixed"]
            alone = i["cpu"] / i["echoes"] * 1e3 if i["echoes"] else nan
            # Marginal: what adding the ICMP targets to an agent already running the http ones costs
            # (the agent's fixed cost, ticks and wakeups, is in the http-only run and so not counted twice).
            beside = (m["util"] - h["util"]) / m["echoes_s"] * 1e3 if m["echoes_s"] else nan
            lines.append(f"- ICMP CPU s per 1,000 echoes: alone {alone:.4f} (the agent's fixed cost included); "
                         f"added beside the http targets {beside:.4f} ((mixed - http-only CPU per second) / echoes "
                         f"per second). One agent with both: {m['util'] * 100:.1f} % of a core; the two alone: "
                         f"{(h['util'] + i['util']) * 100:.1f} %")
            worst = max(m["lag"].get(t, (nan, nan))[1] for t in ("web", "icmp"))
            mixed_ok = worst < LAG_GOAL and m["skipped"] == 0 and m["http_failed"] == 0
            verdicts.append(f"- {'met' if mixed_ok else 'NOT met'}: with {args.icmp_targets:,} ICMP targets beside "
                            f"them, lag p99 http {ms(m['lag'].get('web', (nan, nan))[1])}, icmp "
                            f"{ms(m['lag'].get('icmp', (nan, nan))[1])} (goal < 50 ms), "
                            f"{m['answered'] * 100:.2f} % of echoes answered")
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of tcp,http,https,dns")
    p.add_argument("--targets", type=int, default=1000, help="targets per kind (default 1000)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between cycles of one target (default 10: "
                                                                "100 probes/s with 1000 targets)")
    p.add_argument("--timeout", type=float, default=2.0, help="probe timeout, both sides, seconds")
    p.add_argument("--warmup", type=float, default=4.0, help="Lifeline: seconds after ready before the window")
    p.add_argument("--bb-warmup", type=float, default=3.0, help="blackbox: seconds driven before the window")
    p.add_argument("--window", type=float, default=20.0, help="seconds of each measuring window")
    p.add_argument("--concurrency", type=int, default=64, help="concurrent /probe requests to blackbox at most")
    p.add_argument("--scale-targets", type=int, default=1000, help="http targets of the scale run (0: skip it)")
    p.add_argument("--scale-interval", type=float, default=15.0, help="their interval, seconds")
    p.add_argument("--scale-window", type=float, default=20.0, help="window of each scale run, seconds")
    p.add_argument("--icmp-targets", type=int, default=1000,
                   help="ICMP loopback targets run alone and beside the http ones (0: skip; needs root)")
    p.add_argument("--agent-command", default="", help="command to run instead of .venv/bin/lifeline")
    p.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"),
                   help="file the tables are appended to ('' for none)")
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if any(k not in KINDS for k in kinds):
        p.error(f"--kinds: choose from {','.join(KINDS)}")
    if args.icmp_targets and os.geteuid() != 0:
        log("not root: skipping the ICMP runs (--icmp-targets 0)")
        args.icmp_targets = 0
    if not 1 <= args.targets <= 20000 or args.targets / args.interval > 1000 or args.scale_targets > 20000:
        raise SystemExit("keep it bounded: at most 20,000 targets and 1,000 probes/s")
    host = machine()
    started = time.monotonic()
    life, bb, scale = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-services-") as tmp:
        workdir = Path(tmp)
        args.servers = Servers(workdir)
        try:
            exporter = Blackbox(workdir, args.servers, args.timeout)
            try:
                for kind in kinds:
                    life[kind] = bench_lifeline(kind, args, workdir)
                    bb[kind] = bench_blackbox(kind, exporter, args)
            finally:
                exporter.stop()
            if args.scale_targets:
                scale = bench_scale(args, workdir)
        finally:
            args.servers.stop()
    table, verdicts = report(life, bb, scale, args)
    command = "bench/bench_services.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"## {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC — services, {host}\n\n"
              f"`{command.strip()}`: {args.targets} targets per kind every {args.interval:g} s "
              f"({args.targets / args.interval:g} probes/s) on each side, timeout {args.timeout:g} s; "
              f"windows of {args.window:g} s after {args.warmup:g} s (Lifeline) / {args.bb_warmup:g} s (blackbox) "
              f"of warm-up; blackbox driven through /probe with at most {args.concurrency} connections, "
              f"the driver's CPU counted for neither side; run took {time.monotonic() - started:.0f} s.\n\n")
    text = header + table + "\n\n" + "\n".join(verdicts)
    print(text)
    if args.results:
        with open(args.results, "a") as fh:
            fh.write(text + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
