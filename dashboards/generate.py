#!/usr/bin/env python3
"""Write Lifeline's Grafana dashboards (``dashboards/*.json``) from one description.

The JSON files are committed and provisioned as they are; this script keeps the
four of them consistent (datasource variable, filters, links, units) and
``tests/test_dashboards.py`` fails if they drift from it. Run it after editing:

    python3 dashboards/generate.py

Targets Grafana 10.0 or later (schemaVersion 38). Every panel and query points
at the ``${datasource}`` variable; uids are fixed so links between dashboards
and from alert annotations keep working.
"""

from __future__ import annotations

import json
import os
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_VERSION = 38
DS = {"type": "prometheus", "uid": "${datasource}"}

# Label filters shared by every query; `=~` so that "All" (.*) and one value both work.
SEL = 'instance=~"$instance",tier=~"$tier",site=~"$site",category=~"$category"'
TSEL = 'instance=~"$instance",target=~"$target"'  # one target (target detail, SNMP views)
TIER_SEL = 'instance=~"$instance",tier=~"$tier"'


# ---------------------------------------------------------------- building blocks

def query(expr: str, ref: str = "A", legend: str = "", instant: bool = False, fmt: str = "time_series") -> dict:
    q = {"datasource": DS, "refId": ref, "expr": expr.strip(), "legendFormat": legend or "__auto",
         "range": not instant, "instant": instant, "format": fmt, "editorMode": "code"}
    return q


def panel(kind: str, title: str, grid: tuple[int, int, int, int], targets: list[dict], *,
          description: str = "", unit: str | None = None, options: dict | None = None,
          defaults: dict | None = None, overrides: list | None = None,
          transformations: list | None = None) -> dict:
    x, y, w, h = grid
    field_defaults: dict[str, Any] = {}
    if unit:
        field_defaults["unit"] = unit
    field_defaults.update(defaults or {})
    return {
        "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "transformations": transformations or [],
    }


def row(title: str, y: int) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": []}


def thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}}


STATE_MAPPINGS = {"mappings": [{"type": "value", "options": {
    "0": {"text": "OK", "color": "green", "index": 0},
    "1": {"text": "DEGRADED", "color": "orange", "index": 1},
    "2": {"text": "DOWN", "color": "red", "index": 2}}}]}
UP_MAPPINGS = {"mappings": [{"type": "value", "options": {
    "0": {"text": "DOWN", "color": "red", "index": 0},
    "1": {"text": "UP", "color": "green", "index": 1}}}]}
IF_STATUS_MAPPINGS = {"mappings": [{"type": "value", "options": {
    "1": {"text": "up", "color": "green", "index": 0}, "2": {"text": "down", "color": "red", "index": 1},
    "3": {"text": "testing", "color": "blue", "index": 2}, "4": {"text": "unknown", "color": "gray", "index": 3},
    "5": {"text": "dormant", "color": "purple", "index": 4},
    "6": {"text": "notPresent", "color": "gray", "index": 5},
    "7": {"text": "lowerLayerDown", "color": "red", "index": 6}}}]}


def target_link(field: str = "target") -> dict:
    """Data link from a table's target column to the target detail dashboard."""
    return {"matcher": {"id": "byName", "options": field}, "properties": [{"id": "links", "value": [{
        "title": "Target detail",
        "url": "/d/lifeline-target/lifeline-target-detail?var-target=${__value.raw}&${datasource:queryparam}"
               "&${__url_time_range}"}]}]}


def flag_stat(title: str, pos: tuple[int, int, int, int], target: dict, zero: tuple[str, str],
              one: tuple[str, str], text_mode: str = "value", **extra: Any) -> dict:
    """A stat panel for a 0/1 series: each value's (text, colour) as the background."""
    return panel("stat", title, pos, [target],
                 defaults={"mappings": [{"type": "value", "options": {
                     "0": {"text": zero[0], "color": zero[1], "index": 0},
                     "1": {"text": one[0], "color": one[1], "index": 1}}}]},
                 options={"colorMode": "background", "graphMode": "none", "textMode": text_mode,
                          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}, **extra)


def table_transform(rename: dict[str, str], exclude: tuple[str, ...] = (), sort: tuple[str, bool] | None = None,
                    order: tuple[str, ...] = ()) -> list[dict]:
    """Merge instant queries into one table, optionally sort, then rename and hide columns."""
    out: list[dict] = [{"id": "merge", "options": {}}]
    if sort:
        out.append({"id": "sortBy", "options": {"sort": [{"field": sort[0], "desc": sort[1]}]}})
    out.append({"id": "organize", "options": {
        "excludeByName": {"Time": True, "job": True, **{k: True for k in exclude}},
        "renameByName": rename,
        "indexByName": {name: i for i, name in enumerate(order)}}})
    return out


