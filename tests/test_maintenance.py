"""Maintenance windows: parsing and scope, next starts across time zones, the exported series from a
real agent (reload included), the status note and ``lifeline maintenance``.

The bad-config cases (one file each, exact messages) are tests/configs/bad/maintenance_*.yaml,
run by tests/test_config.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent import config as config_mod
from agent.cli import main
from agent.maintenance import recurrence
from agent.maintenance.calendar import Calendar
from agent.maintenance.model import Scope, parse_windows
from agent.status import StatusBoard
from agent.suppression import SUPPRESSED_FAMILY
from common.errors import ConfigInvalid
from common.validate import Validator
from common.yamlsrc import parse
from probes.icmp.result import IcmpResult
from tests import kit
from tests.helpers import ROOT, http_get, http_post, value, wait_for

TARGETS = """targets:
  - {name: putuo-hospital-fever-clinic, address: 127.0.0.1, tier: P0, category: hospital, site: putuo}
  - {name: dinghai-telecom, address: 127.0.0.2, tier: P1, site: dinghai, labels: {carrier: telecom}}
  - {name: dinghai-unicom, address: 127.0.0.3, tier: P1, site: dinghai, labels: {carrier: unicom}}
  - {name: shenjiamen-cam, address: 127.0.0.4, tier: P3, category: camera, site: shenjiamen}
"""

EXAMPLE = TARGETS + """maintenance:
  - name: carrier-cutover-0215
    match: {targets: [putuo-hospital-fever-clinic]}
    start: 2026-12-01T02:00:00+08:00
    end: 2026-12-01T04:00:00+08:00
  - name: weekly-core-maintenance
    match: {site: dinghai, labels: {carrier: telecom}}
    schedule: "0 2 * * SAT"
    duration: 2h
    timezone: Asia/Shanghai
  - name: monthly-berlin
    match: {tier: [P1, P3]}
    schedule: "FREQ=MONTHLY;BYDAY=1SU;BYHOUR=3;BYMINUTE=30"
    duration: 90m
    timezone: Europe/Berlin
"""

# The issue's example, verbatim.
ISSUE_EXAMPLE = """targets:
  - {name: dinghai-telecom, address: 127.0.0.2, tier: P1, site: dinghai}
  - {name: cam-1, address: 127.0.0.5, tier: P3, category: checkpoint, site: daishan}
  - {name: hosp-1, address: 127.0.0.6, tier: P0, category: hospital, site: putuo}
maintenance:
  - name: dinghai-cutover
    match: {site: dinghai}
    start: "2026-11-23T02:00:00+08:00"
    end: "2026-11-23T04:00:00+08:00"
  - name: camera-weekly-reboot
    match: {category: checkpoint}
    schedule: "FREQ=WEEKLY;BYDAY=TU;BYHOUR=2;BYMINUTE=0"   # RFC 5545 RRULE (keep cron support too)
    duration: 30m
    timezone: Asia/Shanghai
