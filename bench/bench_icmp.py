#!/usr/bin/env python3
"""ICMP at carrier scale: Lifeline beside fping, blackbox_exporter and smokeping_prober, on loopback only.

    .venv/bin/python bench/bench_icmp.py            # 1k and 10k targets, 3 echoes / 10 s (about 8 min)

For each size N it runs, one after the other (never two pingers at once, since
every raw ICMP socket sees every reply on the host):

* ``lifeline run`` as a real process on N loopback targets; a quiet window (one
  scrape at each end) and then a window with a bounded concurrent scraper. From
  ``/proc/PID/stat`` and the deltas of the agent's own metrics: echoes/s, CPU
  per 1,000 echoes, scheduler lag p50/p99, RSS, scrape latency, RTT.
* ``fping -C`` on the same addresses at the same echo rate (paced: the same
  work) and again as fast as it goes (``-i 0``, burst: the practical floor of
  this machine): CPU per 1,000 echoes (rusage of the child) and RTT p50.
* ``bench/icmp_floor.py``, a bare asyncio pinger doing only the per-echo work
  any Python pinger must (send, one ``recvmsg`` per reply, match, RTT) on the
  same pattern: CPU per 1,000 echoes, to tell the language's share of the
  distance to fping's burst mode from Lifeline's own.
* ``prometheus-blackbox-exporter`` with an ``icmp`` module, driven through
  ``/probe`` by a paced, bounded client at the same probe rate: the exporter's
  own CPU per 1,000 probes (the client's CPU is not counted).
* ``prometheus-smokeping-prober`` (Debian) pinging the same addresses at the
  same per-target rate, scraped once at each end of its window: its CPU per
  1,000 echoes, echo rate, RSS and scrape time, or what stopped it.
* ``agent.config.load()`` of 10,000 and 50,000 targets, each in a fresh
  process: time, peak RSS and RSS after.

It prints one table and appends it, with the date and the machine, to
bench/results.md. Safety: every address is checked to be in 127.0.0.0/8 before
anything is sent, and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gzip
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import benchlib
from benchlib import ProbeCounts, drive_probes, log, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- small utilities --------------------------------------------------------------

def addresses(n: int) -> list[str]:
    """N distinct loopback addresses, 127.20.x.1-250 (never .0 or .255)."""
    out = [f"127.{20 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}" for i in range(n)]
    for a in out:  # the network-safety rule, checked rather than assumed
        if ipaddress.ip_address(a) not in LOOPBACK:
            raise SystemExit(f"refusing to probe {a}: not loopback")
    return out


def address_file(n: int, workdir: str) -> str:
    """A file of the N addresses, one per line (fping -f, icmp_floor.py --file)."""
    path = os.path.join(workdir, f"addresses-{n}.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(addresses(n)) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class RssSampler:
    """Largest RSS seen, sampled once a second in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except OSError:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return self.peak


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def http_get(host: str, port: int, path: str, timeout: float = 10.0,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- reading the agent's own metrics ----------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LE = re.compile(r'le="([^"]+)"')


@dataclass
class Snapshot:
    """The few families the bench needs, summed over targets."""

    at: float
    cpu: float
    requests: float = 0.0
    responses: float = 0.0
    skipped: float = 0.0
    lag: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    rtt: dict[float, float] = field(default_factory=dict)
    rtt_avg: list[float] = field(default_factory=list)  # per-target gauge of the last cycle


def parse_metrics(text: str, at: float, cpu: float) -> Snapshot:
    snap = Snapshot(at=at, cpu=cpu)
    for line in text.splitlines():
        if not line.startswith(("lifeline_icmp_r", "lifeline_scheduler_")):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name == "lifeline_icmp_requests_total":
            snap.requests += value
        elif name == "lifeline_icmp_responses_total":
            snap.responses += value
        elif name == "lifeline_scheduler_skipped_cycles_total":
            snap.skipped += value
        elif name == "lifeline_icmp_rtt_avg_seconds":
            snap.rtt_avg.append(value)
        elif name.endswith("_bucket"):
            le = float(_LE.search(labels).group(1))
            hist = snap.lag if name == "lifeline_scheduler_lag_seconds_bucket" else (
                snap.rtt if name == "lifeline_icmp_rtt_seconds_bucket" else None)
            if hist is not None:
                hist[le] = hist.get(le, 0.0) + value
    return snap


