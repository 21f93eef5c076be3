#!/usr/bin/env python3
"""Two builds of the agent side by side: CPU per echo of each, in the same seconds.

CPU per echo of one agent moves by 20-25 % between runs minutes apart on this
class of VM (40-50 us at 10,000 targets, the same code), so a change worth 5 %
cannot be seen by running the agent before and after it. Run at the same time,
two agents share that noise: two copies of the same commit read within 2 % of
each other. Each agent pings the same 10,000 loopback addresses on its own raw
socket (its identifier is its own: the kernel filter hands it only its replies).

    bench/ab_icmp.py BASE [CHANGED] [--rounds 2] [--window 60]

BASE and CHANGED are git revisions (checked out into temporary worktrees) or
directories holding a tree; CHANGED defaults to the working tree. Rounds
alternate which agent starts first. Loopback only, like every bench here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_icmp import ROOT, Agent, addresses, cpu_seconds, lifeline_config, machine, stop_process  # noqa: E402
from benchlib import log, wait_until  # noqa: E402
from false_pages import git_state  # noqa: E402


def tree(rev: str, workdir: str) -> str:
    """A directory holding ``rev``: itself if it is one, else a fresh worktree of it."""
    if os.path.isdir(rev):
        return os.path.abspath(rev)
    path = os.path.join(workdir, rev.replace("/", "_"))
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "-f", "--detach", path, rev],
                   check=True, capture_output=True)
    return path


def one_round(trees: list[str], config: str, workdir: str, args: argparse.Namespace) -> list[float]:
    python = os.path.join(ROOT, ".venv", "bin", "python")
    agents = []
    for i, path in enumerate(trees):
        # Each tree's own code: run from its directory, its packages first on the path.
        cmd = f"env PYTHONPATH={path} {python} -P -m agent.cli"  # -P: not the cwd first
        agents.append(Agent(config, os.path.join(workdir, f"agent-{i}.log"), [], cmd))
    try:
        for agent in agents:
            wait_until(agent.ready, 120, "both agents to become ready", interval=0.2)
        time.sleep(args.warmup)
        before = [cpu_seconds(a.proc.pid) for a in agents]
        time.sleep(args.window)
        after = [cpu_seconds(a.proc.pid) for a in agents]
    finally:
        for agent in agents:
            stop_process(agent.proc)
    echoes = args.targets * args.packets / args.interval * args.window
    return [(b - a) / echoes for a, b in zip(before, after)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base")
    ap.add_argument("changed", nargs="?", default=ROOT)
    ap.add_argument("--targets", type=int, default=10000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--packets", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds after both are ready")
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured per round")
    ap.add_argument("--results", help="append the table to this markdown file")
    args = ap.parse_args(argv)
    header = machine()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="lifeline-ab-") as workdir:
        trees = [tree(args.base, workdir), tree(args.changed, workdir)]
        code = ("agent/", "probes/", "common/")  # what the two agents run
        labels = [f"{ab} {rev} ({git_state(t, code)})" for ab, rev, t in zip("AB", (args.base, args.changed), trees)]
        config = os.path.join(workdir, "targets.yml")
        with open(config, "w") as fh:
            fh.write(lifeline_config(addresses(args.targets), args.interval, args.packets, 0.2, 1.0))
        rows = []
        try:
            for r in range(args.rounds):
                order = [0, 1] if r % 2 == 0 else [1, 0]
                log(f"round {r + 1}: {args.window:g} s, {'A' if order[0] == 0 else 'B'} started first")
                got = one_round([trees[i] for i in order], config, workdir, args)
                per = dict(zip(order, got))
                rows.append((per[0], per[1]))
                log(f"A {per[0] * 1e6:.1f} us, B {per[1] * 1e6:.1f} us per echo")
        finally:
            for path in trees:
                if path.startswith(workdir):
                    subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", path], capture_output=True)
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} — ICMP A/B side by side, {header}",
             "",
             f"`bench/ab_icmp.py {' '.join(argv if argv is not None else sys.argv[1:])}`: two agents at once, "
             f"{args.targets:,} loopback targets each, {args.packets} echoes every {args.interval:g} s; "
             f"{args.window:g} s measured per round after {args.warmup:g} s.",
             "",
             f"| round | {labels[0]}: CPU per echo | {labels[1]}: CPU per echo | B / A |",
             "|---|---:|---:|---:|"]
    lines += [f"| {i + 1} | {a * 1e6:.1f} µs | {b * 1e6:.1f} µs | {b / a:.3f} |" for i, (a, b) in enumerate(rows)]
    mean = sum(b / a for a, b in rows) / len(rows)
    lines += ["", f"B / A over the rounds: {mean:.3f}", ""]
    text = "\n".join(lines)
    print(text)
    if args.results:
        with open(args.results, "a") as fh:
            fh.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