"""



def _metrics(cal: Calendar, now: float) -> str:
    """What the exposition writes for the calendar: its families and the suppressed lines."""
    return (cal.render(now) + SUPPRESSED_FAMILY.header + cal.suppressed_lines(now)).decode()

def _load(tmp_path: Path, text: str) -> config_mod.Config:
    path = tmp_path / "lifeline.yaml"
    path.write_text(text)
    return config_mod.load(str(path))


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _utc(moments) -> list[str]:
    return [m.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ") for m in moments]


def _starts(window, after: str, n: int) -> list[str]:
    out = []
    for start in window.starts_after(_t(after)):
        out.append(start)
        if len(out) == n:
            break
    return _utc(out)


# --- parsing and scope -----------------------------------------------------------------------------

def test_example_parses_with_scope_and_times(tmp_path):
    cfg = _load(tmp_path, EXAMPLE)
    cutover, weekly, monthly = cfg.maintenance
    assert (cutover.name, cutover.start, cutover.end, cutover.recurring) == (
        "carrier-cutover-0215", _t("2026-12-01T02:00:00+08:00"), _t("2026-12-01T04:00:00+08:00"), False)
    assert (weekly.schedule, weekly.duration, weekly.timezone, weekly.recurring) == (
        "0 2 * * SAT", 7200.0, "Asia/Shanghai", True)
    assert weekly.source == f"{tmp_path / 'lifeline.yaml'}:11"
    covered = Calendar()
    covered.apply(cfg.maintenance, cfg.targets)
    # AND across keys of match (site dinghai and carrier telecom), OR within a list (P1 or P3).
    assert covered.coverage() == {
        "carrier-cutover-0215": ("putuo-hospital-fever-clinic",),
        "weekly-core-maintenance": ("dinghai-telecom",),
        "monthly-berlin": ("dinghai-telecom", "dinghai-unicom", "shenjiamen-cam"),
    }


def test_issue_example(tmp_path):
    cfg = _load(tmp_path, ISSUE_EXAMPLE)
    cal = Calendar()
    cal.apply(cfg.maintenance, cfg.targets)
    assert cal.coverage() == {"dinghai-cutover": ("dinghai-telecom",), "camera-weekly-reboot": ("cam-1",)}
    reboot = cfg.maintenance[1]
    # Tuesdays 02:00 Shanghai = Monday 18:00Z, for 30 minutes.
    assert _starts(reboot, "2026-11-23T00:00:00+00:00", 2) == ["2026-11-23T18:00Z", "2026-11-30T18:00Z"]
    text = _metrics(cal, _t("2026-11-24T02:15:00+08:00").timestamp())
    assert value(text, "lifeline_maintenance_active", target="cam-1", tier="P3") == 1
    assert value(text, "lifeline_maintenance_active", target="dinghai-telecom", tier="P1") == 0
    assert value(text, "lifeline_target_suppressed", target="cam-1", tier="P3", cause="maintenance") == 1
    assert value(text, "lifeline_target_suppressed", target="dinghai-telecom") is None
    # hosp-1 is under no window: no series at all.
    assert "hosp-1" not in text


def test_series_carry_the_vantage_label_the_consensus_rules_select_on(tmp_path):
    # lifeline.consensus reads lifeline_target_suppressed{vantage!=""}: a vantage agent's
    # maintenance lines must carry its vantage, or its targets would page inside a window.
    cfg = _load(tmp_path, ISSUE_EXAMPLE)
    cal = Calendar()
    cal.apply(cfg.maintenance, cfg.targets, (("vantage", "putuo"),))
    text = _metrics(cal, _t("2026-11-24T02:15:00+08:00").timestamp())
    assert value(text, "lifeline_target_suppressed", target="cam-1", vantage="putuo", cause="maintenance") == 1
    assert value(text, "lifeline_maintenance_active", target="cam-1", vantage="putuo") == 1


def test_match_values_lists_and_labels(tmp_path):
    cfg = _load(tmp_path, TARGETS + """maintenance:
  - name: w
    match: {site: [dinghai, shenjiamen], tier: P1, labels: {carrier: [telecom, mobile]}}
    start: 2026-12-01T02:00:00Z
    end: 2026-12-01T03:00:00Z
""")
    assert cfg.maintenance[0].scope == Scope(sites=frozenset({"dinghai", "shenjiamen"}), tiers=frozenset({"P1"}),
                                             labels=(("carrier", frozenset({"telecom", "mobile"})),))
    cal = Calendar()
    cal.apply(cfg.maintenance, cfg.targets)
    assert cal.coverage() == {"w": ("dinghai-telecom",)}


def test_times_may_be_quoted_strings_or_utc(tmp_path):
    cfg = _load(tmp_path, TARGETS + """maintenance:
  - {name: w, start: "2026-12-01T02:00:00Z", end: "2026-12-01 14:00:00+08:00", match: {site: putuo}}
