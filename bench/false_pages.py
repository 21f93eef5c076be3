#!/usr/bin/env python3
"""No false pages: lossy P0 circuits, short blackouts and a reload must never page on-call.

    .venv/bin/python bench/false_pages.py                 # 20 minutes (make false-pages), as root
    .venv/bin/python bench/false_pages.py --minutes 3     # a quick check that everything runs

The real agent (``.venv/bin/lifeline run``), Prometheus with the shipped rules
(rules/lifeline.rules.yml, their own 5 s evaluation for the target and agent
groups) scraping every 5 s, and Alertmanager with the shipped routing
(deploy/alertmanager.yml), every receiver pointed at a local webhook that
records each notification (agent/devstack.py, as scripts/stack and
tests/test_e2e_alerting.py use them).

Targets: 10 P0 hosts (the built-in P0 tier: 5 echoes every 5 s) in a network
namespace this script creates, 198.18.0.0/15 addresses behind a veth pair, each
dropping 5 % of echo requests at random (nftables ``numgen random``). Every
``--blackout-every`` seconds one host, in turn, drops everything for
``--blackout-seconds`` (one P0 cycle). Half-way through, an 11th host with the
same 5 % loss is added to the config file and the agent reloads on SIGHUP.

Reported (and appended to bench/results.md): critical pages received (must be
0; exit status 1 otherwise, as for a critical alert firing in Prometheus),
every other notification, critical alerts that went pending (near misses, with
how long they stayed pending), echoes sent and the loss
measured, the blackouts and the failed cycles they caused, the longest run of
failed cycles (the down alert needs 3), and how long the added target took to
its first result after the SIGHUP. The namespace and every process are removed
on exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchlib import log, machine  # noqa: E402 - bench/ is on the path when run as a script

from agent.demo.netns import DemoNet, available  # noqa: E402
from agent.devstack import (  # noqa: E402
    AlertingStack, Notification, Prometheus, StackError, clean, free_port, get, require_tool, stop_process, unwind,
    wait_for)

LIFELINE = os.path.join(ROOT, ".venv", "bin", "lifeline")
SITES = ("dinghai", "putuo", "daishan", "shengsi", "zhujiajian")
ADDED = "fp-p0-added"


def target_name(i: int) -> str:
    return f"fp-p0-{i + 1:02d}"


def agent_config(hosts: list[str], added: str | None) -> str:
    """The agent's config: one P0 hospital circuit per host, built-in P0 tier, plus the added one."""
    targets = [{"name": target_name(i), "address": addr, "tier": "P0", "category": "hospital",
                "site": SITES[i % len(SITES)],
                "labels": {"circuit_id": f"FP-{i + 1:04d}", "carrier": "bench", "contact": "bench"}}
               for i, addr in enumerate(hosts)]
    if added:
        targets.append({"name": ADDED, "address": added, "tier": "P0", "category": "hospital", "site": SITES[0],
                        "labels": {"circuit_id": "FP-ADDED", "carrier": "bench", "contact": "bench"}})
    return yaml.safe_dump({"targets": targets}, sort_keys=False)


def scrape(url: str) -> str:
    status, body = get(url + "/metrics", timeout=10)
    if status != 200:
        raise StackError(f"scrape of {url} answered {status}")
    return body.decode()