def variable(name: str, label: str, query_text: str, *, multi: bool = True, include_all: bool = True) -> dict:
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "definition": query_text, "query": {"query": query_text, "refId": f"{name}-variable"},
        "refresh": 2, "sort": 1, "multi": multi, "includeAll": include_all,
        "allValue": ".*" if include_all else None, "current": {}, "options": [], "hide": 0, "regex": "",
    }


def datasource_variable() -> dict:
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "options": [], "hide": 0, "refresh": 1, "regex": ""}


def filters(*, target: str | None = None) -> list[dict]:
    """Datasource, agent and the tier > site > category (> target) cascade."""
    out = [
        datasource_variable(),
        variable("instance", "Agent", "label_values(lifeline_build_info, instance)"),
        variable("tier", "Tier", 'label_values(lifeline_tier_info{instance=~"$instance"}, tier)'),
        variable("site", "Site", 'label_values(lifeline_target_info{instance=~"$instance",tier=~"$tier"}, site)'),
        variable("category", "Category",
                 'label_values(lifeline_target_info{instance=~"$instance",tier=~"$tier",site=~"$site"}, category)'),
    ]
    if target == "single":
        out.append(variable("target", "Target", f"label_values(lifeline_target_info{{{SEL}}}, target)",
                            multi=False, include_all=False))
    elif target == "multi":
        out.append(variable("target", "Target", f"label_values(lifeline_target_info{{{SEL}}}, target)"))
    return out


def dashboard(uid: str, title: str, description: str, panels: list[dict], templating: list[dict], *,
              time_from: str = "now-1h", refresh: str = "10s", tags: tuple[str, ...] = ()) -> dict:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "id": None, "uid": uid, "title": title, "description": description,
        "tags": ["lifeline", *tags], "timezone": "", "editable": True, "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": refresh,
        "time": {"from": time_from, "to": "now"}, "timepicker": {},
        "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "type": "dashboard", "name": "Annotations & Alerts", "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "datasource": {"type": "grafana", "uid": "-- Grafana --"}}]},
        "links": [{"type": "dashboards", "tags": ["lifeline"], "asDropdown": True, "title": "Lifeline",
                   "includeVars": False, "keepTime": True, "targetBlank": False, "icon": "external link",
                   "tooltip": "", "url": ""}],
        "templating": {"list": templating},
        "panels": panels,
    }


# ---------------------------------------------------------------- NOC overview