""")
    assert cfg.maintenance[0].start == _t("2026-12-01T02:00:00+00:00")
    assert cfg.maintenance[0].scope == Scope(sites=frozenset({"putuo"}))


def test_a_match_covering_no_target_is_a_warning(tmp_path, capsys):
    path = tmp_path / "lifeline.yaml"
    path.write_text(TARGETS + """maintenance:
  - name: future-site
    match: {site: zhujiajian}
    start: 2026-12-01T02:00:00Z
    end: 2026-12-01T03:00:00Z
  - name: typo
    match:
      targets: [dinghai-telecom, dinghai-unicm]
    start: 2026-12-01T02:00:00Z
    end: 2026-12-01T03:00:00Z
""")
    cfg = config_mod.load(str(path))  # loads: warnings are no errors
    assert [w.name for w in cfg.maintenance] == ["future-site", "typo"]
    assert [str(w) for w in config_mod.warnings(cfg)] == [
        f"{path}:8: maintenance[0].match: warning: matches no target",
        f"{path}:13: maintenance[1].match.targets[1]: warning: unknown target 'dinghai-unicm'"]
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"{path}:8: maintenance[0].match: warning: matches no target\n"
        f"{path}:13: maintenance[1].match.targets[1]: warning: unknown target 'dinghai-unicm'\n"
        f"{path}: OK (4 targets; P0: 1, P1: 2, P3: 1)\n")


@pytest.mark.parametrize(("window", "message"), [
    ("{name: w, start: 2026-12-01T02:00:00Z, end: 2026-12-01T03:00:00Z, match: {labels: {carrier: []}}}",
     "maintenance[0].match.labels.carrier: must list at least one value"),
    ("{name: w, start: 2026-12-01T02:00:00Z, end: 2026-12-01T03:00:00Z, match: {site: []}}",
     "maintenance[0].match.site: must list at least one value"),
    ("{name: w, start: 2026-12-01T02:00:00Z, end: 2026-12-01T03:00:00Z, timezone: UTC, match: {site: putuo}}",
     "maintenance[0].timezone: only for a schedule; a one-off window has start and end, each with its UTC offset"),
    ("{name: w, start: 2026-12-01, end: 2026-12-02T00:00:00Z, match: {site: putuo}}",
     "maintenance[0].start: needs a time of day and a UTC offset, e.g. 2026-12-01T02:00:00+08:00 (got 2026-12-01)"),
    ("{name: w, start: 2026-12-01T02:00:00Z, match: {site: putuo}}",
     "maintenance[0]: missing required key 'end' (a one-off window has start and end)"),
    ("{name: w, schedule: '0 2 * * SAT', duration: 2h, match: {site: putuo}}",
     "maintenance[0]: missing required key 'timezone' (the schedule is wall-clock time there, e.g. Asia/Shanghai)"),
    ("{name: w, schedule: 'FREQ=WEEKLY;COUNT=4', duration: 2h, timezone: UTC, match: {site: putuo}}",
     "maintenance[0].schedule: invalid RRULE 'FREQ=WEEKLY;COUNT=4': COUNT is not supported (the rule repeats "
     "from a fixed 2020 anchor); use UNTIL"),
    ("{name: w, schedule: '0 0 30 2 *', duration: 2h, timezone: UTC, match: {site: putuo}}",
     "maintenance[0].schedule: invalid cron expression '0 0 30 2 *': it never matches a real date"),
    ("{name: w, schedule: '0 2 * * SAT', duration: 32d, timezone: UTC, match: {site: putuo}}",
     "maintenance[0].duration: must be positive and at most 31d (got 32d)"),
    ("{name: w, match: {site: putuo}}",
     "maintenance[0]: needs start and end (one-off) or schedule, duration and timezone (recurring)"),
], ids=["empty-label-list", "empty-list", "timezone-on-one-off", "date-only", "no-end", "no-timezone", "rrule-count",
        "cron-never", "duration-too-long", "no-times"])
def test_more_validation_messages(tmp_path, window, message):
    path = tmp_path / "lifeline.yaml"
    path.write_text(TARGETS + "maintenance:\n  - " + window + "\n")
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(str(path))
    errors = [str(e) for e in exc.value.errors]
    assert f"{path}:7: {message}" in errors, errors


# --- next starts across zones ------------------------------------------------------------------------

def _window(tmp_path, schedule: str, zone: str, duration: str = "2h"):
    cfg = _load(tmp_path, TARGETS + f"maintenance:\n  - {{name: w, schedule: '{schedule}', duration: {duration}, "
                                    f"timezone: {zone}, match: {{site: putuo}}}}\n")
    return cfg.maintenance[0]


@pytest.mark.parametrize("schedule", ["0 2 * * SAT", "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2"], ids=["cron", "rrule"])
def test_shanghai_has_no_dst_so_utc_starts_never_move(tmp_path, schedule):
    window = _window(tmp_path, schedule, "Asia/Shanghai")
    # Across the dates Europe and America change clocks: always Friday 18:00 UTC.
    assert _starts(window, "2027-03-20T00:00:00+00:00", 3) == [
        "2027-03-26T18:00Z", "2027-04-02T18:00Z", "2027-04-09T18:00Z"]
    assert _starts(window, "2026-10-20T00:00:00+00:00", 3) == [
        "2026-10-23T18:00Z", "2026-10-30T18:00Z", "2026-11-06T18:00Z"]


@pytest.mark.parametrize("schedule", ["0 2 * * SAT", "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2"], ids=["cron", "rrule"])
def test_berlin_starts_follow_summer_time(tmp_path, schedule):
    window = _window(tmp_path, schedule, "Europe/Berlin")
    # Summer time starts on Sunday 2027-03-28: 02:00 local is 01:00Z before, 00:00Z after.
    assert _starts(window, "2027-03-15T00:00:00+00:00", 3) == [
        "2027-03-20T01:00Z", "2027-03-27T01:00Z", "2027-04-03T00:00Z"]
    # And ends on Sunday 2026-10-25.
    assert _starts(window, "2026-10-15T00:00:00+00:00", 3) == [
        "2026-10-17T00:00Z", "2026-10-24T00:00Z", "2026-10-31T01:00Z"]


@pytest.mark.parametrize("schedule", ["30 2 * * SUN", "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=30"],
                         ids=["cron", "rrule"])
def test_berlin_start_in_the_skipped_and_the_repeated_hour(tmp_path, schedule):
    window = _window(tmp_path, schedule, "Europe/Berlin", duration="1h")
    # 02:30 does not exist on 2027-03-28: it starts at 03:30 summer time (01:30Z), an hour of
    # local time later than the gap's start, like cron.
    assert _starts(window, "2027-03-27T00:00:00+00:00", 2) == ["2027-03-28T01:30Z", "2027-04-04T00:30Z"]
    # 02:30 happens twice on 2026-10-25: the first one (summer time, 00:30Z) counts, once.
    assert _starts(window, "2026-10-24T00:00:00+00:00", 2) == ["2026-10-25T00:30Z", "2026-11-01T01:30Z"]
    current, nxt = window.around(_t("2026-10-25T01:15:00+00:00"))
    assert _utc(current) == ["2026-10-25T00:30Z", "2026-10-25T01:30Z"] and _utc([nxt]) == ["2026-11-01T01:30Z"]


def test_rrule_until_in_utc_ends_the_series(tmp_path):
    window = _window(tmp_path, "FREQ=DAILY;BYHOUR=23;UNTIL=20261203T150000Z", "Asia/Shanghai", duration="1h")
    # 23:00 Shanghai is 15:00Z: the start at exactly UNTIL is the last one.
    assert _starts(window, "2026-12-01T00:00:00+00:00", 5) == [
        "2026-12-01T15:00Z", "2026-12-02T15:00Z", "2026-12-03T15:00Z"]


def test_cron_fields():
    cron = recurrence.Cron("*/20 1-2 1,15 * MON")  # day-of-month OR day-of-week, as in cron
    starts = cron.after(datetime(2026, 12, 6, 23, 0))
    assert [next(starts).isoformat() for _ in range(7)] == [
        "2026-12-07T01:00:00", "2026-12-07T01:20:00", "2026-12-07T01:40:00", "2026-12-07T02:00:00",
        "2026-12-07T02:20:00", "2026-12-07T02:40:00", "2026-12-14T01:00:00"]
    assert next(recurrence.Cron("0 0 1 JAN *").after(datetime(2026, 6, 1))).isoformat() == "2027-01-01T00:00:00"
    assert next(recurrence.Cron("0 3 * * 7").after(datetime(2026, 12, 1))).isoformat() == "2026-12-06T03:00:00"


# --- activity, calendar, status -------------------------------------------------------------------

def test_one_off_is_active_from_start_to_just_before_end(tmp_path):
    cfg = _load(tmp_path, EXAMPLE)
    cutover = cfg.maintenance[0]
    assert cutover.around(_t("2026-12-01T01:59:59+08:00")) == (None, cutover.start)
    assert cutover.around(_t("2026-12-01T02:00:00+08:00")) == ((cutover.start, cutover.end), None)
    assert cutover.around(_t("2026-12-01T04:00:00+08:00")) == (None, None)


def test_calendar_series_and_notes(tmp_path):
    cfg = _load(tmp_path, EXAMPLE)
    cal = Calendar()
    cal.apply(cfg.maintenance, cfg.targets)
    # Saturday 2026-12-05 02:30 Shanghai: the weekly window is on, the cutover long over.
    now = _t("2026-12-05T02:30:00+08:00").timestamp()
    text = _metrics(cal, now)
    assert value(text, "lifeline_maintenance_active", target="dinghai-telecom", tier="P1") == 1
    assert value(text, "lifeline_maintenance_active", target="dinghai-unicom") == 0
    assert value(text, "lifeline_maintenance_active", target="putuo-hospital-fever-clinic") == 0
    # Present only while suppressed, like ALERTS.
    assert value(text, "lifeline_target_suppressed", target="dinghai-telecom", tier="P1", cause="maintenance") == 1
    assert text.count("lifeline_target_suppressed{") == 1
    assert [value(text, "lifeline_maintenance_window_info", window=w.name) for w in cfg.maintenance] == [1, 1, 1]
    assert value(text, "lifeline_maintenance_window_active", window="weekly-core-maintenance") == 1
    assert value(text, "lifeline_maintenance_window_active", window="carrier-cutover-0215") == 0
    assert value(text, "lifeline_maintenance_window_targets", window="monthly-berlin") == 3
    assert value(text, "lifeline_maintenance_window_next_start_timestamp_seconds",
                 window="weekly-core-maintenance") == _t("2026-12-12T02:00:00+08:00").timestamp()
    assert value(text, "lifeline_maintenance_window_next_start_timestamp_seconds",
                 window="carrier-cutover-0215") is None
    assert cal.notes(now) == {"dinghai-telecom": "weekly-core-maintenance"}
    # Sunday 2026-12-06 03:45 Berlin: the monthly window (first Sunday) covers three targets.
    now = _t("2026-12-06T03:45:00+01:00").timestamp()
    assert cal.notes(now) == dict.fromkeys(("dinghai-telecom", "dinghai-unicom", "shenjiamen-cam"),
                                           "monthly-berlin")
    # The end is exclusive: at 04:00 Shanghai the weekly window is over.
    text = _metrics(cal, _t("2026-12-05T04:00:00+08:00").timestamp())
    assert value(text, "lifeline_maintenance_active", target="dinghai-telecom") == 0
    assert "lifeline_target_suppressed{" not in text


def test_series_only_for_targets_under_a_window():
    under = kit.target("under", "P0", site="putuo")
    other = kit.target("other", "P1", site="dinghai")
    doc = parse("- {name: w, start: 2026-12-01T02:00:00Z, end: 2026-12-01T04:00:00Z, match: {site: putuo}}\n", "x")
    cal = Calendar()
    cal.apply(parse_windows(Validator(doc), doc.data, (), kit.StoreKit(under, other).store.tiers), [under, other])
    for at, active in (("2026-12-01T01:00:00Z", 0), ("2026-12-01T03:00:00Z", 1)):
        text = _metrics(cal, _t(at).timestamp())
        assert value(text, "lifeline_maintenance_active", target="under", tier="P0") == active
        assert value(text, "lifeline_target_suppressed", target="under", tier="P0",
                     cause="maintenance") == (1 if active else None)
        assert 'target="other"' not in text


def test_no_windows_no_series(tmp_path):
    cfg = _load(tmp_path, TARGETS)
    cal = Calendar()
    cal.apply(cfg.maintenance, cfg.targets)
    assert cal.render(0.0) == b""  # agents without windows scrape as before (tests/golden/series.txt)


def test_status_row_carries_the_window_and_keeps_the_state():
    hosp = kit.target("hospital", "P0", site="putuo")
    cam = kit.target("camera", "P3", site="putuo")
    store = kit.StoreKit(hosp, cam, clock=lambda: 1000.0)
    store.record(hosp, "icmp", IcmpResult(ok=False, reason="timeout", sent=5))
    store.record(cam, "icmp", IcmpResult(ok=True, sent=5, rtts=(0.001,) * 5))
    doc = parse("- {name: cutover, start: 2026-12-01T02:00:00Z, end: 2026-12-01T04:00:00Z, match: {site: putuo}}\n",
                "x")
    windows = parse_windows(Validator(doc), doc.data, (), store.store.tiers)
    cal = Calendar()
    cal.apply(windows, [hosp, cam])
    inside = _t("2026-12-01T03:00:00Z").timestamp()
    board = StatusBoard(store.store, store.store.kinds, store.status, min_age=0, clock=lambda: inside,
                        maintenance=cal)
    snap = board.snapshot()
    rows = {t["target"]: t for t in snap["targets"]}
    assert (rows["hospital"]["state"], rows["hospital"]["maintenance"]) == ("down", "cutover")
    assert (rows["camera"]["state"], rows["camera"]["maintenance"]) == ("up", "cutover")
    # The tier counts say how many of the down ones are explained, and by what.
    tiers = {t["tier"]: t for t in snap["tiers"]}
    assert (tiers["P0"]["down"], tiers["P0"]["suppressed"]) == (1, {"maintenance": 1})
    assert tiers["P3"]["suppressed"] == {}  # the camera is up: nothing to explain
    after = StatusBoard(store.store, store.store.kinds, store.status, min_age=0,
                        clock=lambda: inside + 7200, maintenance=cal)
    snap = after.snapshot()
    assert {t["maintenance"] for t in snap["targets"]} == {None}
    assert {t["tier"]: t["suppressed"] for t in snap["tiers"]}["P0"] == {}


# --- the real agent ---------------------------------------------------------------------------------

FAST = """tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 2, packet_interval: 20ms}
targets:
  - {name: hosp-now, address: 127.0.0.1, tier: P0, site: putuo}
  - {name: hosp-later, address: 127.0.0.1, tier: P0, site: dinghai}
  - {name: cam, address: 127.0.0.1, tier: P0, site: shenjiamen}
