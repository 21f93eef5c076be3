"""Prometheus rules and Alertmanager config: syntax, unit tests, coverage and routing.

``promtool test rules`` runs the scenario files in rules/tests (including the
cases that must not page); the tests here make sure every alert has such a
scenario, that alerts carry what on-call needs, and that Alertmanager routes
each severity and tier to the intended receiver.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

import pytest
import yaml

from rules import generate as rules_generate
from tests.helpers import ROOT, require_tool
from tests.test_exposition import SITED_FAMILIES

RULES = os.path.join(ROOT, "rules", "lifeline.rules.yml")
RULE_TESTS = sorted(glob.glob(os.path.join(ROOT, "rules", "tests", "*.yml")))
ALERTMANAGER = os.path.join(ROOT, "deploy", "alertmanager.yml")
PROMETHEUS = os.path.join(ROOT, "deploy", "prometheus.yml")
TARGET_ANNOTATIONS = {"summary", "runbook", "circuit_id", "carrier", "contact"}


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _alerts() -> list[dict]:
    return [r for g in _load(RULES)["groups"] for r in g["rules"] if "alert" in r]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_tool("amtool", "prometheus-alertmanager")


def test_promtool_check_rules(promtool):
    # --lint-fatal: the per-tier copies must not read as duplicate rules to promtool's lint
    # (it prints FAILED yet exits 0 without the flag).
    proc = _run(promtool, "check", "rules", "--lint-fatal", RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_per_tier_copies_are_up_to_date():
    with open(RULES, encoding="utf-8") as fh:
        text = fh.read()
    assert rules_generate.render(text) == text, "rules/lifeline.rules.yml differs; run python3 rules/generate.py"


def test_per_tier_copies_partition_the_split_rules():
    """Each split rule's tiers: the hand-written rule excludes exactly the tiers its copies select."""
    with open(RULES, encoding="utf-8") as fh:
        head = fh.read().split(rules_generate.MARKER)[0]
    tiers = rules_generate.split_tiers(head)
    assert tiers == ["P2", "P3"]
    groups = {g["name"]: g for g in _load(RULES)["groups"]}
    split = {name: g for name, g in groups.items() if any('tier!~"P2|P3"' in r["expr"] for r in g["rules"])}
    # The groups that read every target's series each cycle, at least.
    assert {"lifeline.recording.loss", "lifeline.recording.availability", "lifeline.alerts.windows",
            "lifeline.recording.day"} <= set(split)
    for name, group in split.items():
        own = [r for r in group["rules"] if 'tier!~"P2|P3"' in r["expr"]]
        for tier in tiers:
            twin = groups[f"{name}.{tier.lower()}"]
            assert twin.get("interval") == group.get("interval")
            assert [r.get("record") or r.get("alert") for r in twin["rules"]] == \
                [r.get("record") or r.get("alert") for r in own]
            for mine, theirs in zip(own, twin["rules"]):
                assert theirs["expr"] == mine["expr"].replace('tier!~"P2|P3"', f'tier="{tier}"')
                assert theirs["labels"] == {**(mine.get("labels") or {}), "tier": tier}
                assert theirs.get("annotations") == mine.get("annotations")
                assert theirs.get("for") == mine.get("for")
    copies = [n for n in groups if n.endswith((".p2", ".p3"))]
    assert len(copies) == 2 * len(split)


