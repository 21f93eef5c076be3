"""``lifeline report``: its flags, and turning them into a report file."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, time as dtime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.validate import parse_duration
from agent.report import collect
from agent.report.formats import to_csv, to_json, to_markdown
from agent.report.htmlpage import to_html
from agent.report.promapi import PromClient, ReportError

RENDERERS: dict[str, Callable[[collect.Report], bytes]] = {
    "html": to_html, "md": to_markdown, "csv": to_csv, "json": to_json}
EXTENSIONS = {".html": "html", ".htm": "html", ".md": "md", ".csv": "csv", ".json": "json"}
DEFAULT_TIMEZONE = "Asia/Shanghai"
# A day at 15 s is 5,760 steps per target; beyond this the report would take minutes and
# gigabytes, and a larger --step says the same thing.
MAX_STEPS = 400_000


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``report`` subcommand on ``sub`` (the ``lifeline`` subparsers)."""
    p = sub.add_parser(
        "report", help="availability report for a day or a range, read from Prometheus",
        description="Availability per target, site and tier for a day (in --timezone) or a range, "
                    "from what Prometheus recorded of the agent's lifeline_target_up.")
    p.add_argument("--prometheus.url", dest="prometheus_url", required=True, metavar="URL",
                   help="Prometheus to read, e.g. http://127.0.0.1:9090")
    p.add_argument("--date", type=_date, help="the day to report, YYYY-MM-DD, midnight to midnight in --timezone")
    p.add_argument("--start", type=_instant, help="range start, RFC 3339 with Z or an offset")
    p.add_argument("--end", type=_instant, help="range end, RFC 3339 with Z or an offset")
    p.add_argument("--timezone", type=_zone, default=ZoneInfo(DEFAULT_TIMEZONE),
                   help=f"time zone for --date and for every time shown (default {DEFAULT_TIMEZONE})")
    p.add_argument("--format", choices=sorted(RENDERERS),
                   help="output format (default: from the --output extension, else md)")
    p.add_argument("--output", default="-", metavar="FILE", help="where to write (default: standard output)")
    p.add_argument("--step", type=_step, default=15.0,
                   help="resolution; at least the agent's scrape interval (default 15s)")
    p.add_argument("--selector", default="", metavar="MATCHERS",
                   help='extra label matchers for every query, e.g. \'job="lifeline"\'')
    p.add_argument("--timeout", type=_step, default=30.0, help="per request to Prometheus (default 30s)")
    p.set_defaults(report_parser=p)
    return p


def _date(text: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} ({exc})") from None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or ("T" not in text.upper() and " " not in text):
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r} (e.g. 2024-03-05T08:00:00+08:00)")
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: end it with Z or an offset such as +08:00")
    return value


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone: {text!r} (e.g. Asia/Shanghai, UTC)") from None


def _step(text: str) -> float:
    value = parse_duration(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f'not a duration of at least 1s: {text!r} (e.g. "15s", "1m")')
    return value


def day_range(day: date, zone: ZoneInfo) -> tuple[float, float]:
    """Local midnight to the next local midnight (23 or 25 hours on a DST change day)."""
    start = datetime.combine(day, dtime(0), zone)
    end = datetime.combine(day + timedelta(days=1), dtime(0), zone)
    return start.timestamp(), end.timestamp()


def _range(args: argparse.Namespace) -> tuple[float, float]:
    """The range the flags ask for, or a usage error (exit 2) naming what is wrong."""
    error = args.report_parser.error
    if args.date is not None:
        if args.start is not None or args.end is not None:
            error("--date and --start/--end exclude each other")
        return day_range(args.date, args.timezone)
    if args.start is None or args.end is None:
        error("give --date YYYY-MM-DD, or both --start and --end")
    start, end = args.start.timestamp(), args.end.timestamp()
    if end <= start:
        error(f"--end ({args.end.isoformat()}) must be after --start ({args.start.isoformat()})")
    return start, end


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    for ext, name in EXTENSIONS.items():
        if args.output.lower().endswith(ext):
            return name
    return "md"


def run(args: argparse.Namespace, clock: Callable[[], float] = time.time) -> int:
    start, end = _range(args)
    if (end - start) / args.step > MAX_STEPS:
        args.report_parser.error(f"{(end - start) / args.step:.0f} steps of {args.step:g}s: "
                                 f"at most {MAX_STEPS}; use a larger --step")
    client = PromClient(args.prometheus_url, timeout=args.timeout)
    try:
        # Long ranges take a while (a query per outage): say how far along we are, on stderr.
        progress = ((lambda line: print(f"lifeline report: {line}", file=sys.stderr, flush=True))
                    if end - start > 2 * 86400 else None)
        report = collect.build(client, start, end, args.step, args.timezone, args.selector, clock, progress)
    except ReportError as exc:
        print(f"lifeline report: {exc}", file=sys.stderr)
        return 1
    body = RENDERERS[_format(args)](report)
    try:
        if args.output == "-":
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
        else:
            with open(args.output, "wb") as fh:
                fh.write(body)
    except OSError as exc:
        print(f"lifeline report: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    if not report.has_data:
        print("lifeline report: no data in this range (the report says so)", file=sys.stderr)
    return 0
