"""``lifeline maintenance``: the windows, active ones first, whom they cover, their next starts and ends."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from typing import TextIO

from agent import config as config_mod
from agent.maintenance.calendar import Calendar
from agent.maintenance.model import Window
from common.errors import ConfigInvalid

SHOWN_TARGETS = 5  # names listed per window; the count says how many more


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("maintenance", help="list maintenance windows, active ones first, with their next start and end")
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
    for warning in config_mod.warnings(cfg):
        print(warning, file=sys.stderr)
    at = args.at or datetime.now(timezone.utc)
    calendar = Calendar(clock=at.timestamp)
    calendar.apply(cfg.maintenance, cfg.targets)
    active = {window.name: span for window, _, span in calendar.active()}
    print(f"At {at.isoformat(timespec='seconds')} ({_utc(at)}): {len(active)} of {len(cfg.maintenance)} "
          f"maintenance windows active", file=out)
    covered_by = calendar.coverage()
    # Active windows first, then the rest by their next start (never again last), each in config order.
    never = datetime.max.replace(tzinfo=timezone.utc)
    upcoming = {w.name: next(w.starts_after(at), None) for w in cfg.maintenance}
    order = sorted(cfg.maintenance, key=lambda w: (w.name not in active, upcoming[w.name] or never))
    for window in order:
        span = active.get(window.name)
        state = "ACTIVE" if span is not None else ("upcoming" if upcoming[window.name] else "over")
        print(f"{state} {window.name} ({_describe(window)}): {_covers(covered_by[window.name])}", file=out)
        if span is not None:
            assert span.current is not None
            print(f"  now:  {_span(*span.current, window)}", file=out)
        shown = 0
        for start in window.starts_after(at):
            if shown >= args.next_count:
                break
            print(f"  next: {_span(start, _end(start, window), window)}", file=out)
            shown += 1
        if not shown and args.next_count > 0:
            print("  no start after this time", file=out)
    return 0


def _end(start: datetime, window: Window) -> datetime:
    if window.recurring:
        return start + timedelta(seconds=window.duration)
    assert window.end is not None
    return window.end


def _span(start: datetime, end: datetime, window: Window) -> str:
    """Start and end in the window's zone, then in UTC."""
    zone = window.zone()
    name = f" {window.timezone}" if window.timezone else ""
    return (f"{start.astimezone(zone).isoformat(timespec='minutes')} to "
            f"{end.astimezone(zone).isoformat(timespec='minutes')}{name} = {_utc(start)} to {_utc(end)}")


def _describe(window: Window) -> str:
    if window.recurring:
        hours = window.duration / 3600
        length = f"{hours:g}h" if window.duration % 60 == 0 else f"{window.duration:g}s"
        return f"{window.schedule!r} for {length}, {window.timezone}"
    assert window.start is not None and window.end is not None
    return f"one-off {window.start.isoformat(timespec='minutes')} to {window.end.isoformat(timespec='minutes')}"


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def _covers(names: tuple[str, ...]) -> str:
    if not names:
        return "covers no target"
    shown = ", ".join(names[:SHOWN_TARGETS]) + (f" and {len(names) - SHOWN_TARGETS} more"
                                               if len(names) > SHOWN_TARGETS else "")
    return f"covers {len(names)} target{'s' if len(names) != 1 else ''}: {shown}"