def hist_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """histogram_quantile() over the increase between two snapshots (linear inside a bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank, prev_bound, prev_count = q * counts[-1], 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_bound, prev_count = bound, count
    return bounds[-2] if len(bounds) > 1 else float("nan")


# --- Lifeline -----------------------------------------------------------------------

def lifeline_config(addrs: list[str], interval: float, packets: int, spacing: float, timeout: float) -> str:
    lines = [
        "tiers:",
        f"  bench: {{priority: 0, interval: {interval}s, timeout: {timeout}s, packets: {packets}, "
        f"packet_interval: {spacing * 1000:g}ms}}",
        "targets:",
    ]
    # Realistic label sets (category, site, a circuit id) so the exposition is the size it would be.
    lines += [f"  - {{name: bench-{i:05d}, address: {a}, tier: bench, category: checkpoint, "
              f"site: site-{i % 40}, labels: {{circuit_id: ZS-{i:05d}}}}}" for i, a in enumerate(addrs)]
    return "\n".join(lines) + "\n"


class Agent:
    def __init__(self, config_path: str, log_path: str, extra_args: list[str], command: str = "") -> None:
        self.port = free_port()
        exe = os.path.join(ROOT, ".venv", "bin", "lifeline")
        cmd = command.split() if command else [exe] if os.path.exists(exe) else [sys.executable, "-m", "agent.cli"]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [*cmd, "run", "--config.file", config_path, "--web.listen-address", f"127.0.0.1:{self.port}",
             "--log.level", "warn", "--log.format", "json", *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"lifeline exited with {self.proc.returncode}; see its log")
        return http_get("127.0.0.1", self.port, "/-/ready", timeout=2)[0] == 200

    def snapshot(self) -> tuple[Snapshot, float]:
        """Scrape once (gzip, like Prometheus); returns the parsed snapshot and the scrape latency."""
        started = time.monotonic()
        status, body = http_get("127.0.0.1", self.port, "/metrics", timeout=30, headers={"Accept-Encoding": "gzip"})
        took = time.monotonic() - started
        if status != 200:
            raise SystemExit(f"/metrics answered {status}")
        return parse_metrics(gzip.decompress(body).decode(), time.monotonic(), cpu_seconds(self.proc.pid)), took

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


class Scraper:
    """``clients`` threads scraping /metrics back to back (gzip), bounded by time and count."""

    def __init__(self, port: int, clients: int, duration: float, pause: float, max_scrapes: int = 5000) -> None:
        self.port, self.latencies, self.sizes = port, [], []
        self.errors = 0
        self._deadline = time.monotonic() + duration
        self._left = max_scrapes
        self._lock = threading.Lock()
        self._pause = pause
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while time.monotonic() < self._deadline:
            with self._lock:
                if self._left <= 0:
                    break
                self._left -= 1
            started = time.monotonic()
            try:
                conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                resp = conn.getresponse()
                body = resp.read()
                took = time.monotonic() - started
                with self._lock:
                    self.latencies.append(took)
                    self.sizes.append(len(body))
            except (OSError, http.client.HTTPException):
                with self._lock:
                    self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            time.sleep(self._pause)
        conn.close()

    def join(self) -> None:
        for t in self._threads:
            t.join(60)


def window_stats(a: Snapshot, b: Snapshot) -> dict[str, float]:
    seconds = b.at - a.at
    echoes = b.requests - a.requests
    return {
        "seconds": seconds,
        "echoes": echoes,
        "echoes_s": echoes / seconds,
        "answered": (b.responses - a.responses) / echoes if echoes else float("nan"),
        "skipped": b.skipped - a.skipped,
        "cpu_per_1k": (b.cpu - a.cpu) / echoes * 1000 if echoes else float("nan"),
        "cpu_util": (b.cpu - a.cpu) / seconds,
        "lag_p50": hist_quantile(0.50, a.lag, b.lag),
        "lag_p99": hist_quantile(0.99, a.lag, b.lag),
        "rtt_p50_hist": hist_quantile(0.50, a.rtt, b.rtt),
        "rtt_p99_hist": hist_quantile(0.99, a.rtt, b.rtt),
        "rtt_p50": statistics.median(b.rtt_avg) if b.rtt_avg else float("nan"),
    }


def bench_lifeline(n: int, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    addrs = addresses(n)
    path = os.path.join(workdir, f"lifeline-{n}.yaml")
    with open(path, "w") as fh:
        fh.write(lifeline_config(addrs, args.interval, args.packets, args.packet_interval, args.timeout))
    log(f"lifeline: {n} targets, {args.packets} echoes every {args.interval:g}s")
    started = time.monotonic()
    agent = Agent(path, os.path.join(workdir, f"lifeline-{n}.log"), args.agent_arg, args.agent_command)
    try:
        wait_until(agent.ready, 120, "lifeline to become ready")
        startup = time.monotonic() - started
        rss = RssSampler(agent.proc.pid)
        # Warm-up: every target has run at least one cycle before anything is measured.
        time.sleep(args.interval + 2)
        a, took_a = agent.snapshot()
        time.sleep(args.window)
        b, took_b = agent.snapshot()  # a lone scrape that renders afresh: what one Prometheus sees
        quiet = window_stats(a, b)
        scraper = Scraper(agent.port, args.scrapers, args.window, args.scrape_pause)
        time.sleep(args.window)
        c, _ = agent.snapshot()
        scraper.join()
        loaded = window_stats(b, c)
        out = {f"quiet_{k}": v for k, v in quiet.items()}
        out.update({f"scraped_{k}": v for k, v in loaded.items()})
        out.update(startup=startup, lone_scrape=max(took_a, took_b), rss_mb=max(rss.stop(), rss_bytes(agent.proc.pid)) / 2**20,
                   scrape_p50=pct(scraper.latencies, 0.5), scrape_p99=pct(scraper.latencies, 0.99),
                   scrape_max=max(scraper.latencies, default=float("nan")), scrapes=len(scraper.latencies),
                   scrape_errors=scraper.errors, scrape_kb=pct(scraper.sizes, 0.5) / 1024)
        return out
    finally:
        agent.stop()


# --- fping --------------------------------------------------------------------------

def bench_fping(n: int, args: argparse.Namespace, workdir: str, burst: bool = False) -> dict[str, float]:
    """fping -C over the N addresses: paced at Lifeline's echo rate, or ``burst`` (-i 0) as fast as it goes."""
    fping = shutil.which("fping")
    if fping is None:
        raise SystemExit("fping not found: apt-get install -y fping")
    path = address_file(n, workdir)
    # fping sends round-robin, one echo every -i ms across all targets: this -i gives
    # the same echo rate as Lifeline's N x packets / interval.
    gap_ms = 0.0 if burst else args.interval * 1000 / (n * args.packets)
    cmd = [fping, "-C", str(args.packets), "-q", "-r", "0", "-t", str(int(args.timeout * 1000)),
           "-i", f"{gap_ms:.4f}", "-p", f"{args.packet_interval * 1000:g}", "-f", path]
    log(f"fping{' burst' if burst else ''}: {n} targets, -i {gap_ms:.3f} ms")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    reader.join(10)
    rtts, sent = [], 0
    for line in b"".join(stderr_chunks).decode().splitlines():
        if " : " not in line:
            continue
        for tok in line.split(" : ", 1)[1].split():
            sent += 1
            if tok != "-":
                rtts.append(float(tok) / 1000)
    cpu = usage.ru_utime + usage.ru_stime
    return {"echoes_s": sent / wall, "cpu_per_1k": cpu / sent * 1000 if sent else float("nan"),
            "rtt_p50": pct(rtts, 0.5), "rtt_p99": pct(rtts, 0.99), "answered": len(rtts) / sent if sent else 0,
            "wall": wall}


