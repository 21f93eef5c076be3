"""The ``maintenance:`` section: windows, their times and scope, checked with the config's Validator.

A window is one-off (``start`` and ``end``, each with a UTC offset) or recurring
(``schedule``: cron or RRULE, ``duration``, ``timezone``). Its scope is any of
``targets``, ``sites``, ``tiers``, ``categories`` and ``labels``: a target is covered
when it matches every kind of scope given and, within each, any listed value.
A window without scope would silence everything, so it needs ``all: true``.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from agent.maintenance import recurrence
from common.model import Target, Tier
from common.validate import Validator, parse_duration
from common.yamlsrc import Path

WINDOW_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")
SCOPE_KEYS = ("targets", "sites", "tiers", "categories", "labels")
WINDOW_KEYS = ("name", "start", "end", "schedule", "duration", "timezone", "all", *SCOPE_KEYS)
# A recurring window longer than this is a one-off in disguise; the bound also keeps the
# search for the occurrence covering "now" short.
MAX_DURATION = 31 * 86400.0
_EXAMPLE_TIME = "2026-12-01T02:00:00+08:00"


@dataclass(frozen=True)
class Scope:
    targets: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    labels: tuple[tuple[str, frozenset[str]], ...] = ()
    all: bool = False

    def covers(self, target: Target) -> bool:
        if self.all:
            return True
        if self.targets and target.name not in self.targets:
            return False
        if self.sites and target.site not in self.sites:
            return False
        if self.tiers and target.tier not in self.tiers:
            return False
        if self.categories and target.category not in self.categories:
            return False
        have = dict(target.labels)
        return all(have.get(name) in values for name, values in self.labels)


@dataclass(frozen=True)
class Window:
    name: str
    scope: Scope
    start: datetime | None = None  # one-off: aware times
    end: datetime | None = None
    schedule: str = ""  # recurring: the text as written, for messages and the CLI
    duration: float = 0.0
    timezone: str = ""
    source: str = ""  # FILE:LINE
    rule: recurrence.Recurrence | None = field(default=None, compare=False, repr=False)

    @property
    def recurring(self) -> bool:
        return self.rule is not None

    def zone(self) -> zoneinfo.ZoneInfo | timezone:
        if self.timezone:
            return zoneinfo.ZoneInfo(self.timezone)
        assert self.start is not None
        return self.start.tzinfo  # type: ignore[return-value]

    def starts_after(self, moment: datetime) -> Iterator[datetime]:
        """Occurrence starts (aware, UTC) after ``moment``, ascending."""
        if self.rule is None:
            assert self.start is not None
            if self.start > moment:
                yield self.start.astimezone(timezone.utc)
            return
        tz = zoneinfo.ZoneInfo(self.timezone)
        # From an hour early: local times repeat in an autumn change, so compare in UTC.
        for naive in self.rule.after(recurrence.local(moment, tz) - timedelta(hours=3)):
            start = recurrence.to_utc(naive, tz)
            if self.rule.until_utc is not None and start > self.rule.until_utc:
                return
            if start > moment:
                yield start

    def around(self, moment: datetime) -> tuple[tuple[datetime, datetime] | None, datetime | None]:
        """The occurrence covering ``moment`` (start, end) if any, and the next start after it."""
        if self.rule is None:
            assert self.start is not None and self.end is not None
            current = (self.start, self.end) if self.start <= moment < self.end else None
            return current, (self.start if self.start > moment else None)
        span = timedelta(seconds=self.duration)
        current = None
        nxt = None
        # The latest start not after `moment` is the one that covers it, if any does
        # (a later start of overlapping occurrences ends later too).
        for start in self.starts_after(moment - span - timedelta(seconds=1)):
            if start > moment:
                nxt = start
                break
            current = (start, start + span)
        if current is not None and moment >= current[1]:
            current = None
        return current, nxt


def parse_windows(v: Validator, raw: Any, path: Path, targets: Iterable[Target], tiers: Mapping[str, Tier],
                  check_targets: bool = True) -> tuple[Window, ...]:
    """Every window of ``raw``; errors go to ``v`` and leave the window out.

    ``check_targets`` is off when targets also come from fetched lists (targets_http):
    a name missing from the files may be in them.
    """
    if raw is None:
        return ()
    items = v.seq(path, raw)
    names = {t.name for t in targets} if check_targets else None
    out: list[Window] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items or []):
        window = _window(v, path + (i,), item, names, tiers)
        if window is None:
            continue
        if window.name in seen:
            v.error(path + (i, "name"), f"duplicate window name {window.name!r} (first defined at "
                                        f"{seen[window.name]})")
            continue
        seen[window.name] = window.source
        out.append(window)
    return tuple(out)


def _window(v: Validator, path: Path, raw: Any, targets: set[str] | None, tiers: Mapping[str, Tier]) -> Window | None:
    f = v.mapping(path, raw, WINDOW_KEYS, required=("name",))
    if f is None:
        return None
    before = len(v.errors)
    name = v.string(path + ("name",), f["name"], pattern=WINDOW_NAME_RE, max_len=128,
                    what="names start with a letter or digit and use letters, digits and ._:@/-") \
        if "name" in f else None
    times: dict[str, Any] = {}
    one_off = "start" in f or "end" in f
    if one_off and "schedule" in f:
        v.error(path + ("schedule",), "give either start and end (one-off) or schedule, duration and timezone "
                                      "(recurring), not both")
    elif one_off:
        times = _one_off(v, path, f)
    elif "schedule" in f:
        times = _recurring(v, path, f)
    else:
        v.error(path, "needs start and end (one-off) or schedule, duration and timezone (recurring)")
    scope = _scope(v, path, f, targets, tiers)
    if len(v.errors) != before or name is None:
        return None
    return Window(name=name, scope=scope, source=v.where(path + ("name",)), **times)


def _one_off(v: Validator, path: Path, f: dict[str, Any]) -> dict[str, Any]:
    for key in ("start", "end"):
        if key not in f:
            v.error(path, f"missing required key {key!r} (a one-off window has start and end)")
    for key in ("duration", "timezone"):
        if key in f:
            v.error(path + (key,), "only for a schedule; a one-off window has start and end, each with its UTC offset")
    start = _time(v, path + ("start",), f["start"]) if "start" in f else None
    end = _time(v, path + ("end",), f["end"]) if "end" in f else None
    if start is not None and end is not None and end <= start:
        v.error(path + ("end",), f"must be after start (got end {end.isoformat()}, start {start.isoformat()})")
    return {"start": start, "end": end}


def _time(v: Validator, path: Path, value: Any) -> datetime | None:
    """An RFC 3339 time with its UTC offset; YAML may already have made it a datetime."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            v.error(path, f"must be a time such as {_EXAMPLE_TIME} (got {value!r})")
            return None
    if isinstance(moment, datetime):
        if moment.tzinfo is None or moment.utcoffset() is None:
            v.error(path, f"needs a UTC offset, e.g. {_EXAMPLE_TIME} or ...Z for UTC (got {moment.isoformat()})")
            return None
        return moment
    if isinstance(moment, date):
        v.error(path, f"needs a time of day and a UTC offset, e.g. {_EXAMPLE_TIME} (got {moment.isoformat()})")
        return None
    v.error(path, f"must be a time such as {_EXAMPLE_TIME} (got {moment!r})")
    return None


