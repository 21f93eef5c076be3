"""The report as JSON, CSV (one row per target, for Excel) and Markdown; shared value formatting."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime
from typing import Any

from agent.report.accounting import GroupAccount, Outage, TargetAccount
from agent.report.collect import INFO_LABELS, Report

NO_DATA_NOTE = ("No data: Prometheus holds no sample of lifeline_target_up in this range, "
                "so nothing can be said about availability.")
MAINTENANCE_NOTE = ("Time inside a maintenance window counts as maintenance, neither up nor down; "
                    "isolated time is 0 (probe-site isolation is not recorded yet).")


# ---------------------------------------------------------------- values

def iso(report: Report, ts: float) -> str:
    return datetime.fromtimestamp(ts, report.timezone).isoformat(timespec="seconds")


def local(report: Report, ts: float) -> str:
    return datetime.fromtimestamp(ts, report.timezone).strftime("%Y-%m-%d %H:%M:%S")


def utc_offset(report: Report) -> str:
    offset = datetime.fromtimestamp(report.start, report.timezone).strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"


def seconds(value: float) -> int | float:
    return int(round(value)) if abs(value - round(value)) < 1e-6 else round(value, 3)


def percent(availability: float | None, down_seconds: float = 0.0) -> str:
    """Availability as "97.902 %", truncated: any downtime never reads as 100.000 %."""
    if availability is None:
        return "no data"
    thousandths = math.floor(availability * 100_000 + 1e-6)
    if down_seconds > 0:
        thousandths = min(thousandths, 99_999)
    return f"{thousandths / 1000:.3f} %"


def human(value: float) -> str:
    """1800 -> "30m", 3900 -> "1h 05m", 150 -> "2m 30s"."""
    total = int(round(value))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours or (days and (minutes or secs)):
        parts.append(f"{hours}h")
    if minutes or (parts and secs):
        parts.append(f"{minutes:02d}m" if parts else f"{minutes}m")
    if secs or not parts:
        parts.append(f"{secs:02d}s" if parts else f"{secs}s")
    return " ".join(parts)


def status(availability: float | None, down_seconds: float, no_data_seconds: float) -> str:
    """A word for every state: the HTML colours it, but the word alone must be enough."""
    if availability is None:
        return "NO DATA"
    if down_seconds > 0:
        return "OUTAGES"
    return "OK (gaps)" if no_data_seconds > 0 else "OK"


def outage_note(outage: Outage) -> str:
    notes = []
    if outage.clipped_start:
        notes.append("began before the range")
    if outage.clipped_end:
        notes.append("still down when the range ended")
    return "; ".join(notes)


def notes(report: Report) -> list[str]:
    out = []
    if not report.has_data:
        out.append(NO_DATA_NOTE)
    if report.until < report.end:
        out.append(f"The range is not over: counted until {local(report, report.until)}; "
                   "later time is neither up, down nor no data.")
    out.append(MAINTENANCE_NOTE)
    return out


def outages(report: Report) -> list[tuple[TargetAccount, Outage]]:
    """Every outage with its target, in time order."""
    return sorted(((t, o) for t in report.targets for o in t.outages), key=lambda p: (p[1].start, p[0].target))


# ---------------------------------------------------------------- JSON

def _group(g: GroupAccount, key: str) -> dict[str, Any]:
    return {key: g.name, "targets": g.targets, "availability": g.availability,
            "up_seconds": seconds(g.up_seconds), "downtime_seconds": seconds(g.down_seconds),
            "no_data_seconds": seconds(g.no_data_seconds), "maintenance_seconds": seconds(g.maintenance_seconds),
            "outages": g.outages, "targets_with_outages": g.targets_with_outages}


def to_dict(report: Report) -> dict[str, Any]:
    def target(t: TargetAccount) -> dict[str, Any]:
        return {
            "target": t.target, "tier": t.tier, "site": t.site, "category": t.category,
            **{k: t.info.get(k, "") for k in INFO_LABELS},
            "labels": {k: v for k, v in sorted(t.info.items()) if k not in INFO_LABELS},
            "availability": t.availability,
            "up_seconds": seconds(t.up_seconds), "downtime_seconds": seconds(t.down_seconds),
            "no_data_seconds": seconds(t.no_data_seconds), "maintenance_seconds": seconds(t.maintenance_seconds),
            "isolated_seconds": seconds(t.isolated_seconds),
            "outages": [{"start": iso(report, o.start), "end": iso(report, o.end),
                         "duration_seconds": seconds(o.duration), "clipped_start": o.clipped_start,
                         "clipped_end": o.clipped_end, "probes": o.probes, "reasons": o.reasons}
                        for o in t.outages],
        }

    return {
        "start": iso(report, report.start), "end": iso(report, report.end),
        "counted_until": iso(report, report.until), "timezone": report.timezone.key,
        "generated_at": iso(report, report.generated_at), "step_seconds": seconds(report.step),
        "selector": report.selector, "has_data": report.has_data,
        "method": report.method, "notes": notes(report),
        "summary": _group(report.total, "scope"),
        "targets": [target(t) for t in report.targets],
        "sites": [_group(g, "site") for g in report.sites],
        "tiers": [_group(g, "tier") for g in report.tiers],
    }


def to_json(report: Report) -> bytes:
    return (json.dumps(to_dict(report), ensure_ascii=False, indent=2) + "\n").encode()


# ---------------------------------------------------------------- CSV

CSV_COLUMNS = ("target", "tier", "site", "category", *INFO_LABELS, "availability", "availability_percent",
               "up_seconds", "downtime_seconds", "no_data_seconds", "maintenance_seconds", "outages",
               "longest_outage_seconds", "outage_times", "status")


def to_csv(report: Report) -> bytes:
    """UTF-8 with a BOM, so Excel reads the Chinese site and target names right."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for t in report.targets:
        a = t.availability
        writer.writerow([
            t.target, t.tier, t.site, t.category, *(t.info.get(k, "") for k in INFO_LABELS),
            "" if a is None else f"{a:.6f}", "" if a is None else percent(a, t.down_seconds).removesuffix(" %"),
            seconds(t.up_seconds), seconds(t.down_seconds), seconds(t.no_data_seconds),
            seconds(t.maintenance_seconds), len(t.outages),
            seconds(max((o.duration for o in t.outages), default=0)),
            "; ".join(f"{local(report, o.start)} - {local(report, o.end)}" for o in t.outages),
            status(a, t.down_seconds, t.no_data_seconds),
        ])
    return buf.getvalue().encode("utf-8-sig")


