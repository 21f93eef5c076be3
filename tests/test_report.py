"""``lifeline report`` against a real Prometheus.

Most tests read a known history: an OpenMetrics file written here (what two agents
would have exported, scraped every 15 s) is turned into TSDB blocks with
`promtool tsdb create-blocks-from openmetrics`, and a real Prometheus on loopback
serves them. So every figure is exact:

  Asia/Shanghai day 2024-03-05 (16:00Z on the 4th to 16:00Z on the 5th)
  - putuo-hospital (P0): down 10:00-10:30 (icmp timeout), no data 14:00-14:10 (agent A gap)
  - putuo-school (P2): down 23:50 on the 4th - 00:05 on the 5th (http status), same gap
  - dinghai-hotline (P1, agent B): healthy all the time

One more test runs a real agent and Prometheus scraping it, to check the report
reads the series as the agent really exports them. Everything is on loopback.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from datetime import datetime, timezone
from html.parser import HTMLParser

import pytest

from agent.cli import main
from agent.devstack import HOST, Prometheus
from agent.report import promapi
from tests.helpers import free_port, require_tool, wait_for

STEP = 15


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


# The history: samples at :07, :22, :37, :52, off the report's 15 s step boundaries.
T0, T1 = _utc("2024-03-03T23:50:00Z"), _utc("2024-03-05T16:10:00Z")
HOSPITAL_DOWN = (_utc("2024-03-05T10:00:00+08:00"), _utc("2024-03-05T10:30:00+08:00"))
SCHOOL_DOWN = (_utc("2024-03-04T23:50:00+08:00"), _utc("2024-03-05T00:05:00+08:00"))
GAP_A = (_utc("2024-03-05T14:00:00+08:00"), _utc("2024-03-05T14:10:00+08:00"))

A = {"job": "lifeline", "instance": "agent-a:9123"}
B = {"job": "lifeline", "instance": "agent-b:9123"}
HOSPITAL = {**A, "target": "putuo-hospital", "tier": "P0", "category": "hospital", "site": "putuo"}
SCHOOL = {**A, "target": "putuo-school", "tier": "P2", "category": "school", "site": "putuo"}
HOTLINE = {**B, "target": "dinghai-hotline", "tier": "P1", "category": "hotline", "site": "dinghai"}
INFO = {
    "putuo-hospital": {"address": "198.51.100.10", "circuit_id": "ZS-MSTP-0036", "carrier": "中国电信",
                       "contact": "+86-580-000000"},
    "putuo-school": {"address": "198.51.100.11", "circuit_id": "ZS-MSTP-0101", "carrier": "联通"},
    "dinghai-hotline": {"address": "198.51.100.12", "circuit_id": "ZS-SIP-12345", "carrier": "移动"},
}


def _times() -> list[int]:
    return list(range(T0 + 7, T1, STEP))


def _down(t: int, window: tuple[int, int]) -> bool:
    return window[0] < t <= window[1]


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def openmetrics() -> str:
    """What Prometheus would hold from scraping agents A and B every 15 s."""
    families: dict[str, tuple[str, list[str]]] = {}

    def add(family: str, kind: str, name: str, labels: dict[str, str], points) -> None:
        lines = families.setdefault(family, (kind, []))[1]
        lines += [f"{name}{{{_labels(labels)}}} {v} {t}" for t, v in points]

    def present(labels: dict[str, str]) -> list[int]:
        return [t for t in _times() if labels["instance"] != A["instance"] or not _down(t, GAP_A)]

    for target, down, probes in ((HOSPITAL, HOSPITAL_DOWN, {"icmp": True}),
                                 (SCHOOL, SCHOOL_DOWN, {"icmp": False, "http": True}),
                                 (HOTLINE, (0, 0), {"icmp": False, "sip": False})):
        ts = present(target)
        add("lifeline_target_up", "gauge", "lifeline_target_up", target, [(t, 0 if _down(t, down) else 1) for t in ts])
        key = {k: target[k] for k in ("job", "instance", "target", "tier")}
        add("lifeline_target_info", "gauge", "lifeline_target_info",
            {**target, **INFO[target["target"]]}, [(t, 1) for t in ts])
        for probe, fails in probes.items():
            add("lifeline_probe_success", "gauge", "lifeline_probe_success", {**key, "probe": probe},
                [(t, 0 if fails and _down(t, down) else 1) for t in ts])
    # The hospital's timeout counter first appears with the outage; the school's status
    # counter already stood at 5, and its timeout counter at 2 never moves.
    failed = [t for t in present(HOSPITAL) if _down(t, HOSPITAL_DOWN)]
    add("lifeline_probe_failures", "counter", "lifeline_probe_failures_total",
        {**{k: HOSPITAL[k] for k in ("job", "instance", "target", "tier")}, "probe": "icmp", "reason": "timeout"},
        [(t, sum(1 for f in failed if f <= t)) for t in present(HOSPITAL) if t >= failed[0]])
    school_key = {k: SCHOOL[k] for k in ("job", "instance", "target", "tier")}
    failed = [t for t in present(SCHOOL) if _down(t, SCHOOL_DOWN)]
    add("lifeline_probe_failures", "counter", "lifeline_probe_failures_total",
        {**school_key, "probe": "http", "reason": "status"},
        [(t, 5 + sum(1 for f in failed if f <= t)) for t in present(SCHOOL)])
    add("lifeline_probe_failures", "counter", "lifeline_probe_failures_total",
        {**school_key, "probe": "http", "reason": "timeout"}, [(t, 2) for t in present(SCHOOL)])
    out = []
    for family, (kind, lines) in families.items():
        out += [f"# TYPE {family} {kind}", *lines]
    return "\n".join(out + ["# EOF", ""])


class BackfilledPrometheus(Prometheus):
    """Prometheus on blocks made by promtool; retention wide enough to keep a 2024 history."""

    def start(self) -> BackfilledPrometheus:
        self._start([self.exe, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.dir}/data",
                     f"--web.listen-address={HOST}:{self.port}", "--storage.tsdb.retention.time=100y",
                     "--log.level=warn"])
        return self


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    promtool = require_tool("promtool", "prometheus")
    workdir = tmp_path_factory.mktemp("report-prom")
    source = workdir / "history.om"
    source.write_text(openmetrics(), encoding="utf-8")
    proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(workdir / "data")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    server = BackfilledPrometheus(str(workdir), [], None).start()
    yield server
    server.stop()


def report(prom_url: str, tmp_path, *args: str, fmt: str = "json") -> bytes:
    out = tmp_path / f"report.{fmt}"
    code = main(["report", "--prometheus.url", prom_url, "--format", fmt, "--output", str(out), *args])
    assert code == 0
    return out.read_bytes()


def report_json(prom_url: str, tmp_path, *args: str) -> dict:
    return json.loads(report(prom_url, tmp_path, *args))


def by_target(data: dict) -> dict[str, dict]:
    return {t["target"]: t for t in data["targets"]}


# ---------------------------------------------------------------- figures

def test_a_shanghai_day(prom, tmp_path):
    data = report_json(prom.url, tmp_path, "--date", "2024-03-05")
    assert (data["start"], data["end"], data["timezone"]) == (
        "2024-03-05T00:00:00+08:00", "2024-03-06T00:00:00+08:00", "Asia/Shanghai")
    assert data["has_data"] and "up time / (up time + down time)" in data["method"]
    # P0 and P1 lines first.
    assert [t["target"] for t in data["targets"]] == ["putuo-hospital", "dinghai-hotline", "putuo-school"]
    t = by_target(data)

    hospital = t["putuo-hospital"]
    assert {k: hospital[k] for k in ("tier", "site", "category", "circuit_id", "carrier", "contact")} == {
        "tier": "P0", "site": "putuo", "category": "hospital", "circuit_id": "ZS-MSTP-0036",
        "carrier": "中国电信", "contact": "+86-580-000000"}
    assert (hospital["up_seconds"], hospital["downtime_seconds"], hospital["no_data_seconds"],
            hospital["maintenance_seconds"]) == (84000, 1800, 600, 0)
    assert hospital["availability"] == pytest.approx(84000 / 85800, abs=1e-12)
    assert hospital["outages"] == [{
        "start": "2024-03-05T10:00:00+08:00", "end": "2024-03-05T10:30:00+08:00", "duration_seconds": 1800,
        "clipped_start": False, "clipped_end": False, "probes": ["icmp"], "reasons": ["icmp:timeout"]}]

    school = t["putuo-school"]
    assert (school["up_seconds"], school["downtime_seconds"], school["no_data_seconds"]) == (85500, 300, 600)
    assert school["availability"] == pytest.approx(85500 / 85800, abs=1e-12)
    # Down since 23:50 the day before: cut at midnight and marked.
    assert school["outages"] == [{
        "start": "2024-03-05T00:00:00+08:00", "end": "2024-03-05T00:05:00+08:00", "duration_seconds": 300,
        "clipped_start": True, "clipped_end": False, "probes": ["http"], "reasons": ["http:status"]}]

    hotline = t["dinghai-hotline"]
    assert (hotline["availability"], hotline["up_seconds"], hotline["downtime_seconds"],
            hotline["no_data_seconds"], hotline["outages"]) == (1.0, 86400, 0, 0, [])

    sites = [(s["site"], s["targets"], s["up_seconds"], s["downtime_seconds"], s["no_data_seconds"], s["outages"])
             for s in data["sites"]]
    assert sites == [("putuo", 2, 169500, 2100, 1200, 2), ("dinghai", 1, 86400, 0, 0, 0)]  # worst first
    assert data["sites"][0]["availability"] == pytest.approx(169500 / 171600, abs=1e-12)
    assert [(g["tier"], g["downtime_seconds"]) for g in data["tiers"]] == [("P0", 1800), ("P2", 300), ("P1", 0)]
    assert data["tiers"][1]["availability"] == pytest.approx(85500 / 85800, abs=1e-12)
    assert data["summary"]["availability"] == pytest.approx(255900 / 258000, abs=1e-12)


def test_the_same_date_in_utc_is_another_day(prom, tmp_path):
    # UTC 2024-03-04 is 08:00 on the 4th to 08:00 on the 5th in Shanghai: the school's whole
    # outage falls inside it, uncut; the hospital's outage and the gap do not.
    data = report_json(prom.url, tmp_path, "--date", "2024-03-04", "--timezone", "UTC")
    assert (data["start"], data["end"]) == ("2024-03-04T00:00:00+00:00", "2024-03-05T00:00:00+00:00")
    t = by_target(data)
    assert t["putuo-school"]["outages"] == [{
        "start": "2024-03-04T15:50:00+00:00", "end": "2024-03-04T16:05:00+00:00", "duration_seconds": 900,
        "clipped_start": False, "clipped_end": False, "probes": ["http"], "reasons": ["http:status"]}]
    assert t["putuo-school"]["downtime_seconds"] == 900
    assert (t["putuo-hospital"]["availability"], t["putuo-hospital"]["no_data_seconds"]) == (1.0, 0)


def test_a_range_with_offsets_cuts_an_outage_at_its_end(prom, tmp_path):
    # 09:50 to 10:20:05 Shanghai, given in two notations; not a whole number of steps.
    data = report_json(prom.url, tmp_path, "--start", "2024-03-05T01:50:00Z", "--end", "2024-03-05T10:20:05+08:00")
    hospital = by_target(data)["putuo-hospital"]
    assert (hospital["up_seconds"], hospital["downtime_seconds"]) == (600, 1205)
    assert hospital["outages"][0]["start"] == "2024-03-05T10:00:00+08:00"
    assert hospital["outages"][0]["end"] == "2024-03-05T10:20:05+08:00"
    assert (hospital["outages"][0]["clipped_start"], hospital["outages"][0]["clipped_end"]) == (False, True)


def test_queries_are_chunked_under_the_point_limit(prom, tmp_path, monkeypatch):
    # Prometheus refuses more than 11,000 points per series; with the chunk size cut to an odd
    # 997 points a day takes six range queries, and every figure must stay the same.
    whole = report_json(prom.url, tmp_path, "--date", "2024-03-05")
    monkeypatch.setattr(promapi, "MAX_POINTS", 997)
    chunked = report_json(prom.url, tmp_path, "--date", "2024-03-05")
    for data in (whole, chunked):
        del data["generated_at"]
    assert chunked == whole


def test_a_step_below_the_scrape_interval_shows_as_gaps(prom, tmp_path):
    # Scraped every 15 s, read at 10 s: one step in three holds no sample. Documented, not hidden.
    hotline = by_target(report_json(prom.url, tmp_path, "--date", "2024-03-05", "--step", "10s"))["dinghai-hotline"]
    assert (hotline["up_seconds"], hotline["no_data_seconds"], hotline["availability"]) == (57600, 28800, 1.0)


def test_no_data_is_said_not_shown_as_100_percent(prom, tmp_path, capsys):
    data = report_json(prom.url, tmp_path, "--date", "2020-01-01")
    assert (data["has_data"], data["targets"], data["summary"]["availability"]) == (False, [], None)
    assert "No data" in data["notes"][0]
    assert "lifeline report: no data in this range" in capsys.readouterr().err
    page = report(prom.url, tmp_path, "--date", "2020-01-01", fmt="html").decode()
    assert "No data" in page and "%" not in _Tables.parse(page).text
    assert b"No data" in report(prom.url, tmp_path, "--date", "2020-01-01", fmt="md")


# ---------------------------------------------------------------- formats

class _Tables(HTMLParser):
    """Rows of every <table id=...>, and all the text outside <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.text = ""
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._style = False
        self.external: list[str] = []

    @classmethod
    def parse(cls, page: str) -> _Tables:
        p = cls()
        p.feed(page)
        return p

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "style":
            self._style = True
        for name in ("src", "href"):
            if attrs.get(name):
                self.external.append(attrs[name])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "style":
            self._style = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if not self._style:
            self.text += data


