"""Reading Lifeline's Grafana dashboards as data: every PromQL expression with where it came from.

Shared by the static dashboard tests (syntax through promtool) and the end-to-end
test (results from a real Prometheus), so both check exactly the same queries.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD_DIR = os.path.join(ROOT, "dashboards")

# What Grafana puts in place of its built-in variables, for checking. The rate
# interval is at least four scrapes in the e2e stack (1s scrapes).
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# User variables are all multi-value regex filters or single names used with =~.
MATCH_ALL = ".*"
_VAR_RE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")


@dataclass(frozen=True)
class Query:
    dashboard: str  # file name
    where: str  # panel title / refId, or "variable NAME"
    expr: str  # as written, with variables
    instant: bool

    @property
    def needs_snmp(self) -> bool:
        return "lifeline_snmp_" in self.expr or "lifeline_if:" in self.expr

    @property
    def needs_vantages(self) -> bool:
        """Has data only with two agents run with --vantage and one path down: checked by
        tests/scenarios/test_what_pages.py (two vantages), not by the one-agent e2e stack."""
        return "Vantage" in self.expr or "vantage" in self.expr

    def substituted(self, values: dict[str, str] | None = None) -> str:
        return substitute(self.expr, values)

    def __str__(self) -> str:
        return f"{self.dashboard}: {self.where}: {self.expr}"


def dashboard_files() -> list[str]:
    return sorted(glob.glob(os.path.join(DASHBOARD_DIR, "*.json")))


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def panels(dash: dict) -> Iterator[dict]:
    """Every panel, including those nested in collapsed rows."""
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def variable_expr(query: str | dict) -> str | None:
    """The PromQL inside a Prometheus variable query, or None for label_names() and the like."""
    text = query.get("query", "") if isinstance(query, dict) else query
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", text, re.S)
    if m:
        return m.group(1)
    return None


def queries(path: str) -> list[Query]:
    dash = load(path)
    name = os.path.basename(path)
    out = []
    for p in panels(dash):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append(Query(name, f"panel {p.get('title')!r} query {t.get('refId')}", t["expr"],
                                 bool(t.get("instant")) and not t.get("range")))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            expr = variable_expr(v.get("query", ""))
            if expr is not None:
                out.append(Query(name, f"variable {v['name']}", expr, True))
    return out


def all_queries() -> list[Query]:
    return [q for path in dashboard_files() for q in queries(path)]


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace Grafana variables the way Grafana would for the all-values selection."""
    for name, value in BUILTINS.items():
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    values = values or {}
    return _VAR_RE.sub(lambda m: values.get(m.group(1), MATCH_ALL), expr)


def promtool_check(exprs: list[str], promtool: str) -> tuple[bool, str]:
    """Syntax-check PromQL by wrapping each expression as a recording rule for `promtool check rules`."""
    rules = {"groups": [{"name": "dashboard_expressions", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        yaml.safe_dump(rules, fh)
        path = fh.name
    try:
        proc = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True, check=False)
    finally:
        os.unlink(path)
    return proc.returncode == 0, proc.stdout + proc.stderr