# ---------------------------------------------------------------- Markdown

def _md_cell(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def group_rows(groups: list[GroupAccount]) -> list[list[str]]:
    return [[g.name or "(none)", str(g.targets), percent(g.availability, g.down_seconds), human(g.down_seconds),
             str(g.outages), human(g.no_data_seconds), status(g.availability, g.down_seconds, g.no_data_seconds)]
            for g in groups]


GROUP_HEAD = ["Targets", "Availability", "Downtime", "Outages", "No data", "Status"]
TARGET_HEAD = ["Target", "Tier", "Site", "Category", "Circuit", "Carrier", "Availability", "Downtime",
               "Outages", "No data", "Status"]
OUTAGE_HEAD = ["Target", "Tier", "Site", "Start", "End", "Duration", "Probes", "Reasons", "Note"]


def target_rows(report: Report) -> list[list[str]]:
    return [[t.target, t.tier, t.site, t.category, t.info.get("circuit_id", ""), t.info.get("carrier", ""),
             percent(t.availability, t.down_seconds), human(t.down_seconds), str(len(t.outages)),
             human(t.no_data_seconds), status(t.availability, t.down_seconds, t.no_data_seconds)]
            for t in report.targets]


def outage_rows(report: Report) -> list[list[str]]:
    return [[t.target, t.tier, t.site, local(report, o.start), local(report, o.end), human(o.duration),
             ", ".join(o.probes) or "-", ", ".join(o.reasons) or "-", outage_note(o)]
            for t, o in outages(report)]


def headline(report: Report) -> str:
    whole = report.total
    if not report.has_data:
        return NO_DATA_NOTE
    return (f"{percent(whole.availability, whole.down_seconds)} available over {plural(whole.targets, 'target')}: "
            f"{plural(whole.outages, 'outage')} on {plural(whole.targets_with_outages, 'target')}, "
            f"downtime {human(whole.down_seconds)}, no data {human(whole.no_data_seconds)}.")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def title(report: Report) -> str:
    return (f"Lifeline availability report, {local(report, report.start)} to {local(report, report.end)} "
            f"({report.timezone.key}, {utc_offset(report)})")


def to_markdown(report: Report) -> bytes:
    lines = [f"# {title(report)}", "", f"Generated {local(report, report.generated_at)}.", "",
             f"**{headline(report)}**", ""]
    lines += [f"> {n}" for n in notes(report)] + [""]
    lines += ["## Sites (worst first)", ""] + _md_table(["Site", *GROUP_HEAD], group_rows(report.sites))
    lines += ["## Tiers (worst first)", ""] + _md_table(["Tier", *GROUP_HEAD], group_rows(report.tiers))
    lines += ["## Targets (P0 and P1 first)", ""] + _md_table(TARGET_HEAD, target_rows(report))
    rows = outage_rows(report)
    lines += ["## Outages", ""] + (_md_table(OUTAGE_HEAD, rows) if rows else ["None.", ""])
    lines += ["## Method", "", report.method, ""]
    return "\n".join(lines).encode()