def test_html_tables_carry_the_figures_with_words(prom, tmp_path):
    page = _Tables.parse(report(prom.url, tmp_path, "--date", "2024-03-05", fmt="html").decode())
    assert page.external == []  # self-contained
    targets = page.tables["targets"]
    assert targets[0] == ["Target", "Tier", "Site", "Category", "Circuit", "Carrier", "Availability", "Downtime",
                          "Outages", "No data", "Status"]
    assert targets[1:] == [
        ["putuo-hospital", "P0", "putuo", "hospital", "ZS-MSTP-0036", "中国电信", "97.902 %", "30m", "1", "10m", "OUTAGES"],
        ["dinghai-hotline", "P1", "dinghai", "hotline", "ZS-SIP-12345", "移动", "100.000 %", "0s", "0", "0s", "OK"],
        ["putuo-school", "P2", "putuo", "school", "ZS-MSTP-0101", "联通", "99.650 %", "5m", "1", "10m", "OUTAGES"],
    ]
    assert page.tables["sites"][1:] == [["putuo", "2", "98.776 %", "35m", "2", "20m", "OUTAGES"],
                                        ["dinghai", "1", "100.000 %", "0s", "0", "0s", "OK"]]
    assert [row[0] for row in page.tables["tiers"][1:]] == ["P0", "P2", "P1"]
    assert page.tables["outages"][1:] == [
        ["putuo-school", "P2", "putuo", "2024-03-05 00:00:00", "2024-03-05 00:05:00", "5m", "http", "http:status",
         "began before the range"],
        ["putuo-hospital", "P0", "putuo", "2024-03-05 10:00:00", "2024-03-05 10:30:00", "30m", "icmp", "icmp:timeout",
         ""],
    ]
    assert "Availability = up time / (up time + down time)" in page.text
    assert "counts as maintenance, neither up nor down" in page.text