def noc_overview() -> dict:
    degraded_or_down = f"lifeline_target:health:state{{{SEL}}}"
    panels = [
        panel("stat", "P0 targets down", (0, 0, 5, 5), [query(
            f"sum(lifeline_tier:targets_down:count{{{TIER_SEL}}} "
            f"and on (job, instance, tier) (lifeline_tier_priority == 0))", instant=True)],
            description="Targets of the most urgent tier (priority 0) whose last cycle failed.",
            defaults={**thresholds((None, "green"), (1, "red")), "noValue": "0"},
            options={"colorMode": "background", "graphMode": "none", "textMode": "value",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Critical-tier targets down", (5, 0, 5, 5), [query(
            f"sum(lifeline_tier:targets_down:count{{{TIER_SEL}}} "
            f"and on (job, instance, tier) lifeline_tier_info{{severity=\"critical\"}})", instant=True)],
            description="Down targets in every tier whose outages page (P0, P1 and custom critical tiers).",
            defaults={**thresholds((None, "green"), (1, "red")), "noValue": "0"},
            options={"colorMode": "background", "graphMode": "none", "textMode": "value",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Services down", (10, 0, 5, 5), [query(
            f"sum(lifeline_tier:services_down:count{{{TIER_SEL}}}) or vector(0)", instant=True)],
            description="Targets whose service check (tcp, http, dns, sip, rtsp) failed its last cycle, "
                        "whether or not the circuit itself answers pings: a reachable hotline with a dead "
                        "SIP server counts here.",
            defaults=thresholds((None, "green"), (1, "red")),
            options={"colorMode": "background", "graphMode": "none", "textMode": "value",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Degraded targets", (15, 0, 5, 5), [query(
            f"count({degraded_or_down} == 1) or vector(0)", instant=True)],
            description="Answering, but loss or mean RTT over 5m above the tier's warn threshold.",
            defaults=thresholds((None, "green"), (1, "orange")),
            options={"colorMode": "background", "graphMode": "none", "textMode": "value",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Firing alerts", (20, 0, 4, 5), [query(
            'count(ALERTS{alertstate="firing",alertname=~"Lifeline.*",instance=~"$instance"}) or vector(0)',
            instant=True)],
            defaults=thresholds((None, "green"), (1, "red")),
            options={"colorMode": "background", "graphMode": "none", "textMode": "value",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),

        panel("table", "Tier status (most urgent first)", (0, 5, 24, 7), [
            query(f"min by (tier) (lifeline_tier_priority{{{TIER_SEL}}})", "A", instant=True, fmt="table"),
            query(f"max by (tier, severity) (lifeline_tier_info{{{TIER_SEL}}})", "B", instant=True, fmt="table"),
            query(f"sum by (tier) (lifeline_tier_targets{{{TIER_SEL}}})", "C", instant=True, fmt="table"),
            query(f"sum by (tier) (lifeline_tier:targets_down:count{{{TIER_SEL}}})", "D", instant=True, fmt="table"),
            query(f"count by (tier) ({degraded_or_down} == 1) "
                  f"or sum by (tier) (0 * lifeline_tier_targets{{{TIER_SEL}}})", "E", instant=True, fmt="table"),
            query(f"avg by (tier) (lifeline_target:availability:ratio_5m{{{SEL}}})", "F", instant=True, fmt="table"),
            query(f"avg by (tier) (lifeline_target:availability:ratio_1h{{{SEL}}})", "G", instant=True, fmt="table"),
            query(f"sum by (tier) (lifeline_tier:services_down:count{{{TIER_SEL}}}) "
                  f"or sum by (tier) (0 * lifeline_tier_targets{{{TIER_SEL}}})", "H", instant=True, fmt="table"),
        ], transformations=table_transform(
            {"Value #A": "priority", "Value #C": "targets", "Value #D": "down", "Value #H": "services down",
             "Value #E": "degraded", "Value #F": "availability 5m", "Value #G": "availability 1h"},
            exclude=("Value #B",), sort=("Value #A", False),
            order=("tier", "severity", "Value #A", "Value #C", "Value #D", "Value #H", "Value #E", "Value #F",
                   "Value #G")),
            overrides=[
                {"matcher": {"id": "byRegexp", "options": "down|services down"}, "properties": [
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    {"id": "thresholds", "value": thresholds((None, "green"), (1, "red"))["thresholds"]}]},
                {"matcher": {"id": "byName", "options": "degraded"}, "properties": [
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    {"id": "thresholds", "value": thresholds((None, "green"), (1, "orange"))["thresholds"]}]},
                {"matcher": {"id": "byRegexp", "options": "availability.*"}, "properties": [
                    {"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 3}]}],
            options={"showHeader": True, "cellHeight": "sm"}),

        panel("table", "Down and degraded targets (down first, then by tier priority)", (0, 12, 24, 10), [
            # rank: state first (down 2 > degraded 1), then the tier's priority (0 most urgent).
            query(f"{degraded_or_down} > 0", "A", instant=True, fmt="table"),
            query(f"1000 * ({degraded_or_down} > 0) - on (job, instance, tier) group_left lifeline_tier_priority",
                  "B", instant=True, fmt="table"),
            query(f"lifeline_target:icmp_loss:ratio_5m{{{SEL}}} and on (job, instance, target) ({degraded_or_down} > 0)",
                  "C", instant=True, fmt="table"),
            query(f"lifeline_target:icmp_rtt_mean:seconds_5m{{{SEL}}} "
                  f"and on (job, instance, target) ({degraded_or_down} > 0)", "D", instant=True, fmt="table"),
            query(f"lifeline_target_info{{{SEL}}} and on (job, instance, target) ({degraded_or_down} > 0)",
                  "E", instant=True, fmt="table"),
        ], description="Circuit details come from the target's labels (lifeline_target_info).",
            transformations=table_transform(
                {"Value #A": "state", "Value #C": "loss 5m", "Value #D": "mean RTT 5m"},
                exclude=("Value #B", "Value #E", "__name__"), sort=("Value #B", True),
                order=("Value #A", "tier", "target", "site", "category", "Value #C", "Value #D", "address",
                       "circuit_id", "carrier", "contact")),
            overrides=[
                {"matcher": {"id": "byName", "options": "state"}, "properties": [
                    {"id": "mappings", "value": STATE_MAPPINGS["mappings"]},
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}}]},
                {"matcher": {"id": "byName", "options": "loss 5m"}, "properties": [{"id": "unit", "value": "percentunit"}]},
                {"matcher": {"id": "byName", "options": "mean RTT 5m"}, "properties": [{"id": "unit", "value": "s"}]},
                target_link()],
            options={"showHeader": True, "cellHeight": "sm"}),

        panel("state-timeline", "Recent state changes (targets that changed in the time range)", (0, 22, 24, 8), [
            query(f"lifeline_target_up{{{SEL}}} and on (job, instance, target) "
                  f"(changes(lifeline_target_up{{{SEL}}}[$__range]) > 0)", legend="{{tier}} {{target}}")],
            defaults={**UP_MAPPINGS, "color": {"mode": "thresholds"}, **thresholds((None, "red"), (1, "green"))},
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                     "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"}}),

        panel("table", "Firing alerts", (0, 30, 24, 7), [query(
            'ALERTS{alertstate="firing",alertname=~"Lifeline.*",instance=~"$instance"}', instant=True, fmt="table")],
            transformations=table_transform({}, exclude=("Value", "__name__", "alertstate")),
            overrides=[target_link()], options={"showHeader": True, "cellHeight": "sm"}),

        panel("table", "Suppressed targets (maintenance, parent, isolation)", (0, 37, 24, 7), [query(
            f"lifeline_target_suppressed{{{TIER_SEL}}} "
            f"* on (job, instance, target, tier) group_left (site, category) lifeline_target_info{{{SEL}}}",
            instant=True, fmt="table")],
            description="Targets whose alerts are suppressed right now, and why (cause): maintenance is an active "
                        "maintenance window of the agent's config; parent means a target it depends_on is down (or "
                        "has just recovered and this one's fresh probe is not in yet); isolated means every anchor "
                        "of that agent is down, so its probe site is cut off. Probing goes on; a target still down "
                        "when its suppression ends pages at once.",
            transformations=table_transform({}, exclude=("Value", "__name__"),
                                             order=("cause", "tier", "target", "site", "category", "instance")),
            overrides=[target_link()], options={"showHeader": True, "cellHeight": "sm"}),

        row("Agent health (if these are bad, the numbers above are suspect)", 44),
        panel("timeseries", "Scrape status", (0, 45, 6, 6),
              [query('up{job="lifeline",instance=~"$instance"}', legend="{{instance}}")],
              defaults={"min": 0, "max": 1, **UP_MAPPINGS}),
        panel("timeseries", "Cycle start lag p99 by tier", (6, 45, 6, 6), [query(
            "histogram_quantile(0.99, sum by (tier, le) "
            f"(rate(lifeline_scheduler_lag_seconds_bucket{{{TIER_SEL}}}[$__rate_interval])))", legend="{{tier}}")],
            unit="s"),
        panel("timeseries", "Skipped cycles by tier", (12, 45, 6, 6), [query(
            f"sum by (tier) (increase(lifeline_scheduler_skipped_cycles_total{{{TIER_SEL}}}[$__rate_interval])) "
            f"or sum by (tier) (0 * lifeline_tier_targets{{{TIER_SEL}}})", legend="{{tier}}")], unit="short"),
        panel("timeseries", "Cycles in flight and queued", (18, 45, 6, 6), [
            query('sum(lifeline_scheduler_in_flight{instance=~"$instance"})', "A", legend="in flight"),
            query('sum(lifeline_scheduler_queued{instance=~"$instance"})', "B", legend="queued")], unit="short"),
        panel("timeseries", "Agent CPU", (0, 51, 8, 6), [query(
            'rate(process_cpu_seconds_total{job="lifeline",instance=~"$instance"}[$__rate_interval])',
            legend="{{instance}}")], unit="percentunit"),
        flag_stat("Config reload", (8, 51, 8, 6), query(
            'min(lifeline_config_last_reload_successful{instance=~"$instance"})', instant=True),
            ("FAILED (old config kept)", "red"), ("OK", "green")),
        panel("table", "Agent versions", (16, 51, 8, 6), [query(
            'lifeline_build_info{instance=~"$instance"}', instant=True, fmt="table")],
            transformations=table_transform({}, exclude=("Value", "__name__"))),
        flag_stat("Probe site (anchors)", (0, 57, 8, 5), query(
            'lifeline_agent_isolated{instance=~"$instance"}', instant=True, legend="{{instance}}"),
            ("connected", "green"), ("ISOLATED", "red"), text_mode="value_and_name",
            description="ISOLATED: every anchor of the agent failed twice in a row; one page says so and its "
                        "targets' failures are suppressed (cause isolated). No value: the agent has no anchors."),
        panel("table", "Anchors", (8, 57, 8, 5), [query(
            'lifeline_anchor_up{instance=~"$instance"}', instant=True, fmt="table")],
            transformations=table_transform({"Value": "up"}, exclude=("__name__", "job"))),
        panel("table", "Seen down from one vantage only (multi-vantage consensus)", (16, 57, 8, 5), [query(
            'ALERTS{alertstate="firing",alertname="LifelineTargetDownFromVantage"}', instant=True, fmt="table")],
            description="Targets one probe site sees down while the other vantages still reach them: that "
                        "site's path, not the circuit. Empty without --vantage.",
            transformations=table_transform({}, exclude=("Value", "__name__", "alertstate", "alertname", "team")),
            overrides=[target_link()], options={"showHeader": True, "cellHeight": "sm"}),
    ]
    return dashboard("lifeline-noc", "Lifeline NOC overview",
                     "Tier status at a glance; down and degraded circuits first, P0 on top.",
                     panels, filters(), tags=("noc",))