def bench_floor(n: int, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    """bench/icmp_floor.py, a bare asyncio pinger, on the same addresses and echo pattern."""
    cmd = [sys.executable, os.path.join(ROOT, "bench", "icmp_floor.py"), "--file", address_file(n, workdir),
           "--interval", f"{args.interval:g}", "--packets", str(args.packets),
           "--packet-interval", f"{args.packet_interval:g}", "--timeout", f"{args.timeout:g}",
           "--window", f"{args.window:g}"]
    log(f"bare Python pinger: {n} targets")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          timeout=args.interval + args.window + 60)
    if proc.returncode != 0:
        raise SystemExit(f"icmp_floor.py failed: {proc.stderr.strip()}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    sent = r["sent"]
    return {"echoes_s": sent / r["wall"], "cpu_per_1k": r["cpu"] / sent * 1000 if sent else float("nan"),
            "answered": r["received"] / sent if sent else 0.0}


# --- blackbox_exporter ------------------------------------------------------------

BLACKBOX_CONFIG = """modules:
  icmp:
    prober: icmp
    timeout: {timeout}s
    icmp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""


def bench_blackbox(n: int, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    exe = shutil.which("prometheus-blackbox-exporter")
    if exe is None:
        raise SystemExit("prometheus-blackbox-exporter not found: apt-get install -y prometheus-blackbox-exporter")
    addrs = addresses(n)
    path = os.path.join(workdir, "blackbox.yml")
    with open(path, "w") as fh:
        fh.write(BLACKBOX_CONFIG.format(timeout=args.timeout))
    port = free_port()
    rate = n * args.packets / args.interval  # one blackbox probe is one echo
    log(f"blackbox_exporter: {n} targets, {rate:.0f} probes/s for {args.blackbox_window:g}s")
    with open(os.path.join(workdir, f"blackbox-{n}.log"), "wb") as logf:
        proc = subprocess.Popen([exe, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--log.level=warn"], stdout=logf, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: http_get("127.0.0.1", port, "/-/healthy", timeout=2)[0] == 200, 30, "blackbox_exporter")
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            counts = ProbeCounts()
            asyncio.run(drive_probes(port, lambda i: f"module=icmp&target={addrs[i % len(addrs)]}", rate,
                                     args.blackbox_window, args.blackbox_concurrency, counts, start_delay=0.2))
            ok, failed, errors = counts.ok, counts.failed, counts.errors
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            rss = rss_bytes(proc.pid) / 2**20
        finally:
            stop_process(proc)
    done = ok + failed
    return {"probes_s": done / (t1 - t0), "cpu_per_1k": (cpu1 - cpu0) / done * 1000 if done else float("nan"),
            "success": ok / done if done else 0.0, "errors": errors, "rss_mb": rss, "target_rate": rate}


# --- smokeping_prober -------------------------------------------------------------

def _smokeping_counts(port: int, timeout: float) -> tuple[float, float, float]:
    """(requests, responses) summed over hosts, and how long the scrape took."""
    started = time.monotonic()
    status, body = http_get("127.0.0.1", port, "/metrics", timeout=timeout)
    took = time.monotonic() - started
    if status != 200:
        raise OSError(f"/metrics answered {status}")
    sent = answered = 0.0
    for line in body.decode().splitlines():
        if line.startswith("smokeping_requests_total{"):
            sent += float(line.rsplit(" ", 1)[1])
        elif line.startswith("smokeping_response_duration_seconds_count{"):
            answered += float(line.rsplit(" ", 1)[1])
    return sent, answered, took


def _sockets(pid: int) -> int:
    """Sockets a process has open (fds may close while they are counted)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def bench_smokeping(n: int, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """Debian's prometheus-smokeping-prober on the same addresses at the same per-target echo rate.

    It runs one pinger (and one raw socket) per host, so every reply is copied to N sockets;
    at 10,000 targets it may not start or not keep up: what happened is returned as ``failed``.
    """
    exe = shutil.which("prometheus-smokeping-prober")
    if exe is None:
        raise SystemExit("prometheus-smokeping-prober not found: apt-get install -y prometheus-smokeping-prober")
    addrs = addresses(n)
    path = os.path.join(workdir, f"smokeping-{n}.yml")
    period = args.interval / args.packets  # one echo per host every period: Lifeline's echo rate
    with open(path, "w") as fh:
        fh.write(f"targets:\n- interval: {period:.3f}s\n  network: ip4\n  protocol: icmp\n  hosts:\n")
        fh.writelines(f"  - {a}\n" for a in addrs)
    port = free_port()
    out: dict[str, Any] = {"failed": "", "expected_s": n / period}
    log(f"smokeping_prober: {n} targets, one echo every {period:.3f} s each")
    logpath = os.path.join(workdir, f"smokeping-{n}.log")
    with open(logpath, "wb") as logf:
        started = time.monotonic()
        proc = subprocess.Popen([exe, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--privileged", "--log.level=warn"], stdout=logf, stderr=subprocess.STDOUT)
        rss = None
        try:
            # It starts its pingers one after the other, spread over the interval, then listens.
            deadline = time.monotonic() + args.smokeping_start
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if http_get("127.0.0.1", port, "/-/healthy", timeout=2)[0] == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            else:
                with open(logpath, "rb") as fh:
                    tail = fh.read()[-300:].decode(errors="replace").strip().splitlines()
                if proc.poll() is not None:
                    out["failed"] = f"exited with {proc.returncode} after {time.monotonic() - started:.0f} s"
                else:  # still starting: say what it had built and burnt by then
                    sockets = _sockets(proc.pid)
                    out["failed"] = (f"not listening after {args.smokeping_start:.0f} s ({sockets} sockets open, "
                                     f"{cpu_seconds(proc.pid) / (time.monotonic() - started) * 100:.0f} % of a core, "
                                     f"RSS {rss_bytes(proc.pid) / 2**20:.0f} MB)")
                out["failed"] += f": {tail[-1][:160]}" if tail else ""
                return out
            out["startup"] = time.monotonic() - started
            rss = RssSampler(proc.pid)
            time.sleep(args.interval + 2)
            try:
                sent0, ans0, took0 = _smokeping_counts(port, args.smokeping_scrape_timeout)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(args.window)
                sent1, ans1, took1 = _smokeping_counts(port, args.smokeping_scrape_timeout)
                cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            except (OSError, http.client.HTTPException) as exc:
                out["failed"] = f"/metrics did not answer within {args.smokeping_scrape_timeout:.0f} s ({exc})"
                return out
            echoes = sent1 - sent0
            out.update(echoes_s=echoes / (t1 - t0), answered=(ans1 - ans0) / echoes if echoes else float("nan"),
                       cpu_per_1k=(cpu1 - cpu0) / echoes * 1000 if echoes else float("nan"),
                       cpu_util=(cpu1 - cpu0) / (t1 - t0), scrape=max(took0, took1))
        finally:
            if rss is not None:
                out["rss_mb"] = max(rss.stop(), rss_bytes(proc.pid) if proc.poll() is None else 0) / 2**20
            stop_process(proc)
    return out


# --- config load --------------------------------------------------------------------

_LOAD_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
import agent.app  # everything the agent imports, so the baseline is the agent's
from agent import config

def status():
    with open("/proc/self/status") as fh:
        return {k: int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in fh) if k in ("VmRSS", "VmHWM")}

before = status()
started = time.perf_counter()
cfg = config.load(sys.argv[1])
took = time.perf_counter() - started
after = status()
print(json.dumps({"targets": len(cfg.targets), "seconds": took, "base": before["VmRSS"],
                  "peak": after["VmHWM"], "after": after["VmRSS"]}))
"""


def bench_config_load(n: int, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    """``agent.config.load()`` of N targets in a fresh process: seconds, peak and final RSS."""
    path = os.path.join(workdir, f"load-{n}.yaml")
    with open(path, "w") as fh:
        fh.write(lifeline_config(addresses(n), args.interval, args.packets, args.packet_interval, args.timeout))
    log(f"config load: {n} targets")
    proc = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, path, ROOT], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"config load of {n} targets failed: {proc.stderr[-500:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["targets"] != n:
        raise SystemExit(f"config load gave {out['targets']} targets, expected {n}")
    return out


# --- report -------------------------------------------------------------------------

def machine() -> str:
    # Other raw ICMP sockets on the host get a copy of every reply we cause (kernel work
    # charged to the sender), and other load shares the 2 cores: both are noise to report.
    raw = 0
    for path in ("/proc/net/raw", "/proc/net/raw6"):
        try:
            with open(path) as fh:
                raw += max(len(fh.readlines()) - 1, 0)
        except OSError:
            pass
    return f"{benchlib.machine()}, {raw} raw sockets open before the run"


def us(x: float) -> str:
    return "n/a" if x != x else f"{x * 1e6:.0f} µs"


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1e3:.1f} ms"


def num(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(sizes: list[int], life: dict, fp: dict, fpb: dict, bb: dict, sp: dict, loads: dict,
           args: argparse.Namespace, floor: dict | None = None) -> str:
    floor = floor or {}
    cols = [f"{n:,} targets" for n in sizes]
    rows: list[tuple[str, list[str]]] = []
    nan = float("nan")

    def row(label: str, fn) -> None:
        rows.append((label, [fn(n) for n in sizes]))

    def ratio(a: float, b: float, digits: int = 2) -> str:
        return "n/a" if a != a or b != b or not b else f"{a / b:.{digits}f}"

    row("Lifeline echoes/s sustained (expected)",
        lambda n: f"{life[n]['quiet_echoes_s']:.0f} ({n * args.packets / args.interval:.0f})")
    row("Lifeline echoes answered / skipped cycles",
        lambda n: f"{life[n]['quiet_answered'] * 100:.2f} % / {life[n]['quiet_skipped'] + life[n]['scraped_skipped']:.0f}")
    row("Lifeline CPU s per 1,000 echoes", lambda n: num(life[n]["quiet_cpu_per_1k"], 4))
    row("Lifeline CPU (share of one core)", lambda n: f"{life[n]['quiet_cpu_util'] * 100:.1f} %")
    row("Lifeline scheduler lag p50 / p99", lambda n: f"{ms(life[n]['quiet_lag_p50'])} / {ms(life[n]['quiet_lag_p99'])}")
    row("  ... while scraped", lambda n: f"{ms(life[n]['scraped_lag_p50'])} / {ms(life[n]['scraped_lag_p99'])}")
    row("Lifeline RSS (peak)", lambda n: f"{life[n]['rss_mb']:.0f} MB")
    row("Lifeline /metrics lone scrape, fresh render (gzip)", lambda n: ms(life[n]["lone_scrape"]))
    row("Lifeline /metrics scrape p50 / p99 (gzip)",
        lambda n: f"{ms(life[n]['scrape_p50'])} / {ms(life[n]['scrape_p99'])}")
    row(f"  ... {args.scrapers} concurrent scrapers: count, size, max",
        lambda n: f"{life[n]['scrapes']} x {life[n]['scrape_kb']:.0f} KiB, max {ms(life[n]['scrape_max'])}")
    row("Lifeline RTT p50 (cycle averages)", lambda n: us(life[n]["quiet_rtt_p50"]))
    row("  ... while scraped", lambda n: us(life[n]["scraped_rtt_p50"]))
    row("Lifeline RTT p50 / p99 (histogram)",
        lambda n: f"{us(life[n]['quiet_rtt_p50_hist'])} / {us(life[n]['quiet_rtt_p99_hist'])}")
    row("  ... while scraped",
        lambda n: f"{us(life[n]['scraped_rtt_p50_hist'])} / {us(life[n]['scraped_rtt_p99_hist'])}")
    row("Lifeline CPU s per 1,000 echoes while scraped", lambda n: num(life[n]["scraped_cpu_per_1k"], 4))
    if fp:
        row("fping paced: echoes/s", lambda n: f"{fp[n]['echoes_s']:.0f}")
        row("fping paced: CPU s per 1,000 echoes", lambda n: num(fp[n]["cpu_per_1k"], 4))
        row("fping paced: RTT p50 / p99", lambda n: f"{us(fp[n]['rtt_p50'])} / {us(fp[n]['rtt_p99'])}")
    if fpb:
        row("fping burst (-i 0): echoes/s, answered", lambda n: f"{fpb[n]['echoes_s']:.0f}, {fpb[n]['answered'] * 100:.1f} %")
        row("fping burst: CPU s per 1,000 echoes", lambda n: num(fpb[n]["cpu_per_1k"], 4))
    if floor:
        row("bare Python pinger (icmp_floor.py): echoes/s, answered",
            lambda n: f"{floor[n]['echoes_s']:.0f}, {floor[n]['answered'] * 100:.1f} %")
        row("bare Python pinger: CPU s per 1,000 echoes", lambda n: num(floor[n]["cpu_per_1k"], 4))
    if bb:
        row("blackbox probes/s (asked)", lambda n: f"{bb[n]['probes_s']:.0f} ({bb[n]['target_rate']:.0f})")
        row("blackbox CPU s per 1,000 probes", lambda n: num(bb[n]["cpu_per_1k"], 4))
        row("blackbox success / client errors", lambda n: f"{bb[n]['success'] * 100:.1f} % / {bb[n]['errors']}")
    if sp:
        def sp_cell(n: int, fn) -> str:
            return f"failed: {sp[n]['failed']}" if sp[n]["failed"] else fn(sp[n])
        row("smokeping_prober echoes/s (expected), answered",
            lambda n: sp_cell(n, lambda r: f"{r['echoes_s']:.0f} ({r['expected_s']:.0f}), {r['answered'] * 100:.1f} %"))
        row("smokeping_prober CPU s per 1,000 echoes, share of a core",
            lambda n: sp_cell(n, lambda r: f"{num(r['cpu_per_1k'], 4)}, {r['cpu_util'] * 100:.0f} %"))
        row("smokeping_prober RSS (peak), /metrics scrape",
            lambda n: sp_cell(n, lambda r: f"{r.get('rss_mb', nan):.0f} MB, {ms(r['scrape'])}"))
    cpu = {n: life[n]["quiet_cpu_per_1k"] for n in sizes}
    if fp:
        row("CPU ratio Lifeline / fping paced (goal <= 3)", lambda n: ratio(cpu[n], fp[n]["cpu_per_1k"]))
    if fpb:
        row("CPU ratio Lifeline / fping burst (stretch goal <= 3)", lambda n: ratio(cpu[n], fpb[n]["cpu_per_1k"]))
    if floor:
        row("CPU ratio Lifeline / bare Python pinger", lambda n: ratio(cpu[n], floor[n]["cpu_per_1k"]))
        if fpb:
            row("CPU ratio bare Python pinger / fping burst",
                lambda n: ratio(floor[n]["cpu_per_1k"], fpb[n]["cpu_per_1k"]))
    if bb:
        row("CPU ratio Lifeline / blackbox (goal <= 0.05)", lambda n: ratio(cpu[n], bb[n]["cpu_per_1k"], 3))
    if sp:
        row("CPU ratio Lifeline / smokeping_prober",
            lambda n: "n/a" if sp[n]["failed"] else ratio(cpu[n], sp[n]["cpu_per_1k"], 3))
    if fp:
        row("RTT p50 Lifeline - fping (goal <= 50 µs)", lambda n: us(life[n]["quiet_rtt_p50"] - fp[n]["rtt_p50"]))

    width = max(len(r[0]) for r in rows)
    lines = [f"| {'':{width}} | " + " | ".join(cols) + " |",
             f"|{'-' * (width + 2)}|" + "|".join("-" * (len(c) + 2) for c in cols) + "|"]
    lines += [f"| {label:{width}} | " + " | ".join(vals) + " |" for label, vals in rows]
    if loads:
        lines += ["", "| agent.config.load(), fresh process | time | peak RSS (imports: base) | RSS after |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {n:,} targets | {r['seconds']:.2f} s | {r['peak'] / 2**20:.0f} MB ({r['base'] / 2**20:.0f}) "
                  f"| {r['after'] / 2**20:.0f} MB |" for n, r in loads.items()]

    big = max(sizes)
    L = life[big]
    goals = [
        ("CPU per echo within 3x of fping's paced at the same rate",
         bool(fp) and all(cpu[n] / fp[n]["cpu_per_1k"] <= 3 for n in sizes),
         " / ".join(ratio(cpu[n], fp[n]["cpu_per_1k"]) + "x" for n in sizes) if fp else "no fping run"),
        ("CPU per echo at most 1/20 of blackbox_exporter's per probe",
         bool(bb) and all(cpu[n] / bb[n]["cpu_per_1k"] <= 0.05 for n in sizes),
         " / ".join(ratio(cpu[n], bb[n]["cpu_per_1k"], 3) + "x" for n in sizes) if bb else "no blackbox run"),
        (f"{big:,} targets sustained (>= 98 % of the echo rate, no skipped cycles), lag p99 < 50 ms",
         L["quiet_echoes_s"] >= 0.98 * big * args.packets / args.interval
         and L["quiet_skipped"] + L["scraped_skipped"] == 0 and L["quiet_lag_p99"] < 0.05,
         f"{L['quiet_echoes_s'] / (big * args.packets / args.interval) * 100:.1f} %, "
         f"{L['quiet_skipped'] + L['scraped_skipped']:.0f} skipped, lag p99 {ms(L['quiet_lag_p99'])}"),
        (f"peak RSS at {big:,} targets < 120 MB (issue 14)", L["rss_mb"] < 120, f"{L['rss_mb']:.0f} MB"),
        (f"fresh /metrics render at {big:,} targets < 50 ms (lone gzip scrape; issue 14)",
         L["lone_scrape"] < 0.05, ms(L["lone_scrape"])),
        (f"/metrics p99 under {args.scrapers} concurrent scrapers < 100 ms", L["scrape_p99"] < 0.1,
         ms(L["scrape_p99"])),
        ("scraping does not move lag p99 (< 50 ms and within 10 ms) or RTT p50 (within 20 µs)",
         all(life[n]["scraped_lag_p99"] < 0.05
             and abs(life[n]["scraped_lag_p99"] - life[n]["quiet_lag_p99"]) < 0.01
             and abs(life[n]["scraped_rtt_p50"] - life[n]["quiet_rtt_p50"]) < 20e-6 for n in sizes),
         " / ".join(f"lag p99 {ms(life[n]['quiet_lag_p99'])} -> {ms(life[n]['scraped_lag_p99'])}" for n in sizes)),
        ("loopback RTT p50 within 50 µs of fping's",
         bool(fp) and all(abs(life[n]["quiet_rtt_p50"] - fp[n]["rtt_p50"]) <= 50e-6 for n in sizes),
         " / ".join(us(life[n]["quiet_rtt_p50"] - fp[n]["rtt_p50"]) for n in sizes) if fp else "no fping run"),
        (f"stretch: CPU per echo at {big:,} targets within 3x of fping's burst mode",
         bool(fpb) and cpu[big] / fpb[big]["cpu_per_1k"] <= 3,
         ratio(cpu[big], fpb[big]["cpu_per_1k"]) + "x" if fpb else "no fping run"),
    ]
    lines.append("")
    lines += [f"- {verdict(ok)}: {goal} ({figure})" for goal, ok, figure in goals]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000", help="comma-separated target counts (default 1000,10000)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between cycles of one target")
    p.add_argument("--packets", type=int, default=3, help="echoes per cycle")
    p.add_argument("--packet-interval", type=float, default=0.2, help="seconds between echoes of one cycle")
    p.add_argument("--timeout", type=float, default=1.0, help="per-echo timeout, seconds")
    p.add_argument("--window", type=float, default=20.0, help="seconds of each measuring window")
    p.add_argument("--scrapers", type=int, default=4, help="concurrent /metrics clients in the scraped window")
    p.add_argument("--scrape-pause", type=float, default=0.05, help="pause between one client's scrapes, seconds")
    p.add_argument("--blackbox-window", type=float, default=15.0, help="seconds blackbox_exporter is driven")
    p.add_argument("--blackbox-concurrency", type=int, default=64, help="concurrent /probe requests at most")
    p.add_argument("--no-blackbox", action="store_true", help="skip blackbox_exporter")
    p.add_argument("--no-fping", action="store_true", help="skip fping, paced and burst (ratios need it)")
    p.add_argument("--no-smokeping", action="store_true", help="skip prometheus-smokeping-prober")
    p.add_argument("--no-floor", action="store_true", help="skip the bare Python pinger (bench/icmp_floor.py)")
    p.add_argument("--smokeping-start", type=float, default=90.0,
                   help="seconds smokeping_prober gets to start listening")
    p.add_argument("--smokeping-scrape-timeout", type=float, default=60.0, help="seconds one of its scrapes may take")
    p.add_argument("--load-sizes", default="10000,50000",
                   help="target counts of the config-load measurement ('' for none)")
    p.add_argument("--agent-arg", action="append", default=[], help="extra argument for `lifeline run`")
    p.add_argument("--agent-command", default="", help="command to run instead of .venv/bin/lifeline (to compare builds)")
    p.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"),
                   help="file the table is appended to ('' for none)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_icmp: needs root (raw ICMP sockets for Lifeline, fping and blackbox_exporter)", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if max(sizes) > 62500 * 100:
        raise SystemExit("too many targets")
    host = machine()
    if max((int(x) for x in args.load_sizes.split(",") if x), default=0) > 62500 * 100:
        raise SystemExit("too many targets")
    started = time.monotonic()
    life, fp, fpb, bb, sp, loads, floor = {}, {}, {}, {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-") as workdir:
        # One pinger at a time, each size in turn: every raw socket sees every reply on the host.
        for n in sizes:
            life[n] = bench_lifeline(n, args, workdir)
            if not args.no_fping:
                fp[n] = bench_fping(n, args, workdir)
                fpb[n] = bench_fping(n, args, workdir, burst=True)
            if not args.no_floor:
                floor[n] = bench_floor(n, args, workdir)
            if not args.no_blackbox:
                bb[n] = bench_blackbox(n, args, workdir)
            if not args.no_smokeping:
                sp[n] = bench_smokeping(n, args, workdir)
        for n in (int(x) for x in args.load_sizes.split(",") if x):
            loads[n] = bench_config_load(n, args, workdir)
    table = report(sizes, life, fp, fpb, bb, sp, loads, args, floor)
    command = "bench/bench_icmp.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"## {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} — {host}\n\n"
              f"`{command.strip()}`: {args.packets} echoes every {args.interval:g} s per target, "
              f"{args.packet_interval * 1000:g} ms apart, timeout {args.timeout:g} s; windows of {args.window:g} s; "
              f"run took {time.monotonic() - started:.0f} s.\n\n")
    print(header + table)
    if args.results:
        with open(args.results, "a") as fh:
            fh.write(header + table + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
