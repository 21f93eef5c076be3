"""``lifeline maintenance``: which windows are active at a time, whom they cover, when they start next."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import TextIO

from agent import config as config_mod
from agent.maintenance.calendar import Calendar
from agent.maintenance.model import Window
from common.errors import ConfigInvalid

SHOWN_TARGETS = 5  # names listed per window; the count says how many more


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("maintenance", help="list maintenance windows active at a time and their next starts")
    cmd.add_argument("--config.file", dest="config_file", default="lifeline.yaml", help="configuration file")
    cmd.add_argument("--at", type=_moment, default=None,
                     help="RFC 3339 time with offset, e.g. 2026-12-01T02:30:00+08:00 (default: now)")
    cmd.add_argument("--next", dest="next_count", type=int, default=3, metavar="N",
                     help="upcoming starts to list per window (default 3)")


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a UTC offset, e.g. {text}+08:00 or {text}Z")
    return moment


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        cfg = config_mod.load(args.config_file)
    except ConfigInvalid as exc:
        for err in exc.errors:
            print(err, file=out)
        return 1
    at = args.at or datetime.now(timezone.utc)
    calendar = Calendar(clock=at.timestamp)
    calendar.apply(cfg.maintenance, cfg.targets)
    active = calendar.active()
    print(f"At {at.isoformat(timespec='seconds')} ({_utc(at)}): {len(active)} of {len(cfg.maintenance)} "
          f"maintenance windows active", file=out)
    for window, covered, span in active:
        assert span.current is not None
        print(f"  ACTIVE {window.name}: until {_when(span.current[1], window)}; {_covers(covered)}", file=out)
    covered_by = calendar.coverage()
    for window in cfg.maintenance:
        print(f"{window.name} ({_describe(window)}): {_covers(covered_by[window.name])}", file=out)
        starts = []
        for start in window.starts_after(at):
            if len(starts) >= args.next_count:
                break
            starts.append(start)
        for start in starts:
            print(f"  next: {_when(start, window)}", file=out)
        if not starts and args.next_count > 0:
            print("  no start after this time", file=out)
    return 0


def _describe(window: Window) -> str:
    if window.recurring:
        hours = window.duration / 3600
        length = f"{hours:g}h" if window.duration % 60 == 0 else f"{window.duration:g}s"
        return f"{window.schedule!r} for {length}, {window.timezone}"
    assert window.start is not None and window.end is not None
    return f"one-off {window.start.isoformat(timespec='minutes')} to {window.end.isoformat(timespec='minutes')}"


def _when(moment: datetime, window: Window) -> str:
    local = moment.astimezone(window.zone())
    zone = f" {window.timezone}" if window.timezone else ""
    return f"{local.isoformat(timespec='minutes')}{zone} = {_utc(moment)}"


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def _covers(names: tuple[str, ...]) -> str:
    if not names:
        return "covers no target"
    shown = ", ".join(names[:SHOWN_TARGETS]) + (f" and {len(names) - SHOWN_TARGETS} more"
                                               if len(names) > SHOWN_TARGETS else "")
    return f"covers {len(names)} target{'s' if len(names) != 1 else ''}: {shown}"