maintenance:
"""


def _iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).astimezone(timezone(timedelta(hours=8))).isoformat(timespec="seconds")


def _windows(*extra: str) -> str:
    now = (f"  - {{name: now, start: {_iso(-timedelta(hours=1))}, end: {_iso(timedelta(hours=1))}, "
           f"match: {{site: putuo}}}}\n")
    later = (f"  - {{name: later, start: {_iso(timedelta(days=1))}, end: {_iso(timedelta(days=1, hours=2))}, "
             f"match: {{targets: [hosp-later]}}}}\n")
    return FAST + now + later + "".join(extra)


def _notes(agent) -> dict[str, str | None]:
    return {t["target"]: t["maintenance"] for t in json.loads(http_get(agent.url + "/status.json")[1])["targets"]}


def _maintenance(agent, target: str) -> float | None:
    return value(agent.metrics(), "lifeline_maintenance_active", target=target)


def test_agent_exports_windows_and_reload_adds_one(agent_factory, needs_root, tmp_path):
    agent = agent_factory(_windows())
    text = agent.metrics()
    assert value(text, "lifeline_maintenance_active", target="hosp-now", tier="P0") == 1
    assert value(text, "lifeline_maintenance_active", target="hosp-later", tier="P0") == 0
    assert value(text, "lifeline_maintenance_active", target="cam") is None  # under no window
    assert value(text, "lifeline_target_suppressed", target="hosp-now", tier="P0", cause="maintenance") == 1
    assert value(text, "lifeline_target_suppressed", target="hosp-later") is None
    assert value(text, "lifeline_maintenance_window_info", window="later") == 1
    assert value(text, "lifeline_maintenance_window_active", window="now") == 1
    assert value(text, "lifeline_maintenance_window_active", window="later") == 0
    # Probing goes on inside the window.
    wait_for(lambda: value(agent.metrics(), "lifeline_target_up", target="hosp-now") == 1, 10, "probed in window")
    notes = _notes(agent)
    assert (notes["hosp-now"], notes["hosp-later"], notes["cam"]) == ("now", None, None)

    # A window added to the file takes effect on reload, without a restart.
    (tmp_path / "lifeline.yaml").write_text(_windows(
        f"  - {{name: cam-work, start: {_iso(-timedelta(minutes=5))}, end: {_iso(timedelta(minutes=30))}, "
        f"match: {{category: unspecified, site: [shenjiamen]}}}}\n"))
    status, body = http_post(agent.url + "/-/reload")
    assert status == 200, body
    wait_for(lambda: _maintenance(agent, "cam") == 1, 5, "new window active after reload")
    assert agent.proc.poll() is None
    wait_for(lambda: _notes(agent).get("cam") == "cam-work", 5, "status note after reload")
    assert value(agent.metrics(), "lifeline_target_suppressed", target="cam", cause="maintenance") == 1


def test_reload_with_a_bad_window_keeps_the_running_config(agent_factory, needs_root, tmp_path):
    agent = agent_factory(_windows())
    assert _maintenance(agent, "hosp-now") == 1
    # end before start: a FILE:LINE error, and the running windows stay.
    (tmp_path / "lifeline.yaml").write_text(FAST + f"  - {{name: now, start: {_iso(timedelta(hours=1))}, "
                                                   f"end: {_iso(-timedelta(hours=1))}, match: {{site: putuo}}}}\n")
    status, body = http_post(agent.url + "/-/reload")
    assert status != 200 and "maintenance[0].end: must be after start" in body.decode(), body
    text = agent.metrics()
    assert value(text, "lifeline_config_last_reload_successful") == 0
    assert value(text, "lifeline_maintenance_active", target="hosp-now") == 1
    assert value(text, "lifeline_target_suppressed", target="hosp-now", cause="maintenance") == 1
    assert value(text, "lifeline_maintenance_window_info", window="later") == 1
    assert agent.proc.poll() is None


def test_a_window_matching_nothing_loads_and_is_logged(agent_factory, needs_root, tmp_path):
    agent = agent_factory(_windows(f"  - {{name: nowhere, start: {_iso(-timedelta(hours=1))}, "
                                   f"end: {_iso(timedelta(hours=1))}, match: {{site: zhujiajian}}}}\n"))
    line = 10  # FAST is 7 lines, the windows "now" and "later" one each
    path = tmp_path / "lifeline.yaml"
    logged = [json.loads(x) for x in agent.log().splitlines() if '"config_warning"' in x]
    assert [(e["file"], e["line"], e["path"], e["message"]) for e in logged] == [
        (str(path), line, "maintenance[2].match", "warning: matches no target")]
    assert value(agent.metrics(), "lifeline_maintenance_window_targets", window="nowhere") == 0
    # A reload keeps warning about it (and the config still applies).
    path.write_text(_windows(f"  - {{name: nowhere, start: {_iso(-timedelta(hours=1))}, "
                             f"end: {_iso(timedelta(hours=2))}, match: {{site: zhujiajian}}}}\n"))
    status, body = http_post(agent.url + "/-/reload")
    assert status == 200, body
    wait_for(lambda: agent.log().count('"config_warning"') == 2, 5, "the warning logged again on reload")


# --- the command ------------------------------------------------------------------------------------

def test_cli_lists_active_windows_and_next_starts(tmp_path, capsys):
    path = tmp_path / "lifeline.yaml"
    path.write_text(EXAMPLE)
    assert main(["maintenance", "--config.file", str(path), "--at", "2026-12-05T02:30:00+08:00", "--next", "2"]) == 0
    # Active windows first, then the others by their next start; each with its next starts and ends.
    assert capsys.readouterr().out == """\