def per_target(text: str, name: str, **labels: str) -> dict[str, float]:
    """{target: sum of ``name``'s samples carrying ``labels``} from an exposition."""
    out: dict[str, float] = {}
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in want):
            target = line.split('target="', 1)[1].split('"', 1)[0]
            out[target] = out.get(target, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def git_state(root: str = ROOT, paths: tuple[str, ...] = ("rules/", "agent/", "deploy/")) -> str:
    """The commit checked out in ``root`` and whether ``paths`` have uncommitted changes."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=False)
        return proc.stdout.strip()
    dirty = git("status", "--short", *paths)
    return f"{git('log', '-1', '--format=%h')}" + (f", uncommitted: {'; '.join(dirty.splitlines())}" if dirty
                                                    else f", {' '.join(paths)} clean")


@dataclass
class Run:
    start: float = 0.0  # time.monotonic() when the stack was up and every target seen up
    blackouts: list[tuple[float, str]] = field(default_factory=list)  # (offset s, target)
    added_at: float | None = None
    added_first_result: float | None = None  # s from SIGHUP to the target's first result in /metrics
    added_first_sample: float | None = None  # ... to Prometheus's first sample of it
    reload_ok: bool | None = None

    def offset(self, t: float) -> str:
        s = max(t - self.start, 0.0)
        return f"+{int(s // 60):02d}:{int(s % 60):02d}"


def describe(note: Notification, run: Run) -> list[str]:
    out = []
    for alert in note.payload.get("alerts", []):
        labels = alert.get("labels", {})
        out.append(f"{run.offset(note.received)} {note.receiver} {alert.get('status')} {labels.get('alertname')} "
                   f"{labels.get('severity', '-')} {labels.get('target', labels.get('instance', ''))}")
    return out


def is_critical_page(note: Notification) -> bool:
    return any(a.get("status") == "firing" and a.get("labels", {}).get("severity") == "critical"
               for a in note.payload.get("alerts", []))


def add_target(args: argparse.Namespace, agent: subprocess.Popen, agent_url: str, prom: Prometheus,
               config_path: str, hosts: list[str], added: str, run: Run) -> None:
    """Rewrite the config with the 11th host, SIGHUP the agent, time its first result and first sample."""
    with open(config_path + ".new", "w", encoding="utf-8") as fh:
        fh.write(agent_config(hosts, added))
    os.replace(config_path + ".new", config_path)  # the agent never reads a half-written file
    sent = time.monotonic()
    agent.send_signal(signal.SIGHUP)
    run.added_at = sent
    deadline = sent + 60
    while time.monotonic() < deadline and (run.added_first_result is None or run.added_first_sample is None):
        now = time.monotonic()
        if run.added_first_result is None and per_target(scrape(agent_url), "lifeline_probe_last_run_timestamp_seconds",
                                                         target=ADDED):
            run.added_first_result = now - sent
        if run.added_first_sample is None and prom.query(f'lifeline_target_up{{target="{ADDED}"}}'):
            run.added_first_sample = now - sent
        time.sleep(0.1)
    text = scrape(agent_url)
    run.reload_ok = any(line.startswith("lifeline_config_last_reload_successful 1") for line in text.splitlines())
    log(f"added {ADDED}: first result {run.added_first_result}s, in Prometheus {run.added_first_sample}s after SIGHUP")


def stack_run(args: argparse.Namespace, work: str, cleanup: list, run: Run) -> dict[str, Any]:
    """Bring everything up, run the schedule, and collect the figures."""
    octet = 250 + os.getpid() % 6  # 198.18.250-255.0/24: apart from the tests' (test_dependencies: 210-249) and the demo's
    net = DemoNet(f"llfp-{os.getpid()}", octet, f"llfp{os.getpid() % 100000}")
    cleanup.append(net.destroy)
    *hosts, added = net.create(host_count=args.targets + 1)
    for addr in [*hosts, added]:
        net.set_loss(addr, args.loss)
    log(f"namespace {net.name}: {len(hosts)} hosts {hosts[0]}..{hosts[-1]} at {args.loss} % loss, "
        f"{added} added later")

    config_path = os.path.join(work, "lifeline.yaml")
    with open(config_path, "w", encoding="utf-8") as fh:
        fh.write(agent_config(hosts, None))
    port = free_port()
    agent_url = f"http://127.0.0.1:{port}"
    agent_log = open(os.path.join(work, "agent.log"), "wb")
    cleanup.append(agent_log.close)
    agent = subprocess.Popen([LIFELINE, "run", "--config.file", config_path, "--web.listen-address",
                              f"127.0.0.1:{port}", "--log.format", "json"], cwd=work,
                             stdout=agent_log, stderr=subprocess.STDOUT)
    cleanup.append(lambda: stop_process(agent))

    def agent_ready() -> bool:
        if agent.poll() is not None:
            raise StackError(f"agent exited with {agent.returncode}; see {work}/agent.log")
        return get(agent_url + "/-/ready", timeout=1)[0] == 200

    wait_for(agent_ready, 60, f"the agent on {agent_url}", interval=0.2)
    # The shipped rules with their own intervals (5 s for the target and agent alerts), 5 s scrapes.
    stack = AlertingStack.start(work, [f"127.0.0.1:{port}"], interval="5s")
    cleanup.append(stack.stop)
    hook, am, prom = stack.hook, stack.alertmanager, stack.prometheus
    wait_for(lambda: len(prom.query("lifeline_target_up == 1")) == len(hosts), 90,
             "Prometheus to see every target up", interval=1)
    run.start = time.monotonic()
    end = run.start + args.minutes * 60
    log(f"stack up (agent {agent_url}, Prometheus {prom.url}, Alertmanager {am.url}); running "
        f"{args.minutes:g} min")

    events: list[tuple[float, str, int]] = []
    t, k = args.first_blackout, 0
    while t < args.minutes * 60:
        events.append((run.start + t, "blackout", k % len(hosts)))
        t, k = t + args.blackout_every, k + 1
    add_at = args.add_at if args.add_at is not None else args.minutes * 30
    events.append((run.start + add_at, "add", 0))
    events.sort()
    for at, kind, index in events:
        while time.monotonic() < min(at, end):
            for name, proc in (("agent", agent), ("prometheus", prom.proc), ("alertmanager", am.proc)):
                if proc is None or proc.poll() is not None:
                    raise StackError(f"{name} exited during the run; see {work}")
            time.sleep(min(1.0, max(min(at, end) - time.monotonic(), 0.01)))
        if time.monotonic() >= end:
            break
        if kind == "blackout":
            addr = hosts[index]
            net.set_loss(addr, 100)
            run.blackouts.append((time.monotonic() - run.start, target_name(index)))
            time.sleep(args.blackout_seconds)
            net.set_loss(addr, args.loss)
            log(f"blackout {len(run.blackouts)}: {target_name(index)} ({addr}) dark for {args.blackout_seconds:g} s")
        else:
            add_target(args, agent, agent_url, prom, config_path, hosts, added, run)
    while time.monotonic() < end:
        time.sleep(min(1.0, max(end - time.monotonic(), 0.01)))
    log("run over; collecting figures")

    text = scrape(agent_url)
    span = f"{int(time.monotonic() - run.start) + 10}s"

    def query(expr: str) -> list[dict[str, Any]]:
        try:
            return prom.query(expr)
        except StackError as exc:  # report the rest rather than lose a 20-minute run to one query
            log(f"query failed: {exc}")
            return []

    figures: dict[str, Any] = {
        "requests": per_target(text, "lifeline_icmp_requests_total"),
        "responses": per_target(text, "lifeline_icmp_responses_total"),
        "failed_cycles": per_target(text, "lifeline_probe_failures_total", probe="icmp"),
        "max_consecutive": query(f"max(max_over_time(lifeline_target_consecutive_failures[{span}]))"),
        # Independent of Alertmanager's grouping and inhibition: did any critical alert exist at all?
        "critical_alerts": query(f'max_over_time(ALERTS{{severity="critical"}}[{span}])'),
        # How close a pending one came to firing: ALERTS_FOR_STATE holds the time the condition began.
        "longest_pending": query(
            f'max by (alertname, target) (max_over_time((timestamp(ALERTS_FOR_STATE{{severity="critical"}}) '
            f'- ALERTS_FOR_STATE{{severity="critical"}})[{span}:5s]))'),
        # ... and when: the first and last evaluation it was pending at (Unix seconds).
        "pending_first": query(f'min by (alertname, target) (min_over_time(timestamp(ALERTS{{severity="critical",'
                               f'alertstate="pending"}})[{span}:5s]))'),
        "pending_last": query(f'max by (alertname, target) (max_over_time(timestamp(ALERTS{{severity="critical",'
                              f'alertstate="pending"}})[{span}:5s]))'),
        "wall_start": time.time() - (time.monotonic() - run.start),
        "alerts_now": query("ALERTS"),
        "notifications": list(hook.notifications),
    }
    return figures


def report(args: argparse.Namespace, run: Run, fig: dict[str, Any]) -> tuple[str, int]:
    notes: list[Notification] = fig["notifications"]
    critical = [n for n in notes if is_critical_page(n)]
    others = [n for n in notes if not is_critical_page(n)]
    req, resp = fig["requests"], fig["responses"]
    sent, answered = sum(req.values()), sum(resp.values())
    losses = {t: 1 - resp.get(t, 0) / n for t, n in req.items() if n}
    base = [v for t, v in losses.items() if t != ADDED]
    crit_alerts = [(a["metric"].get("alertname"), a["metric"].get("alertstate"), a["metric"].get("target", ""))
                   for a in fig["critical_alerts"]]
    crit_firing = [a for a in crit_alerts if a[1] == "firing"]
    pending = {(a["metric"].get("alertname"), a["metric"].get("target", "")): float(a["value"][1])
               for a in fig["longest_pending"]}
    crit_pending = sorted((n, t) for n, s, t in crit_alerts if s == "pending")

    def when(key: str) -> dict[tuple[str, str], str]:
        out = {}
        for a in fig[key]:
            s = max(float(a["value"][1]) - fig["wall_start"], 0.0)
            out[(a["metric"].get("alertname"), a["metric"].get("target", ""))] = f"+{int(s // 60):02d}:{int(s % 60):02d}"
        return out

    first, last = when("pending_first"), when("pending_last")
    max_consec = fig["max_consecutive"][0]["value"][1] if fig["max_consecutive"] else "n/a"
    failed = fig["failed_cycles"]
    blackout_hosts = sorted({t for _, t in run.blackouts})
    fmt_s = (lambda v: "not seen within 60 s" if v is None else f"{v:.1f} s")
    rows = [  # times are minutes:seconds into the run
        ("critical pages received (must be 0)", str(len(critical))),
        ("other notifications (alerts in them: time, receiver, status, alert, severity, target)",
         str(len(others)) + "".join(f"<br>{d}" for n in others for d in describe(n, run))),
        ("critical alerts firing in Prometheus at any time (must be 0)", str(len(crit_firing)) +
         "".join(f"<br>{n} {t}" for n, _, t in crit_firing)),
        ("critical alerts pending at some time (near misses): longest pending stretch, first and last "
         "evaluation pending", str(len(crit_pending)) +
         "".join(f"<br>{n} {t}: {pending.get((n, t), float('nan')):.0f} s, {first.get((n, t), '?')} to "
                 f"{last.get((n, t), '?')}" for n, t in crit_pending)),
        ("alerts pending or firing at the end",
         ", ".join(sorted(f"{a['metric'].get('alertname')} {a['metric'].get('alertstate')} "
                          f"{a['metric'].get('target', '')}".strip() for a in fig["alerts_now"])) or "none"),
        ("echoes sent / answered", f"{sent:,.0f} / {answered:,.0f}"),
        ("measured loss, all targets", f"{(1 - answered / sent) * 100:.2f} %" if sent else "n/a"),
        (f"measured loss per original target (min / median / max of {len(base)})",
         f"{min(base) * 100:.2f} / {statistics.median(base) * 100:.2f} / {max(base) * 100:.2f} %" if base else "n/a"),
        ("blackouts injected", f"{len(run.blackouts)} x {args.blackout_seconds:g} s, every "
                               f"{args.blackout_every:g} s from {args.first_blackout:g} s: "
                               + (", ".join(f"{t} at +{int(o // 60):02d}:{int(o % 60):02d}" for o, t in run.blackouts)
                                  or "none")),
        ("failed ICMP cycles of the blacked-out targets / of the others",
         f"{sum(failed.get(t, 0) for t in blackout_hosts):.0f} / "
         f"{sum(v for t, v in failed.items() if t not in blackout_hosts):.0f}"),
        ("longest run of failed cycles, any target (the down alert needs 3)", str(max_consec)),
        ("added target: SIGHUP to first result in /metrics", fmt_s(run.added_first_result)),
        ("added target: SIGHUP to first sample in Prometheus", fmt_s(run.added_first_sample)),
        ("added target: reload successful / loss measured",
         f"{'yes' if run.reload_ok else 'no' if run.reload_ok is not None else 'not added'} / "
         + (f"{losses[ADDED] * 100:.2f} % of {req[ADDED]:.0f} echoes" if ADDED in losses else "n/a")),
    ]
    table = "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    problems = []
    if critical or crit_firing:
        problems.append("NOT met: 0 critical pages (and no critical alert firing in Prometheus)")
    if run.added_at is None or run.added_first_result is None:
        problems.append("NOT done: the added target was never probed")
    verdict = "\n".join(problems) or "met: 0 critical pages, no critical alert firing in Prometheus"
    return table + "\n" + verdict + "\n", 1 if problems else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=20.0, help="length of the run (default 20)")
    p.add_argument("--targets", type=int, default=10, help="P0 hosts from the start (default 10)")
    p.add_argument("--loss", type=int, default=5, help="random loss of every host, percent (default 5)")
    p.add_argument("--blackout-every", type=float, default=120.0, help="seconds between blackouts (default 120)")
    p.add_argument("--blackout-seconds", type=float, default=5.0, help="length of one blackout (default 5: a P0 cycle)")
    p.add_argument("--first-blackout", type=float, default=60.0, help="seconds into the run of the first one")
    p.add_argument("--add-at", type=float, default=None, help="seconds into the run the 11th target is added "
                                                                 "(default: half-way)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, Prometheus data)")
    p.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"),
                   help="file the record is appended to ('' for none)")
    args = p.parse_args(argv)
    problem = available()
    if problem:
        print(f"false_pages: {problem}", file=sys.stderr)
        return 2
    if not os.path.exists(LIFELINE):
        print(f"false_pages: {LIFELINE} missing: run `make venv`", file=sys.stderr)
        return 2
    try:
        require_tool("prometheus", "prometheus")
        require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    except StackError as exc:
        print(f"false_pages: {exc}", file=sys.stderr)
        return 2

    # Ctrl-C and SIGTERM (kill, a shell's `timeout`) both unwind through the finally below.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    now = datetime.datetime.now(datetime.timezone.utc)
    host = machine()
    git = git_state()
    command = "bench/false_pages.py " + " ".join(argv if argv is not None else sys.argv[1:])
    log(f"git {git}")
    work = tempfile.mkdtemp(prefix="lifeline-false-pages-")
    cleanup: list = []
    run = Run()
    began = time.monotonic()
    try:
        figures = stack_run(args, work, cleanup, run)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    except StackError as exc:
        print(f"false_pages: {exc}", file=sys.stderr)
        args.keep = True  # the logs say why
        return 1
    finally:
        unwind(cleanup, report=lambda exc: log(f"cleanup step failed: {exc!r}"))
        if args.keep:
            log(f"kept {work} (agent.log, prometheus/, alertmanager/)")
        else:
            clean(work)
    table, status = report(args, run, figures)
    header = (f"## {now:%Y-%m-%d %H:%M} UTC — no false pages, {host}\n\n"
              f"`{command.strip()}`: {args.targets} P0 targets (built-in P0 tier: 5 echoes every 5 s) at "
              f"{args.loss} % random loss, one added by SIGHUP, shipped rules and routing, 5 s scrape; "
              f"git {git}; run took {time.monotonic() - began:.0f} s.\n\n")
    print(header + table)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write("\n" + header + table)
    return status


if __name__ == "__main__":
    sys.exit(main())
