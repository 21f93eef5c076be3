#!/usr/bin/env python3
"""ICMP at carrier scale: Lifeline beside fping and blackbox_exporter, on loopback only.

    .venv/bin/python bench/bench_icmp.py            # 1k and 10k targets, 3 echoes / 10 s (about 5 min)

For each size N it runs, one after the other (never two pingers at once, since
every raw ICMP socket sees every reply on the host):

* ``lifeline run`` as a real process on N loopback targets; a quiet window (one
  scrape at each end) and then a window with a bounded concurrent scraper. From
  ``/proc/PID/stat`` and the deltas of the agent's own metrics: echoes/s, CPU
  per 1,000 echoes, scheduler lag p50/p99, RSS, scrape latency, RTT.
* ``fping -C`` on the same addresses at the same echo rate: CPU per 1,000
  echoes (rusage of the child) and RTT p50, the practical floor.
* ``prometheus-blackbox-exporter`` with an ``icmp`` module, driven through
  ``/probe`` by a paced, bounded client at the same probe rate: the exporter's
  own CPU per 1,000 probes (the client's CPU is not counted).

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
import os
import platform
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

from benchlib import ProbeCounts, cpu_model, drive_probes, log, wait_until

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

def bench_fping(n: int, args: argparse.Namespace, workdir: str) -> dict[str, float]:
    fping = shutil.which("fping")
    if fping is None:
        raise SystemExit("fping not found: apt-get install -y fping")
    addrs = addresses(n)
    path = os.path.join(workdir, f"fping-{n}.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(addrs) + "\n")
    # fping sends round-robin, one echo every -i ms across all targets: this -i gives
    # the same echo rate as Lifeline's N x packets / interval.
    gap_ms = args.interval * 1000 / (n * args.packets)
    cmd = [fping, "-C", str(args.packets), "-q", "-r", "0", "-t", str(int(args.timeout * 1000)),
           "-i", f"{gap_ms:.4f}", "-p", f"{args.packet_interval * 1000:g}", "-f", path]
    log(f"fping: {n} targets, -i {gap_ms:.3f} ms")
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


# --- report -------------------------------------------------------------------------

def machine() -> str:
    model = cpu_model()
    # Other raw ICMP sockets on the host get a copy of every reply we cause (kernel work
    # charged to the sender), and other load shares the 2 cores: both are noise to report.
    raw = 0
    for path in ("/proc/net/raw", "/proc/net/raw6"):
        try:
            with open(path) as fh:
                raw += max(len(fh.readlines()) - 1, 0)
        except OSError:
            pass
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"load average before the run {os.getloadavg()[0]:.2f}, {raw} raw sockets open before the run")


def us(x: float) -> str:
    return "n/a" if x != x else f"{x * 1e6:.0f} µs"


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1e3:.1f} ms"


def num(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(sizes: list[int], life: dict, fp: dict, bb: dict, args: argparse.Namespace) -> str:
    cols = [f"{n:,} targets" for n in sizes]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn) -> None:
        rows.append((label, [fn(n) for n in sizes]))

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
    row("fping echoes/s", lambda n: f"{fp[n]['echoes_s']:.0f}")
    row("fping CPU s per 1,000 echoes", lambda n: num(fp[n]["cpu_per_1k"], 4))
    row("fping RTT p50 / p99", lambda n: f"{us(fp[n]['rtt_p50'])} / {us(fp[n]['rtt_p99'])}")
    if bb:
        row("blackbox probes/s (asked)", lambda n: f"{bb[n]['probes_s']:.0f} ({bb[n]['target_rate']:.0f})")
        row("blackbox CPU s per 1,000 probes", lambda n: num(bb[n]["cpu_per_1k"], 4))
        row("blackbox success / client errors", lambda n: f"{bb[n]['success'] * 100:.1f} % / {bb[n]['errors']}")
    ratio_fp = {n: life[n]["quiet_cpu_per_1k"] / fp[n]["cpu_per_1k"] for n in sizes}
    row("CPU ratio Lifeline / fping (goal <= 3)", lambda n: f"{ratio_fp[n]:.2f}")
    if bb:
        ratio_bb = {n: life[n]["quiet_cpu_per_1k"] / bb[n]["cpu_per_1k"] for n in sizes}
        row("CPU ratio Lifeline / blackbox (goal <= 0.05)", lambda n: f"{ratio_bb[n]:.3f}")
    row("RTT p50 Lifeline - fping (goal <= 50 µs)",
        lambda n: us(life[n]["quiet_rtt_p50"] - fp[n]["rtt_p50"]))

    width = max(len(r[0]) for r in rows)
    lines = [f"| {'':{width}} | " + " | ".join(cols) + " |",
             f"|{'-' * (width + 2)}|" + "|".join("-" * (len(c) + 2) for c in cols) + "|"]
    lines += [f"| {label:{width}} | " + " | ".join(vals) + " |" for label, vals in rows]

    big = max(sizes)
    goals = [
        ("CPU per echo within 3x of fping's", all(ratio_fp[n] <= 3 for n in sizes)),
        ("CPU per echo at most 1/20 of blackbox_exporter's per probe",
         bool(bb) and all(life[n]["quiet_cpu_per_1k"] / bb[n]["cpu_per_1k"] <= 0.05 for n in sizes)),
        (f"{big:,} targets sustained (>= 98 % of the echo rate, no skipped cycles), lag p99 < 50 ms, RSS < 200 MB",
         life[big]["quiet_echoes_s"] >= 0.98 * big * args.packets / args.interval
         and life[big]["quiet_skipped"] + life[big]["scraped_skipped"] == 0
         and life[big]["quiet_lag_p99"] < 0.05 and life[big]["rss_mb"] < 200),
        (f"/metrics for {big:,} targets served in < 100 ms (lone scrape and p99 under {args.scrapers} scrapers)",
         life[big]["lone_scrape"] < 0.1 and life[big]["scrape_p99"] < 0.1),
        ("scraping does not move lag p99 (< 50 ms and within 10 ms) or RTT p50 (within 20 µs)",
         all(life[n]["scraped_lag_p99"] < 0.05
             and abs(life[n]["scraped_lag_p99"] - life[n]["quiet_lag_p99"]) < 0.01
             and abs(life[n]["scraped_rtt_p50"] - life[n]["quiet_rtt_p50"]) < 20e-6 for n in sizes)),
        ("loopback RTT p50 within 50 µs of fping's",
         all(abs(life[n]["quiet_rtt_p50"] - fp[n]["rtt_p50"]) <= 50e-6 for n in sizes)),
    ]
    lines.append("")
    lines += [f"- {verdict(ok)}: {goal}" for goal, ok in goals]
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
    p.add_argument("--no-fping", action="store_true", help="skip fping (ratios need it)")
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
    started = time.monotonic()
    life, fp, bb = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-") as workdir:
        for n in sizes:
            life[n] = bench_lifeline(n, args, workdir)
            if not args.no_fping:
                fp[n] = bench_fping(n, args, workdir)
            if not args.no_blackbox:
                bb[n] = bench_blackbox(n, args, workdir)
    if args.no_fping:
        fp = {n: {"echoes_s": float("nan"), "cpu_per_1k": float("nan"), "rtt_p50": float("nan"),
                  "rtt_p99": float("nan")} for n in sizes}
    table = report(sizes, life, fp, bb, args)
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