At 2026-12-05T02:30:00+08:00 (2026-12-04T18:30Z): 1 of 3 maintenance windows active
ACTIVE weekly-core-maintenance ('0 2 * * SAT' for 2h, Asia/Shanghai): covers 1 target: dinghai-telecom
  now:  2026-12-05T02:00+08:00 to 2026-12-05T04:00+08:00 Asia/Shanghai = 2026-12-04T18:00Z to 2026-12-04T20:00Z
  next: 2026-12-12T02:00+08:00 to 2026-12-12T04:00+08:00 Asia/Shanghai = 2026-12-11T18:00Z to 2026-12-11T20:00Z
  next: 2026-12-19T02:00+08:00 to 2026-12-19T04:00+08:00 Asia/Shanghai = 2026-12-18T18:00Z to 2026-12-18T20:00Z
upcoming monthly-berlin ('FREQ=MONTHLY;BYDAY=1SU;BYHOUR=3;BYMINUTE=30' for 1.5h, Europe/Berlin): covers 3 targets: \
dinghai-telecom, dinghai-unicom, shenjiamen-cam
  next: 2026-12-06T03:30+01:00 to 2026-12-06T05:00+01:00 Europe/Berlin = 2026-12-06T02:30Z to 2026-12-06T04:00Z
  next: 2027-01-03T03:30+01:00 to 2027-01-03T05:00+01:00 Europe/Berlin = 2027-01-03T02:30Z to 2027-01-03T04:00Z
