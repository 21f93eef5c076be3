"""The report as one self-contained HTML page (no external assets) that prints on A4.

Colour is never the only signal: every coloured cell also carries its word
(OK, OUTAGES, NO DATA), and the print styles keep tables readable in black and white.
"""

from __future__ import annotations

from html import escape

from agent.report import charts
from agent.report import formats as fmt
from agent.report.collect import Report

CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font: 10pt/1.35 "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC",
       system-ui, sans-serif; color: #111; margin: 0 auto; max-width: 190mm; }
h1 { font-size: 15pt; margin: 0 0 4pt; }
h2 { font-size: 12pt; margin: 14pt 0 4pt; border-bottom: 1px solid #999; }
p { margin: 3pt 0; }
.headline { font-size: 11pt; font-weight: bold; }
.note { border-left: 3px solid #999; padding-left: 6pt; }
.nodata { border: 2px solid #111; padding: 6pt; font-weight: bold; }
table { border-collapse: collapse; width: 100%; font-size: 8.5pt; }
th, td { border: 1px solid #bbb; padding: 2pt 4pt; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.time { white-space: nowrap; }
.st { font-weight: bold; white-space: nowrap; }
.st-ok { background: #dff0d8; }
.st-gaps { background: #f2f2f2; }
.st-outages { background: #f8d7da; }
.st-nodata { background: #fff3cd; font-style: italic; }
thead { display: table-header-group; }
tr { page-break-inside: avoid; break-inside: avoid; }
svg { display: block; margin: 4pt 0 6pt; max-width: 190mm; }
footer { margin-top: 14pt; font-size: 8.5pt; color: #333; }
@media print { body { max-width: none; } * { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""

_STATUS_CLASS = {"OK": "st-ok", "OK (gaps)": "st-gaps", "OUTAGES": "st-outages", "NO DATA": "st-nodata"}
# Which columns hold numbers (right-aligned) or times (kept on one line).
_NUMERIC = {"Targets", "Availability", "Downtime", "Outages", "No data", "Duration"}
_TIME = {"Start", "End"}


def _table(table_id: str, head: list[str], rows: list[list[str]]) -> str:
    out = [f'<table id="{table_id}">', "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead>",
           "<tbody>"]
    for row in rows:
        cells = []
        for name, value in zip(head, row):
            if name == "Status":
                cells.append(f'<td class="st {_STATUS_CLASS.get(value, "")}">{escape(value)}</td>')
            elif name in _NUMERIC:
                cells.append(f'<td class="num">{escape(value)}</td>')
            elif name in _TIME:
                cells.append(f'<td class="time">{escape(value)}</td>')
            else:
                cells.append(f"<td>{escape(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def to_html(report: Report) -> bytes:
    title = fmt.title(report)
    parts = [
        "<!DOCTYPE html>", '<html lang="zh-CN">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        "<header>", f"<h1>{escape(title)}</h1>",
        f"<p>Generated {escape(fmt.local(report, report.generated_at))}"
        + (f" from series matching <code>{escape(report.selector)}</code>" if report.selector else "") + ".</p>",
        f'<p class="{"nodata" if not report.has_data else "headline"}" id="headline">'
        f"{escape(fmt.headline(report))}</p>",
    ]
    parts += [f'<p class="note">{escape(n)}</p>' for n in fmt.notes(report) if n != fmt.NO_DATA_NOTE]
    parts.append("</header>")
    if report.targets:
        parts += ["<h2>Sites (worst first)</h2>",
                  charts.availability_by_site(report.sites),
                  _table("sites", ["Site", *fmt.GROUP_HEAD], fmt.group_rows(report.sites)),
                  "<h2>Tiers (worst first)</h2>",
                  _table("tiers", ["Tier", *fmt.GROUP_HEAD], fmt.group_rows(report.tiers)),
                  "<h2>Targets (P0 and P1 first)</h2>",
                  _table("targets", fmt.TARGET_HEAD, fmt.target_rows(report))]
        rows = fmt.outage_rows(report)
        parts.append("<h2>Outages</h2>")
        parts.append(charts.outage_timeline(report.targets, report.start, report.until, report.timezone))
        parts.append(_table("outages", fmt.OUTAGE_HEAD, rows) if rows else "<p>None.</p>")
    parts += ["<footer>", "<h2>Method</h2>", f'<p id="method">{escape(report.method)}</p>', "</footer>",
              "</body>", "</html>", ""]
    return "\n".join(parts).encode()
