"""The ``maintenance:`` section: windows, their times and scope, checked with the config's Validator.

A window is one-off (``start`` and ``end``, each with a UTC offset) or recurring
(``schedule``: cron or RRULE, ``duration``, ``timezone``). Its scope is the ``match``
mapping: ``targets`` (names), ``site``, ``tier``, ``category`` (a value or a list) and
``labels`` (name to a value or a list): a target is covered when it matches every key
given and, within each, any listed value. A window without ``match`` would silence
everything and is an error; one whose match covers no target is only a warning.
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
from common.validate import ConfigError, Validator, parse_duration
from common.yamlsrc import Path

WINDOW_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")
MATCH_KEYS = ("targets", "site", "tier", "category", "labels")
WINDOW_KEYS = ("name", "match", "start", "end", "schedule", "duration", "timezone")
_MISPLACED: dict[str, Any] = {}  # stands in for a match whose keys were written beside it
_SCOPE_OUTSIDE_MATCH = frozenset({"targets", "target", "site", "sites", "tier", "tiers", "category", "categories",
                                  "labels", "all"})
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

    def covers(self, target: Target) -> bool:
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
    source: str = ""  # FILE:LINE of its name
    file: str = ""  # where its match is, for the "matches no target" warning
    line: int = 0
    index: int = 0  # position in the maintenance list
    named: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)  # match.targets, line each
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


def parse_windows(v: Validator, raw: Any, path: Path, tiers: Mapping[str, Tier]) -> tuple[Window, ...]:
    """Every window of ``raw``; errors go to ``v`` and leave the window out.

    Target names are not checked here: a window may be written before its targets exist
    (or arrive from targets_http lists); ``unmatched`` warns about them instead.
    """
    if raw is None:
        return ()
    items = v.seq(path, raw)
    out: list[Window] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items or []):
        window = _window(v, path + (i,), item, tiers)
        if window is None:
            continue
        if window.name in seen:
            v.error(path + (i, "name"), f"duplicate window name {window.name!r} (first defined at "
                                        f"{seen[window.name]})")
            continue
        seen[window.name] = window.source
        out.append(window)
    return tuple(out)


def _window(v: Validator, path: Path, raw: Any, tiers: Mapping[str, Tier]) -> Window | None:
    before = len(v.errors)
    if isinstance(raw, dict):
        misplaced = [key for key in raw if key in _SCOPE_OUTSIDE_MATCH]
        for key in misplaced:
            v.error(path + (key,), f"the scope goes under match (keys: {', '.join(MATCH_KEYS)}), "
                                   "e.g. match: {site: dinghai}")
        if misplaced and "match" not in raw:
            raw = {**{k: x for k, x in raw.items() if k not in misplaced}, "match": _MISPLACED}  # said above
        else:
            raw = {k: x for k, x in raw.items() if k not in misplaced}
    f = v.mapping(path, raw, WINDOW_KEYS, required=("name",))
    if f is None:
        return None
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
    scope = _scope(v, path, f, tiers)
    if len(v.errors) != before or name is None:
        return None
    at = path + ("match",)
    named = tuple((str(n), v.doc.line(at + ("targets", i))) for i, n in enumerate(f["match"].get("targets") or ()))
    return Window(name=name, scope=scope, source=v.where(path + ("name",)), file=v.doc.file, line=v.doc.line(at),
                  index=int(path[-1]), named=named, **times)


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


def _scope(v: Validator, path: Path, f: dict[str, Any], tiers: Mapping[str, Tier]) -> Scope:
    if "match" not in f:
        v.error(path, "missing required key 'match' (a window without one would cover every target); "
                      "e.g. match: {site: dinghai}")
        return Scope()
    path = path + ("match",)
    m = v.mapping(path, f["match"], MATCH_KEYS)
    if m is None:
        return Scope()
    if not m:
        if f["match"] is not _MISPLACED:
            v.error(path, f"must give at least one of {', '.join(MATCH_KEYS)} (an empty match would cover every "
                          "target)")
        return Scope()
    lists: dict[str, frozenset[str]] = {}
    if "targets" in m:
        # A name missing from the inventory is only a warning (see unmatched): the window can be
        # written before the target exists, and a target leaving must not break reloads.
        items = v.seq(path + ("targets",), m["targets"])
        lists["targets"] = _names(v, path + ("targets",), items, None, "target") if items is not None \
            else frozenset()
    for key, field_name in (("site", "sites"), ("tier", "tiers"), ("category", "categories")):
        if key in m:
            lists[field_name] = _names(v, path + (key,), m[key], set(tiers) if key == "tier" else None, key)
    labels: list[tuple[str, frozenset[str]]] = []
    if "labels" in m:
        raw = m["labels"]
        if not isinstance(raw, dict) or not raw:
            v.error(path + ("labels",), "must be a mapping of label name to a value or a list of values")
        else:
            for key, value in raw.items():
                labels.append((str(key), _names(v, path + ("labels", key), value, None, "value")))
    return Scope(**lists, labels=tuple(sorted(labels)))


def unmatched(windows: Iterable[Window], targets: Iterable[Target]) -> list[ConfigError]:
    """Warnings, not errors (the config still loads): a window whose match covers no target, and a
    name in match.targets that is no target (a typo would leave that target paging)."""
    targets = tuple(targets)
    names = {t.name for t in targets}
    out = []
    for w in windows:
        if not any(w.scope.covers(t) for t in targets):
            out.append(ConfigError(w.file, w.line, f"maintenance[{w.index}].match", "warning: matches no target"))
        for i, (name, line) in enumerate(w.named):
            if name not in names:
                out.append(ConfigError(w.file, line, f"maintenance[{w.index}].match.targets[{i}]",
                                       f"warning: unknown target {name!r}"))
    return out


def _names(v: Validator, path: Path, raw: Any, known: set[str] | None, what: str) -> frozenset[str]:
    """One value or a list of them (any matches)."""
    items = [(path + (i,), item) for i, item in enumerate(raw)] if isinstance(raw, list) else [(path, raw)]
    if not items:
        v.error(path, "must list at least one value")
    out = set()
    for at, item in items:
        text = v.label_value(at, item)
        if text is None:
            continue
        if known is not None and text not in known:
            shown = f"; defined tiers: {', '.join(sorted(known))}" if what == "tier" else ""
            v.error(at, f"unknown {what} {text!r}{shown}")
        out.add(text)
    return frozenset(out)