def test_html_report_in_headless_chromium_prints_on_a4(prom, tmp_path):
    """What a manager sees: rendered by a real browser, screenshot and PDF kept in test-artifacts/."""
    import os
    import shutil
    import subprocess

    from tests.helpers import ROOT

    chromium = shutil.which("chromium")
    assert chromium, "chromium not found: apt-get install -y chromium (or run `make test`)"
    html = tmp_path / "report.html"
    html.write_bytes(report(prom.url, tmp_path, "--date", "2024-03-05", fmt="html"))
    artifacts = os.path.join(ROOT, "test-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    shot, pdf = os.path.join(artifacts, "daily-report.png"), os.path.join(artifacts, "daily-report.pdf")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*base, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=90).stdout
    assert "putuo-hospital" in dom and "97.902 %" in dom and "OUTAGES" in dom
    # The charts, inline SVG with their figures as text: two sites' bars, two outages on the timeline.
    assert dom.count('<svg id="chart-') == 2 and "98.776 %</text>" in dom
    assert "putuo-hospital down 10:00-10:30" in dom and "putuo-school down 00:00-00:05" in dom
    for path in (shot, pdf):
        if os.path.exists(path):
            os.unlink(path)
    subprocess.run([*base, "--window-size=1240,1754", f"--screenshot={shot}", html.as_uri()],
                   capture_output=True, timeout=90)
    subprocess.run([*base, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", html.as_uri()],
                   capture_output=True, timeout=90)
    assert os.path.getsize(shot) > 10_000
    with open(pdf, "rb") as fh:
        data = fh.read()
    pages = data.count(b"/Type /Page") - data.count(b"/Type /Pages")
    assert data.startswith(b"%PDF") and 1 <= pages <= 2, f"a three-target day should print on 1-2 pages, not {pages}"
    import re

    width = float(re.search(rb"/MediaBox \[0 0 ([\d.]+)", data).group(1))
    assert abs(width - 595) < 1 or abs(width - 612) < 1, width  # A4 (or Letter, by locale)


def test_maintenance_steps_are_neither_up_nor_down():
    """A window over an outage: its steps become maintenance and the outage is split around it."""
    from agent.report import accounting as acc

    grid = acc.Grid(0.0, 100.0, 10.0)  # ten steps
    U, D, M = acc.UP, acc.DOWN, acc.MAINTENANCE
    row = acc.TargetAccount("t")
    acc.account(row, grid, [U, U, D, D, M, M, M, D, U, U, None, U])
    assert (row.up_seconds, row.down_seconds, row.maintenance_seconds, row.no_data_seconds) == (30, 30, 30, 10)
    assert [(o.start, o.end) for o in row.outages] == [(10.0, 30.0), (60.0, 70.0)]
    assert row.availability == 0.5


class _FakeProm:
    """Answers the report's queries from two step lists: lifeline_target_up and lifeline_maintenance_active."""

    def __init__(self, up: list[int], maintenance: list[int]) -> None:
        self.up, self.maintenance = up, maintenance

    def _series(self, expr: str, times: list[float], start: float, step: float) -> list[dict]:
        labels = {"target": "cam", "tier": "P3", "category": "checkpoint", "site": "daishan"}
        if "lifeline_maintenance_active" in expr:
            values = [(t, 1.0) for t in times if self.maintenance[int(round((t - start) / step))]]
        elif "lifeline_target_up" in expr:
            values = [(t, float(self.up[int(round((t - start) / step))])) for t in times]
        else:
            return []  # info, probe success, failures: none
        return [{"metric": labels, "values": values}] if values else []

    def query_range(self, expr, start, end, step):
        n = int(round((end - start) / step)) + 1
        return self._series(expr, [start + k * step for k in range(n)], start, step)

    def query(self, expr, at):
        return []


def test_report_counts_maintenance_from_the_agents_series():
    from zoneinfo import ZoneInfo

    from agent.report.collect import build

    # Step 0 is the one before the range; steps 1..10 the range. Down 3..8, a window over 4..6.
    up = [1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1]
    maintenance = [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    report = build(_FakeProm(up, maintenance), 0.0, 100.0, 10.0, ZoneInfo("UTC"), clock=lambda: 1000.0)
    cam = report.targets[0]
    assert (cam.up_seconds, cam.down_seconds, cam.maintenance_seconds) == (40, 30, 30)
    assert [(o.start, o.end) for o in cam.outages] == [(20.0, 30.0), (60.0, 80.0)]
    assert report.sites[0].maintenance_seconds == 30


def test_a_long_range_reports_progress_on_stderr(prom, tmp_path, capsys):
    report(prom.url, tmp_path, "--start", "2024-03-01T00:00:00+08:00", "--end", "2024-03-08T00:00:00+08:00",
           "--step", "60s")
    err = capsys.readouterr().err
    assert "lifeline report: reading lifeline_target_up: 10080 steps of 60 s" in err
    assert "lifeline report: explaining outages: 3/3 targets" in err


def test_csv_is_one_row_per_target_for_excel(prom, tmp_path):
    raw = report(prom.url, tmp_path, "--date", "2024-03-05", fmt="csv")
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert [r["target"] for r in rows] == ["putuo-hospital", "dinghai-hotline", "putuo-school"]
    hospital = rows[0]
    assert {k: hospital[k] for k in ("tier", "site", "carrier", "availability", "availability_percent", "up_seconds",
                                     "downtime_seconds", "no_data_seconds", "maintenance_seconds", "outages",
                                     "outage_times", "status")} == {
        "tier": "P0", "site": "putuo", "carrier": "中国电信", "availability": "0.979021",
        "availability_percent": "97.902", "up_seconds": "84000", "downtime_seconds": "1800", "no_data_seconds": "600",
        "maintenance_seconds": "0", "outages": "1", "outage_times": "2024-03-05 10:00:00 - 2024-03-05 10:30:00",
        "status": "OUTAGES"}


def test_markdown(prom, tmp_path):
    text = report(prom.url, tmp_path, "--date", "2024-03-05", fmt="md").decode()
    assert text.startswith("# Lifeline availability report, 2024-03-05 00:00:00 to 2024-03-06 00:00:00 "
                           "(Asia/Shanghai, UTC+08:00)")
    assert "| putuo-hospital | P0 | putuo | hospital | ZS-MSTP-0036 | 中国电信 | 97.902 % | 30m | 1 | 10m | OUTAGES |" in text
    assert ("| putuo-hospital | P0 | putuo | 2024-03-05 10:00:00 | 2024-03-05 10:30:00 | 30m | icmp | icmp:timeout |"
            in text)
    assert "## Method" in text


# ---------------------------------------------------------------- errors

def test_unreachable_prometheus_exits_1_with_a_message(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["report", "--prometheus.url", url, "--date", "2024-03-05", "--output", str(tmp_path / "r.md")]) == 1
    err = capsys.readouterr().err
    assert f"lifeline report: cannot reach Prometheus at {url}: " in err and "refused" in err.lower()
    assert not (tmp_path / "r.md").exists()


def test_a_query_prometheus_refuses_exits_1_with_its_error(prom, tmp_path, capsys):
    code = main(["report", "--prometheus.url", prom.url, "--date", "2024-03-05", "--selector", 'job=~"("',
                 "--output", str(tmp_path / "r.md")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"lifeline report: Prometheus at {prom.url} refused a query (HTTP 400): " in err


@pytest.mark.parametrize("args, message", [
    (["--date", "2024-13-05"], "argument --date: not a date: '2024-13-05'"),
    (["--date", "5/3/2024"], "argument --date: not a date: '5/3/2024' (use YYYY-MM-DD)"),
    (["--date", "2024-03-05", "--start", "2024-03-05T00:00:00Z"], "--date and --start/--end exclude each other"),
    (["--start", "2024-03-05T00:00:00Z"], "give --date YYYY-MM-DD, or both --start and --end"),
    (["--start", "2024-03-05T00:00:00", "--end", "2024-03-06T00:00:00Z"], "has no time zone"),
    (["--start", "2024-03-06T00:00:00Z", "--end", "2024-03-05T00:00:00Z"], "must be after --start"),
    (["--date", "2024-03-05", "--timezone", "Mars/Olympus"], "unknown time zone: 'Mars/Olympus'"),
    (["--date", "2024-03-05", "--step", "0s"], "not a duration of at least 1s"),
    (["--date", "2024-03-05", "--format", "pdf"], "invalid choice: 'pdf'"),
], ids=["month-13", "not-iso", "date-and-start", "start-alone", "no-zone", "end-before-start", "zone", "step",
        "format"])
def test_usage_errors_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", "--prometheus.url", "http://127.0.0.1:9", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: lifeline report" in err and message in err


# ---------------------------------------------------------------- the real agent

AGENT_CONFIG = """
targets:
  - {{name: rep-healthy, address: 127.0.0.1, tier: P0, category: hospital, site: lab,
     labels: {{circuit_id: CID-REP-1}}}}
  - {{name: rep-dead-service, address: 127.0.0.1, tier: P1, category: gov-cloud, site: lab,
     probes: [tcp], tcp: {{port: {closed}}}}}
"""


def test_report_reads_what_a_real_agent_exported(agent_factory, tmp_path):
    agent = agent_factory(AGENT_CONFIG.format(closed=free_port()))
    prom = Prometheus(str(tmp_path / "prom"), [agent.url.removeprefix("http://")], None,
                      scrape_interval="1s", evaluation_interval="1s").start()
    try:
        wait_for(lambda: len(prom.query("count_over_time(lifeline_target_up[10s]) >= 8")) == 2, 30,
                 "8 scrapes of both targets")
        # A range that is not over yet: counted until now, and the dead service's outage runs on.
        start, end = time.time() - 6, time.time() + 3600
        data = report_json(prom.url, tmp_path, "--timezone", "UTC",
                           "--start", datetime.fromtimestamp(start, timezone.utc).isoformat(),
                           "--end", datetime.fromtimestamp(end, timezone.utc).isoformat(), "--step", "2s")
    finally:
        prom.stop()
    counted = datetime.fromisoformat(data["counted_until"]).timestamp()
    assert start + 5 < counted < start + 30
    assert any("not over" in note for note in data["notes"])
    t = by_target(data)
    healthy, dead = t["rep-healthy"], t["rep-dead-service"]
    assert (healthy["tier"], healthy["site"], healthy["category"], healthy["circuit_id"]) == (
        "P0", "lab", "hospital", "CID-REP-1")
    assert healthy["downtime_seconds"] == 0 and healthy["up_seconds"] > 0 and healthy["availability"] == 1.0
    assert dead["availability"] == 0.0 and dead["up_seconds"] == 0
    assert len(dead["outages"]) == 1
    outage = dead["outages"][0]
    assert (outage["probes"], outage["reasons"], outage["clipped_start"], outage["clipped_end"]) == (
        ["tcp"], ["tcp:refused"], True, True)