def test_another_split_keeps_every_rule_test_passing(promtool, tmp_path):
    """A carrier with other tier sizes splits other tiers out; the rules mean the same."""
    with open(RULES, encoding="utf-8") as fh:
        text = fh.read()
    rules_dir = tmp_path / "rules"
    shutil.copytree(os.path.join(ROOT, "rules", "tests"), rules_dir / "tests")
    for tiers in (["P3"], ["P0", "P1", "P2", "P3"]):
        out = rules_generate.render(text, tiers)
        assert f'tier!~"{"|".join(tiers)}"' in out
        assert sum(1 for line in out.splitlines() if line.startswith("  - name: ") and line.endswith(".p3")) >= 10
        (rules_dir / "lifeline.rules.yml").write_text(out, encoding="utf-8")
        check = _run(promtool, "check", "rules", "--lint-fatal", str(rules_dir / "lifeline.rules.yml"))
        assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
        # Idempotent: generating again from its own output changes nothing.
        assert rules_generate.render(out) == out
        for path in RULE_TESTS:
            proc = subprocess.run([promtool, "test", "rules", os.path.basename(path)], capture_output=True,
                                  text=True, check=False, cwd=rules_dir / "tests")
            assert proc.returncode == 0, f"split {tiers}, {os.path.basename(path)}: {proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("edit, tiers, message", [
    (lambda t: t.replace('tier!~"P2|P3"', ""), None, 'no rule selects with the partition matcher tier!~"..."'),
    (lambda t: t.replace('tier!~"P2|P3"', 'tier!~"P3"', 1), None, 'the partition matchers disagree: tier!~"P2|P3", tier!~"P3"'),
    (lambda t: t, ["P3", "P.*"], "tier names are letters, digits, '-' and '_' (got 'P.*')"),
    (lambda t: t, ["P3", "P3"], "a tier is named twice: P3, P3"),
])
def test_generate_refuses_bad_input(tmp_path, capsys, edit, tiers, message):
    with open(RULES, encoding="utf-8") as fh:
        text = edit(fh.read())
    path = tmp_path / "lifeline.rules.yml"
    path.write_text(text, encoding="utf-8")
    argv = ["--rules", str(path)] + [a for tier in tiers or () for a in ("--tier", tier)]
    assert rules_generate.main(argv) == 2
    assert message in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == text  # nothing written