def _recurring(v: Validator, path: Path, f: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    text = v.string(path + ("schedule",), f["schedule"])
    if text is not None:
        try:
            out["rule"] = recurrence.parse(text)
            out["schedule"] = text
        except ValueError as exc:
            what = "RRULE" if "FREQ=" in text.upper() else "cron expression"
            v.error(path + ("schedule",), f"invalid {what} {text!r}: {exc}")
    if "duration" not in f:
        v.error(path, "missing required key 'duration' (how long each occurrence lasts)")
    else:
        seconds = parse_duration(f["duration"])
        if seconds is None:
            v.duration(path + ("duration",), f["duration"])  # the usual message for a malformed duration
        elif not 0 < seconds <= MAX_DURATION:
            v.error(path + ("duration",), f"must be positive and at most 31d (got {f['duration']})")
        else:
            out["duration"] = seconds
    if "timezone" not in f:
        v.error(path, "missing required key 'timezone' (the schedule is wall-clock time there, e.g. Asia/Shanghai)")
    else:
        zone = _zone(v, path + ("timezone",), f["timezone"])
        if zone is not None:
            out["timezone"] = zone
    return out


def _zone(v: Validator, path: Path, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        v.error(path, f"must be an IANA time zone name such as Asia/Shanghai (got {value!r})")
        return None
    try:
        zoneinfo.ZoneInfo(value)
        return value
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (use an IANA name such as Asia/Shanghai)"
        v.error(path, f"unknown time zone {value!r}{hint}")
        return None


def _scope(v: Validator, path: Path, f: dict[str, Any], targets: set[str] | None, tiers: Mapping[str, Tier]) -> Scope:
    kinds = [key for key in SCOPE_KEYS if key in f]
    everything = f.get("all", False)
    if "all" in f and not isinstance(everything, bool):
        v.error(path + ("all",), f"must be true or false (got {everything!r})")
        return Scope()
    if everything and kinds:
        v.error(path + ("all",), f"all: true covers every target; drop {', '.join(kinds)} or all")
        return Scope()
    if everything:
        return Scope(all=True)
    if not kinds:
        v.error(path, "no scope: list targets, sites, tiers, categories or labels, or set all: true to cover "
                      "every target")
        return Scope()
    known = {"targets": targets, "tiers": set(tiers)}
    lists: dict[str, frozenset[str]] = {}
    for key in ("targets", "sites", "tiers", "categories"):
        if key in f:
            lists[key] = _names(v, path + (key,), f[key], known.get(key), key[:-1])
    labels: list[tuple[str, frozenset[str]]] = []
    if "labels" in f:
        raw = f["labels"]
        if not isinstance(raw, dict) or not raw:
            v.error(path + ("labels",), "must be a mapping of label name to a value or a list of values")
        else:
            for key, value in raw.items():
                values = value if isinstance(value, list) else [value]
                labels.append((str(key), _names(v, path + ("labels", key), values, None, "value")))
    return Scope(**lists, labels=tuple(sorted(labels)))


def _names(v: Validator, path: Path, raw: Any, known: set[str] | None, what: str) -> frozenset[str]:
    items = v.seq(path, raw)
    if items is None:
        return frozenset()
    if not items:
        v.error(path, "must list at least one value")
    out = set()
    for i, item in enumerate(items):
        text = v.label_value(path + (i,), item)
        if text is None:
            continue
        if known is not None and text not in known:
            shown = f"; defined tiers: {', '.join(sorted(known))}" if what == "tier" else ""
            v.error(path + (i,), f"unknown {what} {text!r}{shown}")
        out.add(text)
    return frozenset(out)