# ---------------------------------------------------------------- target detail

def target_detail() -> dict:
    panels = [
        # The recorded state has series only for down and degraded targets; an ok one is 0 here.
        panel("stat", "State", (0, 0, 4, 4), [query(
            f"lifeline_target:health:state{{{TSEL}}} or max by (job, instance, target, tier, category, site) "
            f"(0 * lifeline_target_up{{{TSEL}}})", instant=True)],
              defaults=STATE_MAPPINGS, options={"colorMode": "background", "graphMode": "none",
                                                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Loss 5m", (4, 0, 4, 4), [query(f"lifeline_target:icmp_loss:ratio_5m{{{TSEL}}}", instant=True)],
              unit="percentunit", options={"graphMode": "none",
                                           "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Mean RTT 5m", (8, 0, 4, 4),
              [query(f"lifeline_target:icmp_rtt_mean:seconds_5m{{{TSEL}}}", instant=True)], unit="s",
              options={"graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Availability 1d", (12, 0, 4, 4),
              [query(f"lifeline_target:availability:ratio_1d{{{TSEL}}}", instant=True)], unit="percentunit",
              description="The last 24 hourly buckets: moves once an hour, up to an hour behind.",
              defaults={"decimals": 3},
              options={"graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("table", "Circuit", (16, 0, 8, 4), [query(f"lifeline_target_info{{{TSEL}}}", instant=True, fmt="table")],
              transformations=table_transform({}, exclude=("Value", "__name__", "instance"))),

        panel("heatmap", "RTT distribution (smokeping)", (0, 4, 24, 10), [query(
            f"sum by (le) (increase(lifeline_icmp_rtt_seconds_bucket{{{TSEL}}}[$__rate_interval]))",
            legend="{{le}}", fmt="heatmap")],
            description="Replies per RTT bucket over time: a thin band is a stable circuit, a smear is jitter, "
                        "a second band is a reroute. Empty for a tier with rtt_histogram: false.",
            options={"calculate": False, "cellGap": 0, "color": {"mode": "scheme", "scheme": "Spectral",
                                                                  "scale": "exponential", "exponent": 0.5,
                                                                  "reverse": True, "steps": 64},
                     "yAxis": {"unit": "s", "axisPlacement": "left"}, "rowsFrame": {"layout": "auto"},
                     "cellValues": {"unit": "short"}, "tooltip": {"show": True, "yHistogram": True},
                     "legend": {"show": True}, "exemplars": {"color": "rgba(255,0,255,0.7)"},
                     "filterValues": {"le": 1e-9}}),
        panel("timeseries", "RTT min / avg / max per cycle", (0, 14, 12, 8), [
            query(f"lifeline_icmp_rtt_min_seconds{{{TSEL}}}", "A", legend="min"),
            query(f"lifeline_icmp_rtt_avg_seconds{{{TSEL}}}", "B", legend="avg"),
            query(f"lifeline_icmp_rtt_max_seconds{{{TSEL}}}", "C", legend="max"),
            query(f"lifeline_tier_rtt_warn_seconds and on (job, instance, tier) lifeline_target_info{{{TSEL}}}",
                  "D", legend="warn threshold"),
            query(f"lifeline_tier_rtt_crit_seconds and on (job, instance, tier) lifeline_target_info{{{TSEL}}}",
                  "E", legend="crit threshold")], unit="s"),
        panel("timeseries", "Packet loss", (12, 14, 12, 8), [
            query(f"lifeline_icmp_loss_ratio{{{TSEL}}}", "A", legend="per cycle"),
            query(f"lifeline_target:icmp_loss:ratio_5m{{{TSEL}}}", "B", legend="5m"),
            query(f"lifeline_tier_loss_warn_ratio and on (job, instance, tier) lifeline_target_info{{{TSEL}}}",
                  "C", legend="warn threshold"),
            query(f"lifeline_tier_loss_crit_ratio and on (job, instance, tier) lifeline_target_info{{{TSEL}}}",
                  "D", legend="crit threshold")], unit="percentunit", defaults={"min": 0, "max": 1}),
        panel("timeseries", "Jitter per cycle", (0, 22, 12, 7),
              [query(f"lifeline_icmp_jitter_seconds{{{TSEL}}}", legend="jitter")], unit="s"),
        panel("state-timeline", "Up / down", (12, 22, 12, 4),
              [query(f"lifeline_target_up{{{TSEL}}}", legend="{{target}}")],
              defaults={**UP_MAPPINGS, "color": {"mode": "thresholds"}, **thresholds((None, "red"), (1, "green"))},
              options={"showValue": "never", "mergeValues": True,
                       "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"}}),
        panel("timeseries", "Failed cycles by probe and reason", (12, 26, 12, 3), [query(
            f"sum by (probe, reason) (increase(lifeline_probe_failures_total{{{TSEL}}}[$__rate_interval]))",
            legend="{{probe}} {{reason}}")], unit="short"),

        row("Services: where the time goes, and the certificate", 29),
        panel("timeseries", "Probe cycle duration by phase", (0, 30, 12, 8), [query(
            f"lifeline_probe_duration_seconds{{{TSEL}}}", legend="{{probe}} {{phase}}")], unit="s",
            description="The last cycle of each probe: total, and for service probes resolve, connect, TLS, "
                        "first byte and transfer. A slow TLS phase with a fast connect is the server, not the line."),
        panel("table", "Certificate (leaf) and earliest expiry in the chain", (12, 30, 12, 8), [
            query(f"lifeline_tls_cert_info{{{TSEL}}}", "A", instant=True, fmt="table"),
            query(f"lifeline_tls_cert_not_after_timestamp_seconds{{{TSEL}}} - time()", "B", instant=True,
                  fmt="table")],
            description="Expiry is the earliest not-after among every certificate the server sent, "
                        "intermediates included.",
            transformations=table_transform({"Value #B": "expires in"},
                                            exclude=("Value #A", "__name__", "instance", "job")),
            overrides=[{"matcher": {"id": "byName", "options": "expires in"}, "properties": [
                {"id": "unit", "value": "s"},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                {"id": "thresholds", "value": thresholds((None, "red"), (3 * 86400, "orange"),
                                                         (14 * 86400, "green"))["thresholds"]}]}]),

        row("SNMP: this target's device and interfaces", 38),
        panel("table", "Device", (0, 39, 12, 5), [
            query(f"lifeline_snmp_info{{{TSEL}}}", "A", instant=True, fmt="table"),
            query(f"lifeline_snmp_up{{{TSEL}}}", "B", instant=True, fmt="table"),
            query(f"lifeline_snmp_sys_uptime_seconds{{{TSEL}}}", "C", instant=True, fmt="table")],
            transformations=table_transform({"Value #B": "snmp up", "Value #C": "uptime"},
                                            exclude=("Value #A", "__name__", "instance")),
            overrides=[{"matcher": {"id": "byName", "options": "uptime"},
                        "properties": [{"id": "unit", "value": "s"}]}]),
        panel("table", "Interfaces", (12, 39, 12, 5), [
            query(f"lifeline_snmp_if_info{{{TSEL}}}", "A", instant=True, fmt="table"),
            query(f"lifeline_snmp_if_admin_status{{{TSEL}}}", "B", instant=True, fmt="table"),
            query(f"lifeline_snmp_if_oper_status{{{TSEL}}}", "C", instant=True, fmt="table")],
            transformations=table_transform({"Value #B": "admin", "Value #C": "oper"},
                                            exclude=("Value #A", "__name__", "instance")),
            overrides=[{"matcher": {"id": "byRegexp", "options": "admin|oper"}, "properties": [
                {"id": "mappings", "value": IF_STATUS_MAPPINGS["mappings"]},
                {"id": "custom.cellOptions", "value": {"type": "color-text"}}]}]),
        panel("timeseries", "Interface utilisation", (0, 44, 12, 8), [
            query(f"lifeline_if:in_utilisation:ratio_5m{{{TSEL}}}", "A", legend="{{ifname}} in"),
            query(f"lifeline_if:out_utilisation:ratio_5m{{{TSEL}}}", "B", legend="{{ifname}} out")],
            unit="percentunit"),
        panel("timeseries", "Interface errors and discards", (12, 44, 12, 8), [
            query(f"rate(lifeline_snmp_if_in_errors_total{{{TSEL}}}[$__rate_interval])", "A",
                  legend="{{ifname}} in errors"),
            query(f"rate(lifeline_snmp_if_out_errors_total{{{TSEL}}}[$__rate_interval])", "B",
                  legend="{{ifname}} out errors"),
            query(f"rate(lifeline_snmp_if_in_discards_total{{{TSEL}}}[$__rate_interval])", "C",
                  legend="{{ifname}} in discards"),
            query(f"rate(lifeline_snmp_if_out_discards_total{{{TSEL}}}[$__rate_interval])", "D",
                  legend="{{ifname}} out discards")], unit="pps"),
    ]
    return dashboard("lifeline-target", "Lifeline target detail",
                     "One circuit: RTT distribution, loss, jitter, state, its service checks and its device's interfaces.",
                     panels, filters(target="single"), tags=("target",))


# ---------------------------------------------------------------- SNMP interfaces

def snmp_interfaces() -> dict:
    sel = f'{TSEL},ifname=~"$ifname"'
    panels = [
        panel("stat", "Devices answering SNMP", (0, 0, 6, 4), [query(
            f"sum(lifeline_snmp_up{{{TSEL}}})", instant=True)], options={"graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Devices not answering", (6, 0, 6, 4), [query(
            f"count(lifeline_snmp_up{{{TSEL}}} == 0) or vector(0)", instant=True)],
            defaults=thresholds((None, "green"), (1, "red")),
            options={"colorMode": "background", "graphMode": "none",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Interfaces down (admin up)", (12, 0, 6, 4), [query(
            f"count((lifeline_snmp_if_oper_status{{{sel}}} != 1) and on (job, instance, target, ifindex) "
            f"(lifeline_snmp_if_admin_status == 1)) or vector(0)", instant=True)],
            defaults=thresholds((None, "green"), (1, "red")),
            options={"colorMode": "background", "graphMode": "none",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("stat", "Reboots in the time range", (18, 0, 6, 4), [query(
            f"sum(increase(lifeline_snmp_reboots_total{{{TSEL}}}[$__range]))", instant=True)],
            defaults=thresholds((None, "green"), (1, "orange")),
            options={"colorMode": "background", "graphMode": "none",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),

        panel("table", "Interfaces (problems first)", (0, 4, 24, 10), [
            query(f"lifeline_snmp_if_info{{{sel}}}", "A", instant=True, fmt="table"),
            query(f"lifeline_snmp_if_admin_status{{{sel}}}", "B", instant=True, fmt="table"),
            query(f"lifeline_snmp_if_oper_status{{{sel}}}", "C", instant=True, fmt="table"),
            query(f"lifeline_snmp_if_speed_bits_per_second{{{sel}}}", "D", instant=True, fmt="table"),
            query(f"lifeline_if:in_utilisation:ratio_5m{{{sel}}}", "E", instant=True, fmt="table"),
            query(f"lifeline_if:out_utilisation:ratio_5m{{{sel}}}", "F", instant=True, fmt="table"),
            query(f"rate(lifeline_snmp_if_in_errors_total{{{sel}}}[5m]) + rate(lifeline_snmp_if_out_errors_total{{{sel}}}[5m])",
                  "G", instant=True, fmt="table"),
        ], transformations=table_transform(
            {"Value #B": "admin", "Value #C": "oper", "Value #D": "speed", "Value #E": "in", "Value #F": "out",
             "Value #G": "errors/s"},
            exclude=("Value #A", "__name__", "instance"), sort=("Value #C", True),
            order=("tier", "target", "ifname", "ifalias", "Value #B", "Value #C", "Value #D", "Value #E",
                   "Value #F", "Value #G")),
            overrides=[
                {"matcher": {"id": "byRegexp", "options": "admin|oper"}, "properties": [
                    {"id": "mappings", "value": IF_STATUS_MAPPINGS["mappings"]},
                    {"id": "custom.cellOptions", "value": {"type": "color-text"}}]},
                {"matcher": {"id": "byName", "options": "speed"}, "properties": [{"id": "unit", "value": "bps"}]},
                {"matcher": {"id": "byRegexp", "options": "^(in|out)$"}, "properties": [
                    {"id": "unit", "value": "percentunit"},
                    {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}},
                    {"id": "min", "value": 0}, {"id": "max", "value": 1}]},
                target_link()]),

        panel("timeseries", "Busiest interfaces in (top 10)", (0, 14, 12, 8), [query(
            f"topk(10, lifeline_if:in_utilisation:ratio_5m{{{sel}}})", legend="{{target}} {{ifname}}")],
            unit="percentunit"),
        panel("timeseries", "Busiest interfaces out (top 10)", (12, 14, 12, 8), [query(
            f"topk(10, lifeline_if:out_utilisation:ratio_5m{{{sel}}})", legend="{{target}} {{ifname}}")],
            unit="percentunit"),
        panel("timeseries", "Errors (top 10)", (0, 22, 12, 8), [query(
            f"topk(10, rate(lifeline_snmp_if_in_errors_total{{{sel}}}[$__rate_interval]) "
            f"+ rate(lifeline_snmp_if_out_errors_total{{{sel}}}[$__rate_interval]))", legend="{{target}} {{ifname}}")],
            unit="pps"),
        panel("timeseries", "Discards (top 10)", (12, 22, 12, 8), [query(
            f"topk(10, rate(lifeline_snmp_if_in_discards_total{{{sel}}}[$__rate_interval]) "
            f"+ rate(lifeline_snmp_if_out_discards_total{{{sel}}}[$__rate_interval]))", legend="{{target}} {{ifname}}")],
            unit="pps"),
        panel("timeseries", "SNMP poll duration", (0, 30, 12, 7), [query(
            f"lifeline_snmp_poll_duration_seconds{{{TSEL}}}", legend="{{target}}")], unit="s"),
        panel("table", "Devices", (12, 30, 12, 7), [
            query(f"lifeline_snmp_info{{{TSEL}}}", "A", instant=True, fmt="table"),
            query(f"lifeline_snmp_sys_uptime_seconds{{{TSEL}}}", "B", instant=True, fmt="table")],
            transformations=table_transform({"Value #B": "uptime"}, exclude=("Value #A", "__name__", "instance")),
            overrides=[{"matcher": {"id": "byName", "options": "uptime"},
                        "properties": [{"id": "unit", "value": "s"}]}, target_link()]),
    ]
    templating = filters(target="multi") + [variable(
        "ifname", "Interface", 'label_values(lifeline_snmp_if_info{instance=~"$instance",target=~"$target"}, ifname)')]
    return dashboard("lifeline-snmp", "Lifeline SNMP interfaces",
                     "Status, utilisation and errors of the interfaces the agent polls.",
                     panels, templating, tags=("snmp",))


# ---------------------------------------------------------------- tier SLA

def tier_sla() -> dict:
    def avail(window: str, by: str) -> str:
        # 1m buckets recorded by lifeline.recording.minute tile time exactly, so averaging them over any
        # window is the time-weighted availability (1d is also pre-recorded).
        if window == "1d":
            return f"avg by ({by}) (lifeline_target:availability:ratio_1d{{{SEL}}})"
        return f"avg by ({by}) (avg_over_time(lifeline_target:up:avg1m{{{SEL}}}[{window}]))"

    pct = [{"matcher": {"id": "byRegexp", "options": "availability.*|loss.*"}, "properties": [
        {"id": "unit", "value": "percentunit"}, {"id": "decimals", "value": 3}]}]
    panels = [
        panel("table", "Availability per tier", (0, 0, 24, 7), [
            query(f"min by (tier) (lifeline_tier_priority{{{TIER_SEL}}})", "A", instant=True, fmt="table"),
            query(avail("1d", "tier"), "B", instant=True, fmt="table"),
            query(avail("7d", "tier"), "C", instant=True, fmt="table"),
            query(avail("30d", "tier"), "D", instant=True, fmt="table"),
            query(f"avg by (tier) (lifeline_target:icmp_loss:ratio_1d{{{SEL}}})", "E", instant=True, fmt="table"),
        ], description="Share of probe cycles in which the target answered, averaged over the tier's targets.",
            transformations=table_transform(
                {"Value #A": "priority", "Value #B": "availability 1d", "Value #C": "availability 7d",
                 "Value #D": "availability 30d", "Value #E": "loss 1d"},
                sort=("Value #A", False),
                order=("tier", "Value #A", "Value #B", "Value #C", "Value #D", "Value #E")),
            overrides=pct),
        panel("table", "Availability per target (worst 30d first)", (0, 7, 24, 12), [
            query(avail("1d", "tier, target, site, category"), "A", instant=True, fmt="table"),
            query(avail("7d", "tier, target, site, category"), "B", instant=True, fmt="table"),
            query(avail("30d", "tier, target, site, category"), "C", instant=True, fmt="table"),
            query(f"avg by (tier, target, site, category) (lifeline_target:icmp_loss:ratio_1d{{{SEL}}})",
                  "D", instant=True, fmt="table"),
        ], transformations=table_transform(
            {"Value #A": "availability 1d", "Value #B": "availability 7d", "Value #C": "availability 30d",
             "Value #D": "loss 1d"}, sort=("Value #C", False),
            order=("tier", "target", "site", "category", "Value #A", "Value #B", "Value #C", "Value #D")),
            overrides=[*pct, target_link()]),
        panel("timeseries", "Daily availability by tier (rolling 1d)", (0, 19, 24, 8), [query(
            avail("1d", "tier"), legend="{{tier}}")], unit="percentunit", defaults={"decimals": 3, "max": 1}),
    ]
    return dashboard("lifeline-sla", "Lifeline tier SLA",
                     "Availability per tier and target over 1d, 7d and 30d.",
                     panels, filters(), time_from="now-30d", refresh="5m", tags=("sla",))


DASHBOARDS = {
    "noc-overview.json": noc_overview,
    "target-detail.json": target_detail,
    "snmp-interfaces.json": snmp_interfaces,
    "tier-sla.json": tier_sla,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, sort_keys=False) + "\n" for name, build in DASHBOARDS.items()}


def main() -> None:
    for name, text in render().items():
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote dashboards/{name}")


if __name__ == "__main__":
    main()