over carrier-cutover-0215 (one-off 2026-12-01T02:00+08:00 to 2026-12-01T04:00+08:00): covers 1 target: \
putuo-hospital-fever-clinic
  no start after this time
"""


def test_cli_first_names_and_default_now(tmp_path, capsys):
    names = "".join(f"  - {{name: t{i}, address: 127.0.0.1, tier: P2}}\n" for i in range(8))
    path = tmp_path / "lifeline.yaml"
    path.write_text("targets:\n" + names + "maintenance:\n  - {name: all, schedule: '0 3 * * *', duration: 1h, "
                    "timezone: UTC, match: {tier: P2}}\n")
    assert main(["maintenance", "--config.file", str(path), "--next", "1"]) == 0
    out = capsys.readouterr().out
    assert "all ('0 3 * * *' for 1h, UTC): covers 8 targets: t0, t1, t2, t3, t4 and 3 more\n" in out
    assert out.splitlines()[1].startswith(("ACTIVE all ", "upcoming all "))
    assert out.count("  next: ") == 1


def test_cli_invalid_file_exits_1_with_file_line(capsys):
    bad = Path(ROOT) / "tests" / "configs" / "bad" / "maintenance_unknown_scope.yaml"
    assert main(["maintenance", "--config.file", str(bad)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{bad}:9: maintenance[0].match.tier: unknown tier 'P7'; defined tiers: P0, P1, P2, P3"]


def test_cli_at_needs_an_offset():
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "maintenance", "--config.file", "x.yaml",
                           "--at", "2026-12-01T02:00:00"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "needs a UTC offset" in proc.stderr and "Traceback" not in proc.stderr
