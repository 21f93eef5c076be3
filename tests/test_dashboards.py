"""Grafana dashboards: the model essentials Grafana needs, and every query valid PromQL.

No Grafana server can run here, so this checks what makes a provisioned
dashboard open cleanly: fixed unique uids, ``id: null``, the ``${datasource}``
variable on every panel and query (no hard-coded datasource uid), the filter
variables, ``$__rate_interval`` in range queries, a layout that fits, and every
panel expression and variable query parsing as PromQL (promtool). Whether the
queries return data is checked against a real Prometheus in test_e2e_alerting.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml

from tests import grafana_model as gm
from tests.helpers import require_tool

FILES = gm.dashboard_files()
IDS = [os.path.basename(f) for f in FILES]
DS_REF = {"type": "prometheus", "uid": "${datasource}"}
EXPECTED = {"noc-overview.json", "target-detail.json", "snmp-interfaces.json", "tier-sla.json"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


def test_all_four_dashboards_exist():
    assert EXPECTED <= set(IDS)


def test_committed_json_matches_generator():
    from dashboards import generate

    for name, text in generate.render().items():
        with open(os.path.join(gm.DASHBOARD_DIR, name), encoding="utf-8") as fh:
            assert fh.read() == text, f"dashboards/{name} differs from generate.py; run python3 dashboards/generate.py"


def test_uids_fixed_and_unique_ids_null():
    uids = []
    for path in FILES:
        dash = gm.load(path)
        assert dash.get("id") is None, f"{path}: id must be null so provisioning assigns it"
        assert re.fullmatch(r"[a-z0-9-]{1,40}", dash.get("uid") or ""), f"{path}: fixed short uid required"
        assert dash.get("title") and isinstance(dash.get("schemaVersion"), int)
        uids.append(dash["uid"])
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_datasource_is_a_variable_used_everywhere(path):
    dash = gm.load(path)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables.get("datasource")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus"
    for p in gm.panels(dash):
        if p["type"] == "row":
            continue
        assert p.get("datasource") == DS_REF, f"panel {p['title']!r}: datasource must be ${{datasource}}"
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t.get("datasource") == DS_REF, f"panel {p['title']!r} query {t['refId']}: datasource"
    for v in variables.values():
        if v["type"] == "query":
            assert v.get("datasource") == DS_REF, f"variable {v['name']}: datasource must be ${{datasource}}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_no_hard_coded_datasource(path):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    assert "__inputs" not in text and "DS_" not in text, "import-flow placeholders are not filled by provisioning"

    def walk(node, where="$"):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource" and value is not None and not isinstance(value, list):
                    uid = value.get("uid") if isinstance(value, dict) else value
                    assert uid in ("${datasource}", "-- Grafana --", "prometheus"), \
                        f"{where}.datasource is hard-coded: {value!r}"
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    walk(json.loads(text))


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_filter_variables(path):
    dash = gm.load(path)
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance", "tier", "site", "category"} <= names
    if os.path.basename(path) in ("target-detail.json", "snmp-interfaces.json"):
        assert "target" in names
    used = {m for q in gm.queries(path) for m in re.findall(r"\$\{?(\w+)", q.expr)}
    unknown = used - names - {"__rate_interval", "__interval", "__range"}
    assert not unknown, f"queries use undefined variables: {unknown}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_range_queries_use_rate_interval(path):
    for q in gm.queries(path):
        if q.instant:
            continue
        for window in re.findall(r"(?:rate|increase|irate)\([^\[]*\[([^\]]+)\]", q.expr):
            assert window == "$__rate_interval", f"{q}: use [$__rate_interval], not [{window}]"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_layout_fits_and_panel_ids_unique(path):
    dash = gm.load(path)
    ps = list(gm.panels(dash))
    ids = [p["id"] for p in ps]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in ps:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, f"{p['title']!r} is wider than the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_noc_puts_p0_status_first():
    dash = gm.load(os.path.join(gm.DASHBOARD_DIR, "noc-overview.json"))
    first = min((p for p in gm.panels(dash)), key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    assert "P0" in first["title"] and "lifeline_tier_priority == 0" in first["targets"][0]["expr"]
    problems = next(p for p in gm.panels(dash) if p["title"].startswith("Down and degraded"))
    sort = next(t for t in problems["transformations"] if t["id"] == "sortBy")
    assert sort["options"]["sort"] == [{"field": "Value #B", "desc": True}]  # rank: state, then tier priority


def test_target_detail_has_smokeping_heatmap():
    dash = gm.load(os.path.join(gm.DASHBOARD_DIR, "target-detail.json"))
    heat = [p for p in gm.panels(dash) if p["type"] == "heatmap"]
    assert heat and heat[0]["targets"][0]["format"] == "heatmap"
    assert "lifeline_icmp_rtt_seconds_bucket" in heat[0]["targets"][0]["expr"]
    assert heat[0]["options"]["calculate"] is False  # buckets come from the histogram, not Grafana


def test_every_expression_is_valid_promql(promtool):
    qs = gm.all_queries()
    assert len(qs) > 50
    ok, out = gm.promtool_check([q.substituted() for q in qs], promtool)
    if not ok:
        bad = [int(i) for i in re.findall(r"dashboard:expr_(\d+)", out)]
        detail = "\n".join(str(qs[i]) for i in bad) or out
        pytest.fail(f"promtool rejects dashboard expressions:\n{detail}\n{out}")


def test_promtool_check_catches_a_bad_expression(promtool):
    ok, out = gm.promtool_check(["sum(rate(lifeline_icmp_requests_total[5m])"], promtool)
    assert not ok and "dashboard:expr_0" in out


def test_provisioning_matches_compose_mounts():
    prov = os.path.join(gm.DASHBOARD_DIR, "provisioning")
    with open(os.path.join(prov, "dashboards", "lifeline.yml"), encoding="utf-8") as fh:
        providers = yaml.safe_load(fh)["providers"]
    with open(os.path.join(prov, "datasources", "lifeline.yml"), encoding="utf-8") as fh:
        datasources = yaml.safe_load(fh)["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"]
    with open(os.path.join(gm.ROOT, "deploy", "docker-compose.yml"), encoding="utf-8") as fh:
        grafana = yaml.safe_load(fh)["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    path = providers[0]["options"]["path"]
    assert mounts.get(path) == "../dashboards", f"compose must mount dashboards/ at {path}"
    assert mounts.get("/etc/grafana/provisioning/dashboards") == "../dashboards/provisioning/dashboards"
    assert mounts.get("/etc/grafana/provisioning/datasources") == "../dashboards/provisioning/datasources"