def test_generate_check_mode(tmp_path):
    with open(RULES, encoding="utf-8") as fh:
        text = fh.read()
    path = tmp_path / "lifeline.rules.yml"
    path.write_text(text.replace('tier="P3"', 'tier="P9"', 1), encoding="utf-8")  # a hand-edited copy
    assert rules_generate.main(["--rules", str(path), "--check"]) == 1
    assert rules_generate.main(["--rules", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("path", RULE_TESTS, ids=[os.path.basename(p) for p in RULE_TESTS])
def test_promtool_test_rules(promtool, path):
    proc = subprocess.run([promtool, "test", "rules", os.path.basename(path)], capture_output=True, text=True,
                          check=False, cwd=os.path.dirname(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_scenario():
    fired: set[str] = set()
    checked: set[str] = set()
    for path in RULE_TESTS:
        for group in _load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                checked.add(case["alertname"])
                if case.get("exp_alerts"):
                    fired.add(case["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fired == set(), f"alerts never shown firing in rules/tests: {sorted(names - fired)}"
    assert checked <= names, f"rules/tests name alerts that do not exist: {sorted(checked - names)}"


@pytest.mark.parametrize("needle", [
    "5% loss all along",           # 5% random loss on a P0 circuit: a ticket, never a page
    "One missed cycle",            # a single failed cycle never pages
    "P1, P2, P3 targets dark",     # lower tiers: later, and at warning/info severity
    "must not page afterwards",    # the loss an outage leaves behind in the 5m window
    "fails ONE cycle",             # a slow probe (SIP every 15s on a 5s tier) failing once
    "A single 503",                # one failed HTTP cycle within a healthy run
    "One slow response",           # slow but successful: nothing to say
    "loss left in the 5m window after a suppressed outage",  # no down alert fired to hold it back
])
def test_must_not_page_scenarios_are_present(needle):
    text = "".join(open(p, encoding="utf-8").read() for p in RULE_TESTS)
    assert needle in text


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: f"{r['alert']}:{r.get('for', '0s')}")
def test_alert_labels_and_annotations(rule):
    labels, notes = rule.get("labels", {}), rule.get("annotations", {})
    assert {"summary", "runbook"} <= set(notes), "on-call needs a summary and a one-line runbook"
    assert "\n" not in notes["runbook"]
    # Severity is either fixed on the rule or taken from the tier in the expression.
    # (The consensus alert takes it over every agent: max by (tier, severity) (lifeline_tier_info).)
    from_tier = re.search(r"group_left \(severity\) (max by \(tier, severity\) \()?"
                          r"lifeline_tier(_info|:degraded_severity:info)", rule["expr"])
    assert bool(from_tier) != ("severity" in labels), "exactly one source of severity"
    if "severity" in labels:
        assert labels["severity"] in ("critical", "warning", "info")
    if rule["alert"].startswith(("LifelineTarget", "LifelineInterface", "LifelineDevice")):
        assert TARGET_ANNOTATIONS <= set(notes), "target alerts carry the circuit from lifeline_target_info"
        # Alertmanager groups by site: the series must bring it (the agent's families
        # in SITED_FAMILIES and the lifeline_target:* recordings do; others join target_info).
        sited = "|".join([*SITED_FAMILIES, "lifeline_target:", r"group_left \(category, site\)"])
        assert re.search(sited, rule["expr"]), "site is needed for grouping"


def test_down_is_three_failed_cycles_counted_by_the_agent():
    down = [r for r in _alerts() if r["alert"] == "LifelineTargetDown"]
    assert len(down) == 1
    # The agent's count, not a `for` on `up`: probes of one target run at different intervals.
    assert "lifeline_target_consecutive_failures >= 3" in down[0]["expr"]
    assert down[0].get("for", "0s") == "0s"


def test_amtool_check_config(amtool):
    proc = _run(amtool, "check-config", ALERTMANAGER)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    ({"alertname": "LifelineTargetDown", "severity": "critical", "tier": "P0", "site": "north"}, "oncall-page"),
    ({"alertname": "LifelineTargetDown", "severity": "critical", "tier": "P1", "site": "north"}, "oncall-page"),
    ({"alertname": "LifelineTargetDown", "severity": "warning", "tier": "P2", "site": "north"}, "noc-ticket"),
    ({"alertname": "LifelineTargetDown", "severity": "info", "tier": "P3", "site": "north"}, "noc-ticket-low"),
    ({"alertname": "LifelineTargetLossHigh", "severity": "warning", "tier": "P0"}, "noc-ticket"),
    ({"alertname": "LifelineAgentDown", "severity": "critical"}, "oncall-page"),
    ({"alertname": "LifelineAgentStale", "severity": "critical", "tier": "P3"}, "oncall-page"),
    ({"alertname": "LifelineConfigReloadFailed", "severity": "warning"}, "noc-ticket"),
    ({"alertname": "LifelineTargetCertificateExpiring", "severity": "warning", "tier": "P0"}, "noc-ticket"),
    ({"alertname": "LifelineTargetCertificateExpiryCritical", "severity": "critical", "tier": "P1"}, "oncall-page"),
    ({"alertname": "Unrelated"}, "noc-ticket"),
], ids=lambda v: v if isinstance(v, str) else f"{v.get('alertname')}-{v.get('tier', '')}-{v.get('severity', '')}")
def test_alertmanager_routing(amtool, labels, receiver):
    proc = _run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                f"--verify.receivers={receiver}", *(f"{k}={v}" for k, v in labels.items()))
    assert proc.returncode == 0, f"{labels} -> {proc.stdout.strip()} (expected {receiver})"


def test_inhibit_rules_name_real_alerts():
    names = {a["alert"] for a in _alerts()}
    config = _load(ALERTMANAGER)
    for rule in config["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            for matcher in rule[side]:
                m = re.fullmatch(r'alertname(=~|=)"(.*)"', matcher)
                assert m, f"inhibit rules should select by alertname: {matcher}"
                op, value = m.groups()
                hits = {n for n in names if (re.fullmatch(value, n) if op == "=~" else n == value)}
                assert hits, f"{matcher} matches no alert in rules/lifeline.rules.yml"
    # The behaviour the issue asks for.
    pairs = [(tuple(r["source_matchers"]), tuple(r["target_matchers"]), tuple(r["equal"]))
             for r in config["inhibit_rules"]]
    assert any("LifelineTargetDown" in s[0] and "LossCritical" in t[0] and "target" in e for s, t, e in pairs)
    assert any("LifelineAgentDown" in s[0] and "LifelineTarget.*" in t[0] and e == ("job", "instance")
               for s, t, e in pairs)
    assert any("LifelineAgentStale" in s[0] and "LifelineTarget.*" in t[0] for s, t, e in pairs)


def test_prometheus_config_loads_the_rules(promtool, tmp_path):
    # The config names rules/*.yml relative to itself, as laid out in the container.
    shutil.copy(PROMETHEUS, tmp_path / "prometheus.yml")
    (tmp_path / "rules").mkdir()
    shutil.copy(RULES, tmp_path / "rules" / "lifeline.rules.yml")
    proc = _run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 1 rule files found" in proc.stdout + proc.stderr
    config = _load(PROMETHEUS)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "lifeline")
    # P0 cycles every 5s; the down rules need to see every one.
    assert job["scrape_interval"] == "5s"
    assert 'up{job="lifeline"}' in open(RULES, encoding="utf-8").read()
