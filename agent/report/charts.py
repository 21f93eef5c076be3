"""The report's two charts as plain inline SVG: readable without JavaScript, printable, self-contained.

Every bar and outage carries its figure as text, so the charts read in black
and white and by screen readers (each SVG has a title and a text summary).
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from agent.report.accounting import GroupAccount, TargetAccount

WIDTH = 680  # px in the viewBox; scaled to the page width
LABEL_W = 150
ROW_H = 15
MAX_TIMELINE_ROWS = 30  # the worst targets; the outage table lists every one


def availability_by_site(sites: list[GroupAccount]) -> str:
    """Horizontal bars of each site's availability, on an axis that starts low enough to show them all."""
    counted = [(s.name, s.availability) for s in sites if s.availability is not None]
    if not counted:
        return ""
    lowest = min(a for _, a in counted)
    # Availability lives near 100 %: start the axis at a whole percent below the worst site (at most 90 %).
    floor = min(0.9, int(lowest * 100) / 100 - 0.01) if lowest < 1 else 0.9
    floor = max(0.0, floor)
    plot = WIDTH - LABEL_W - 70
    height = ROW_H * len(counted) + 24
    rows = []
    for i, (name, avail) in enumerate(counted):
        y = 4 + i * ROW_H
        bar = max(1.0, (avail - floor) / (1 - floor) * plot) if avail > floor else 1.0
        fill = "#2f9e44" if avail >= 0.999 else "#e08a00" if avail >= 0.99 else "#d93636"
        rows.append(f'<text x="{LABEL_W - 6}" y="{y + 12}" text-anchor="end">{escape(name)}</text>'
                    f'<rect x="{LABEL_W}" y="{y + 2}" width="{bar:.1f}" height="{ROW_H - 5}" fill="{fill}"/>'
                    f'<text x="{LABEL_W + bar + 4:.1f}" y="{y + 12}">{avail * 100:.3f} %</text>')
    axis_y = height - 16
    axis = (f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + plot}" y2="{axis_y}" stroke="#666"/>'
            f'<text x="{LABEL_W}" y="{axis_y + 12}" text-anchor="middle">{floor * 100:.0f} %</text>'
            f'<text x="{LABEL_W + plot}" y="{axis_y + 12}" text-anchor="middle">100 %</text>')
    return (f'<svg id="chart-sites" role="img" aria-labelledby="chart-sites-title" viewBox="0 0 {WIDTH} {height}" '
            f'width="100%" font-size="10" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="chart-sites-title">Availability by site, axis from {floor * 100:.0f} % to 100 %</title>'
            + "".join(rows) + axis + "</svg>")


def outage_timeline(targets: list[TargetAccount], start: float, end: float, tz) -> str:
    """One row per target with outages (worst first), its outages as bars on the range's time axis."""
    hit = [t for t in targets if t.outages][:MAX_TIMELINE_ROWS]
    if not hit or end <= start:
        return ""
    plot = WIDTH - LABEL_W - 10
    span = end - start
    height = ROW_H * len(hit) + 26
    x = lambda ts: LABEL_W + (min(max(ts, start), end) - start) / span * plot  # noqa: E731
    rows = []
    for i, t in enumerate(hit):
        y = 4 + i * ROW_H
        rows.append(f'<text x="{LABEL_W - 6}" y="{y + 12}" text-anchor="end">{escape(t.tier)} {escape(t.target)}</text>'
                    f'<rect x="{LABEL_W}" y="{y + 2}" width="{plot}" height="{ROW_H - 5}" fill="#e9f5ec"/>')
        for o in t.outages:
            left, right = x(o.start), x(o.end)
            when = f"{datetime.fromtimestamp(o.start, tz):%H:%M}-{datetime.fromtimestamp(o.end, tz):%H:%M}"
            rows.append(f'<rect x="{left:.1f}" y="{y + 2}" width="{max(right - left, 1.5):.1f}" height="{ROW_H - 5}" '
                        f'fill="#d93636"><title>{escape(t.target)} down {when}</title></rect>')
    axis_y = height - 18
    ticks = []
    for k in range(9):  # eight equal parts: 3-hour ticks for a day
        ts = start + span * k / 8
        tx = LABEL_W + plot * k / 8
        ticks.append(f'<line x1="{tx:.1f}" y1="{axis_y - 2}" x2="{tx:.1f}" y2="{axis_y + 3}" stroke="#666"/>'
                     f'<text x="{tx:.1f}" y="{axis_y + 14}" text-anchor="{"end" if k == 8 else "middle"}">'
                     f'{datetime.fromtimestamp(ts, tz):%H:%M}</text>')
    return (f'<svg id="chart-outages" role="img" aria-labelledby="chart-outages-title" viewBox="0 0 {WIDTH} {height}" '
            f'width="100%" font-size="10" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="chart-outages-title">Outage timeline: red bars are outages</title>' + "".join(rows)
            + f'<line x1="{LABEL_W}" y1="{axis_y}" x2="{LABEL_W + plot}" y2="{axis_y}" stroke="#666"/>'
            + "".join(ticks) + "</svg>")
