"""Recurring schedules: 5-field cron and RFC 5545 RRULE, as wall-clock starts in a time zone.

Both yield naive local times; ``to_utc`` places them in the window's zone. A start
that falls in a spring-forward gap (02:30 on the day Berlin skips 02:00-03:00)
happens at the same distance after the gap's start (03:30 summer time), and one in
the repeated hour of an autumn change happens at its first occurrence: zoneinfo's
``fold=0``, which is what cron daemons do too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

# RRULEs repeat from a fixed anchor, so INTERVAL=2 means the same weeks in every
# agent and after every reload: Monday 2020-01-06 00:00 local time.
RRULE_ANCHOR = datetime(2020, 1, 6)
RRULE_FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
# 28 years hold every combination of weekday, date and leap year: a cron expression
# with no start in them never has one.
_CRON_HORIZON_DAYS = 28 * 366
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                       "NOV", "DEC"), start=1)}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_CRON_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))


class Recurrence(Protocol):
    until_utc: datetime | None  # starts after it do not happen

    def after(self, naive: datetime) -> Iterator[datetime]:
        """Local starts strictly after ``naive``, ascending."""
        ...


def parse(text: str) -> Recurrence:
    """A cron expression or an RRULE (recognised by FREQ=); ValueError with the reason otherwise."""
    if "FREQ=" in text.upper():
        return RRule(text)
    return Cron(text)


def to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    return naive.replace(tzinfo=tz).astimezone(timezone.utc)


def local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


class Cron:
    """minute hour day-of-month month day-of-week, with lists, ranges, steps and JAN/SAT names.

    As in Vixie cron, when both day fields are restricted a day matching either counts.
    """

    until_utc = None

    def __init__(self, text: str) -> None:
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
                             f"got {len(fields)}")
        values = [_cron_field(f, *spec) for f, spec in zip(fields, _CRON_FIELDS)]
        self.minutes, self.hours = sorted(values[0]), sorted(values[1])
        self.days, self.months = values[2], values[3]
        self.weekdays = {d % 7 for d in values[4]}  # 7 is Sunday too
        self.either_day = not fields[2].startswith("*") and not fields[4].startswith("*")
        if next(self.after(datetime(2000, 1, 1)), None) is None:
            raise ValueError("it never matches a real date")

    def _day(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom, dow = d.day in self.days, d.isoweekday() % 7 in self.weekdays
        return (dom or dow) if self.either_day else (dom and dow)

    def after(self, naive: datetime) -> Iterator[datetime]:
        day = naive.date()
        for _ in range(_CRON_HORIZON_DAYS):
            if self._day(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        start = datetime.combine(day, time(hour, minute))
                        if start > naive:
                            yield start
            day += timedelta(days=1)


def _cron_field(text: str, name: str, lo: int, hi: int, names: dict[str, int]) -> set[int]:
    def number(token: str) -> int:
        value = names.get(token.upper())
        if value is None:
            if not token.isdigit():
                raise ValueError(f"{name}: not a number{' or name' if names else ''}: {token!r}")
            value = int(token)
        if not lo <= value <= hi:
            raise ValueError(f"{name}: {value} is outside {lo}-{hi}")
        return value

    out: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{name}: step must be a positive number: {part!r}")
            step = int(step_text)
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = number(a), number(b)
            if first > last:
                raise ValueError(f"{name}: range runs backwards: {base!r}")
        else:
            first = number(base)
            last = hi if step_text else first
        out.update(range(first, last + 1, step))
    return out


class RRule:
    """One RFC 5545 RRULE line (FREQ=WEEKLY;BYDAY=SA;BYHOUR=2), optionally prefixed "RRULE:".

    Times the rule leaves open (BYMINUTE, BYSECOND) are 0, from the anchor. COUNT is
    refused: counted from a fixed anchor in 2020 it would run out unnoticed; UNTIL
    (a local time, or UTC with Z) ends a series instead.
    """

    def __init__(self, text: str) -> None:
        body = text.strip()
        if body.upper().startswith("RRULE:"):
            body = body[len("RRULE:"):]
        if "\n" in body or ":" in body:
            raise ValueError("give one RRULE line only (no DTSTART, EXDATE or other properties)")
        parts = {}
        for item in body.upper().split(";"):
            key, eq, value = item.partition("=")
            if not eq or not value:
                raise ValueError(f"expected NAME=VALUE, got {item!r}")
            parts[key] = value
        if parts.get("FREQ") not in RRULE_FREQS:
            raise ValueError(f"FREQ must be one of {', '.join(RRULE_FREQS)} (got {parts.get('FREQ')!r})")
        if "COUNT" in parts:
            raise ValueError("COUNT is not supported (the rule repeats from a fixed 2020 anchor); use UNTIL")
        self.until_utc: datetime | None = None
        if parts.get("UNTIL", "").endswith("Z"):
            # dateutil wants UNTIL naive like the anchor; a UTC end is applied after placing starts in the zone.
            try:
                self.until_utc = datetime.strptime(parts["UNTIL"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            except ValueError:
                raise ValueError(f"UNTIL must look like 20261231T000000Z (got {parts['UNTIL']!r})") from None
            body = ";".join(i for i in body.split(";") if not i.upper().startswith("UNTIL="))
        try:
            self.rule = rrulestr(body, dtstart=RRULE_ANCHOR, cache=True)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(str(exc) or type(exc).__name__) from None
        if self.rule.after(RRULE_ANCHOR, inc=True) is None:
            raise ValueError("it has no occurrence")

    def after(self, naive: datetime) -> Iterator[datetime]:
        return self.rule.xafter(naive, inc=False)
