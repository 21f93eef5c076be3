"""The status page served at /: one self-contained HTML file (no CDN, no web fonts).

The page carries the current snapshot inline and then refreshes itself from
/status.json every few seconds, replacing only the parts that changed, so a
wall screen never flickers and a phone on a slow link loads one request.
Every state is written as a word as well as a colour.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lifeline status</title>
<link rel="icon" href="data:,">
<style>
:root { --bg:#0f1419; --panel:#1a2129; --text:#e6e9ec; --muted:#9aa5b1; --down:#d93636; --deg:#e08a00;
        --up:#2f9e44; --unk:#6b7785; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.4 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", sans-serif;
       background:var(--bg); color:var(--text); }
header { display:flex; flex-wrap:wrap; gap:.5rem 1.5rem; align-items:baseline; padding:.8rem 1.2rem;
         background:var(--panel); }
header h1 { margin:0; font-size:1.4rem; }
.muted { color:var(--muted); }
main { padding:1rem 1.2rem; display:grid; gap:1.2rem; }
main > section { min-width:0; }  /* let wide tables scroll inside their box, not widen the page */
#banner { padding:.7rem 1.2rem; background:var(--down); color:#fff; font-weight:600; }
#banner[hidden] { display:none; }
h2 { font-size:1.1rem; margin:0 0 .5rem; }
.tiers { display:grid; grid-template-columns:repeat(auto-fill, minmax(min(11rem, 100%), 1fr)); gap:.8rem; }
.tier { background:var(--panel); border-radius:6px; padding:.7rem .9rem; border-left:8px solid var(--up); }
.tier.bad { border-left-color:var(--down); } .tier.warn { border-left-color:var(--deg); }
.tier .name { font-size:1.3rem; font-weight:700; }
.counts span { margin-right:.6rem; white-space:nowrap; }
table { border-collapse:collapse; width:100%; background:var(--panel); border-radius:6px; overflow:hidden; }
th, td { padding:.45rem .6rem; text-align:left; border-bottom:1px solid #2a333d; vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:.85rem; text-transform:uppercase; letter-spacing:.03em; }
.badge { display:inline-block; min-width:6.2rem; padding:.15rem .45rem; border-radius:4px; font-weight:700;
         text-align:center; color:#fff; }
.s-down { background:var(--down); } .s-degraded { background:var(--deg); color:#111; }
.s-up { background:var(--up); } .s-unknown { background:var(--unk); }
.cell { font-weight:600; }
.grid td.cell.s-up { background:transparent; color:var(--up); }
.scroll { overflow-x:auto; }
footer { padding:1rem 1.2rem; color:var(--muted); font-size:.9rem; }
footer a { color:var(--muted); margin-right:1rem; }
a { color:#8cc4ff; }
@media (max-width: 700px) {
  body { font-size:15px; } .hide-narrow { display:none; } th, td { padding:.35rem .4rem; }
  main, header, footer { padding-left:.6rem; padding-right:.6rem; }
}
@media (min-width: 1800px) { body { font-size:20px; } }
</style></head>
<body>
<div id="banner" role="alert" hidden></div>
<header><h1>Lifeline status</h1>
<span>Data as of <strong id="asof">-</strong></span>
<span class="muted" id="agent"></span></header>
<main>
<section aria-labelledby="h-tiers"><h2 id="h-tiers">Tiers</h2><div class="tiers" id="tiers"></div></section>
<section aria-labelledby="h-problems"><h2 id="h-problems">Down and degraded (most urgent first)</h2>
<div class="scroll"><table id="problems"><thead><tr><th>State</th><th>Tier</th><th>Target</th><th>Site</th>
<th class="hide-narrow">Circuit</th><th class="hide-narrow">Carrier / contact</th><th>What fails</th>
<th>Since</th><th class="hide-narrow">Last changes</th></tr></thead><tbody></tbody></table></div></section>
<section aria-labelledby="h-grid"><h2 id="h-grid">Sites by tier</h2>
<div class="scroll"><table class="grid" id="grid"><thead></thead><tbody></tbody></table></div></section>
</main>
<footer><a href="/metrics">Metrics</a><a href="/status.json">status.json</a><a href="/-/healthy">Health</a>
<a href="/-/ready">Readiness</a><span id="refresh"></span>
<noscript>This page refreshes with JavaScript; the same data is at /status.json.</noscript></footer>
<script id="initial" type="application/json">__DATA__</script>
<script>
"use strict";
const REFRESH_MS = 5000;
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const LABEL = {down: "DOWN", degraded: "DEGRADED", up: "UP", unknown: "NO DATA"};
function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return (s / 3600).toFixed(1) + " h ago";
  return Math.round(s / 86400) + " days ago";
}
function local(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
function badge(state) { return `<span class="badge s-${state}">${LABEL[state]}</span>`; }
function render(d) {
  document.getElementById("asof").textContent = d.data_as_of ? local(d.data_as_of) + " (" + ago(d.data_as_of) + ")" : "no result yet";
  document.getElementById("agent").textContent = `agent ${d.agent.version}, ${d.agent.targets} targets`;
  const banner = document.getElementById("banner");
  banner.hidden = d.agent.healthy;
  banner.textContent = d.agent.healthy ? "" : "Agent problem: " + d.agent.problems.join("; ");
  document.getElementById("tiers").innerHTML = d.tiers.map(t => {
    const cls = t.down ? "bad" : t.degraded ? "warn" : "";
    return `<div class="tier ${cls}"><div class="name">${esc(t.tier)} <span class="muted">(${esc(t.severity)})</span></div>
      <div class="counts"><span>${t.up} up</span> <span>${t.down} down</span> <span>${t.degraded} degraded</span>` +
      (t.unknown ? ` <span>${t.unknown} no data</span>` : "") +
      Object.entries(t.suppressed || {}).map(([cause, n]) => ` <span class="muted">(${n} of them suppressed: ${esc(cause)})</span>`).join("") +
      `</div></div>`;
  }).join("");
  // The page asks only for targets that are not up; the counts come whole in tiers and sites.
  const problems = d.targets.filter(t => t.state === "down" || t.state === "degraded");
  document.querySelector("#problems tbody").innerHTML = problems.length ? problems.map(t => {
    const what = t.state === "down" ? t.failing.map(f => `${esc(f.probe)}: ${esc(f.reason)}`).join(", ") : esc(t.degraded);
    const hist = t.history.slice(-3).reverse().map(h => `${LABEL[h.state]} ${ago(h.at)}`).join(" &middot; ");
    return `<tr><td>${badge(t.state)}</td><td>${esc(t.tier)}</td><td><strong>${esc(t.target)}</strong><br>
      <span class="muted">${esc(t.category)} &middot; ${esc(t.address)}</span></td><td>${esc(t.site)}</td>
      <td class="hide-narrow">${esc(t.labels.circuit_id)}</td>
      <td class="hide-narrow">${esc(t.labels.carrier)}<br><span class="muted">${esc(t.labels.contact)}</span></td>
      <td>${what}${t.maintenance ? `<br><span class="muted">in maintenance: ${esc(t.maintenance)}</span>` : ""}${t.explained ? `<br><span class="muted">no page: ${esc(t.explained.detail)}</span>` : ""}</td><td>${t.since ? `${ago(t.since)}<br><span class="muted">${local(t.since)}</span>` : ""}</td>
      <td class="hide-narrow muted">${hist}</td></tr>`;
  }).join("") : `<tr><td colspan="9">${badge("up")} Every target answers.</td></tr>`;
  const tiers = d.tiers.map(t => t.tier);
  document.querySelector("#grid thead").innerHTML = "<tr><th>Site</th>" + tiers.map(t => `<th>${esc(t)}</th>`).join("") + "</tr>";
  document.querySelector("#grid tbody").innerHTML = d.sites.map(s => "<tr><td>" + esc(s.site) + "</td>" + tiers.map(t => {
    const c = s.tiers[t];
    if (!c) return "<td class='muted'>-</td>";
    const total = c.up + c.down + c.degraded + c.unknown;
    const state = c.down ? "down" : c.degraded ? "degraded" : c.unknown === total ? "unknown" : "up";
    const text = c.down ? `${c.down}/${total} DOWN` : c.degraded ? `${c.degraded}/${total} DEGRADED` : `${total} UP`;
    return `<td class="cell s-${state}">${text}</td>`;
  }).join("") + "</tr>").join("");
}
let failures = 0;
async function refresh() {
  try {
    const r = await fetch("/status.json?only=problems", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    failures = 0;
    document.getElementById("refresh").textContent = "refreshed " + new Date().toLocaleTimeString();
  } catch (e) {
    failures += 1;
    const banner = document.getElementById("banner");
    banner.hidden = false;
    banner.textContent = "Cannot reach the agent (" + e.message + "): the figures below may be out of date.";
  }
}
render(JSON.parse(document.getElementById("initial").textContent));
setInterval(refresh, REFRESH_MS);
</script></body></html>
"""


def page(snapshot_json: bytes) -> bytes:
    """The page with the snapshot inline; '</' is escaped so no value can close the script element."""
    return PAGE.replace("__DATA__", snapshot_json.decode().replace("</", "<\\/")).encode()
