"""Deployment files: no Docker daemon or systemd instance runs here.

The systemd unit goes through ``systemd-analyze verify`` and its offline
security score; the Dockerfile and compose file are read as data and held to
what the README promises (unprivileged agent, rules and dashboards mounted,
ports on loopback). alertmanager.yml passes ``amtool check-config`` as shipped
and with every commented receiver enabled, and the page templates are rendered
by ``amtool template render`` from a real page: the real agent, Prometheus with
the shipped rules and Alertmanager with the shipped config, all on loopback.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
import socket
import subprocess

import pytest
import yaml

from agent.devstack import AlertingStack, unwind
from tests.helpers import ROOT, AgentProcess, require_tool, wait_for

DEPLOY = os.path.join(ROOT, "deploy")


def _unit() -> dict[str, list[str]]:
    """Directives of lifeline.service (continuation lines joined), each with all its values."""
    out: dict[str, list[str]] = {}
    text = open(os.path.join(DEPLOY, "lifeline.service"), encoding="utf-8").read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(" ".join(value.split()))
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(os.path.join(DEPLOY, "docker-compose.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_unit_runs_unprivileged_with_only_cap_net_raw():
    unit = _unit()
    assert unit["User"] == ["lifeline"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_RAW"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert unit["NoNewPrivileges"] == ["yes"]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "RestrictAddressFamilies", "SystemCallFilter", "MemoryDenyWriteExecute"):
        assert key in unit, f"hardening option {key} missing"


def test_unit_uses_the_agent_cli():
    unit = _unit()
    start = unit["ExecStart"][0]
    assert re.search(r"lifeline run --config.file \S+ --web.listen-address 127\.0\.0\.1:\d+ "
                     r"--log.level info --log.format json$", start), start
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_systemd_analyze_verify_and_security(tmp_path):
    tool = require_tool("systemd-analyze", "systemd")
    # verify insists the binaries exist; point them at one that does.
    text = open(os.path.join(DEPLOY, "lifeline.service"), encoding="utf-8").read()
    unit = tmp_path / "lifeline.service"
    unit.write_text(text.replace("/opt/lifeline/.venv/bin/lifeline", "/bin/true"))
    proc = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    proc = subprocess.run([tool, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                          check=False)
    score = re.search(r"Overall exposure level for lifeline.service: ([\d.]+)", proc.stdout)
    assert score, proc.stdout + proc.stderr
    assert float(score.group(1)) <= 2.0, proc.stdout  # systemd rates <= 2 "OK"/"SAFE"


def test_dockerfile_runs_the_agent_as_a_user():
    text = open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8").read()
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["lifeline"]' in text
    assert re.search(r'CMD \["run", "--config.file", "[^"]+", "--web.listen-address", "0\.0\.0\.0:9123",', text)
    for path in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for src in path.split():
            assert os.path.exists(os.path.join(ROOT, src)), f"Dockerfile copies missing {src}"


def test_compose_stack(compose):
    services = compose["services"]
    assert {"lifeline", "prometheus", "alertmanager", "grafana"} <= set(services)
    agent = services["lifeline"]
    assert agent["cap_drop"] == ["ALL"] and "net.ipv4.ping_group_range" in agent["sysctls"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for volume in svc.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("."):
                assert os.path.exists(os.path.join(DEPLOY, src)), f"{name} mounts missing {src}"
    prom_mounts = " ".join(services["prometheus"]["volumes"])
    assert "../rules/lifeline.rules.yml:/etc/prometheus/rules/" in prom_mounts
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml" in prom_mounts
    assert "./alertmanager.yml:/etc/alertmanager/alertmanager.yml" in " ".join(services["alertmanager"]["volumes"])
    # Prometheus scrapes the agent by its compose service name and port.
    with open(os.path.join(DEPLOY, "prometheus.yml"), encoding="utf-8") as fh:
        prom = yaml.safe_load(fh)
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "lifeline")
    assert job["static_configs"][0]["targets"] == ["lifeline:9123"]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


# ---------------------------------------------------------------- Alertmanager receivers and page body

ALERTMANAGER = os.path.join(DEPLOY, "alertmanager.yml")
TEMPLATES = os.path.join(DEPLOY, "templates")
# What the <...> placeholders of the commented receivers stand for, in the form real values take.
PLACEHOLDERS = {
    "<corp id>": "ww3f2a9c1d7e5b4a60",
    "<agent id>": "1000002",
    "<application secret>": "Zq8bJ2xW5mN0pR7tY4vK1sD6fG9hL3cA8eB2uI5oP0w",
    "<department ids>": "2|5",
}
# The receivers and the configs each must have once every commented block is enabled.
ENABLED = {
    "oncall-page": {"webhook_configs", "wechat_configs", "email_configs"},
    "noc-ticket": {"webhook_configs", "wechat_configs", "email_configs"},
    "noc-ticket-low": {"webhook_configs", "email_configs"},
}


def _amtool() -> str:
    return require_tool("amtool", "prometheus-alertmanager")


def uncomment_blocks(text: str) -> tuple[str, list[str]]:
    """``text`` with every "# BEGIN ..." .. "# END" block enabled (one "# " removed from each line in
    between), and the blocks' titles. A line in a block not commented at the marker's indent is an error."""
    out, titles, indent = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        begin = re.fullmatch(r"(\s*)# BEGIN (.+)", line)
        if indent is None:
            if begin:
                indent = begin.group(1)
                titles.append(begin.group(2))
            out.append(line)
        elif line == indent + "# END":
            indent = None
            out.append(line)
        else:
            assert line.startswith(indent + "# ") and not begin, f"alertmanager.yml:{number}: not a block line: {line!r}"
            out.append(indent + line[len(indent) + 2:])
    assert indent is None, "a BEGIN block is not closed by # END"
    return "\n".join(out) + "\n", titles


def _strings(node: object) -> list[str]:
    """Every string value in a parsed YAML document."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def _check_config(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([_amtool(), "check-config", path], capture_output=True, text=True, check=False)


def test_shipped_alertmanager_config_passes_amtool_with_its_templates():
    proc = _check_config(ALERTMANAGER)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " - 1 templates" in proc.stdout, proc.stdout  # templates/*.tmpl was found (and parses: amtool checks)
    with open(ALERTMANAGER, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    assert config["templates"] == ["templates/*.tmpl"]
    # As shipped, only the generic webhooks are on; nothing tries to mail or call WeCom.
    for receiver in config["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}, receiver["name"]


def test_every_commented_receiver_is_valid_once_uncommented(tmp_path):
    with open(ALERTMANAGER, encoding="utf-8") as fh:
        text, titles = uncomment_blocks(fh.read())
    assert len(titles) == 6, titles  # webhook options, 2 x WeCom, 3 x e-mail
    for placeholder, value in PLACEHOLDERS.items():
        assert placeholder in text, f"placeholder {placeholder} no longer used: update PLACEHOLDERS"
        text = text.replace(placeholder, value)
    (tmp_path / "alertmanager.yml").write_text(text)
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    proc = _check_config(str(tmp_path / "alertmanager.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    config = yaml.safe_load(text)
    left = [v for v in _strings(config) if re.search(r"<[a-z ]+>", v)]
    assert not left, f"placeholders the test does not know (add them to PLACEHOLDERS): {left}"
    receivers = {r["name"]: r for r in config["receivers"]}
    assert {name: set(r) - {"name"} for name, r in receivers.items()} == ENABLED
    for name, receiver in receivers.items():
        for wechat in receiver.get("wechat_configs", []):
            assert {"api_url", "corp_id", "agent_id", "api_secret", "to_party"} <= set(wechat), name
            assert wechat["message"] == '{{ template "wechat.lifeline.message" . }}'
        for mail in receiver["email_configs"]:
            assert {"smarthost", "from", "auth_username", "auth_password_file"} <= set(mail), name
            assert mail["require_tls"] is True
            assert mail["text"] == '{{ template "email.lifeline.text" . }}'
            assert mail["html"] == '{{ template "email.lifeline.html" . }}'  # else Alertmanager's default HTML
            assert "email.lifeline.subject" in mail["headers"]["Subject"]
    hook = receivers["oncall-page"]["webhook_configs"][0]
    assert hook["http_config"]["authorization"]["credentials_file"] and hook["max_alerts"] == 50

    # Not vacuous: amtool does reject a misspelt field in such a block.
    broken = text.replace("auth_password_file:", "auth_pasword_file:", 1)
    (tmp_path / "alertmanager.yml").write_text(broken)
    proc = _check_config(str(tmp_path / "alertmanager.yml"))
    assert proc.returncode != 0 and "auth_pasword_file" in proc.stdout + proc.stderr


def test_compose_mounts_the_templates_where_the_config_expects_them(compose):
    mounts = compose["services"]["alertmanager"]["volumes"]
    assert "./templates:/etc/alertmanager/templates:ro" in mounts


def _render(data: str, name: str, kind: str = "text") -> str:
    proc = subprocess.run([_amtool(), "template", "render", f"--template.glob={TEMPLATES}/*.tmpl",
                           f"--template.data={data}", f"--template.type={kind}",
                           f"--template.text={{{{ template \"{name}\" . }}}}"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{name}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def real_page(tmp_path_factory) -> dict:
    """The webhook payload of a real page: a P0 hotline whose service stops (its tcp check, up at
    first, is then refused on loopback), probed by the real agent, alerted by Prometheus with the
    shipped rules and routed by Alertmanager with the shipped config. Alertmanager renders its
    templates from exactly this data (the webhook JSON is its template data plus version,
    groupKey and truncatedAlerts)."""
    work = tmp_path_factory.mktemp("page")
    service = socket.create_server(("127.0.0.1", 0))  # the hotline's service, until it dies
    config = work / "lifeline.yaml"
    config.write_text(f"""
tiers:
  # The built-in 5s would only make the test wait longer; one echo keeps the tier valid at 1s.
  P0: {{interval: 1s, timeout: 500ms, packets: 1}}
targets:
  - name: dinghai-12345-hotline
    address: 127.0.0.1
    tier: P0
    category: hotline
    site: dinghai
    probes: [tcp]
    tcp: {{port: {service.getsockname()[1]}}}
    labels: {{circuit_id: ZS-MSTP-0036, carrier: telecom, contact: "+86-580-000000"}}
""")
    cleanup = [service.close]
    try:
        agent = AgentProcess(str(config))
        cleanup.append(agent.stop)
        stack = AlertingStack.start(str(work), [f"127.0.0.1:{agent.port}"], interval="1s", rule_interval="1s")
        cleanup.append(stack.stop)
        prom, hook = stack.prometheus, stack.hook
        wait_for(lambda: prom.query('lifeline_target_up{target="dinghai-12345-hotline"} == 1'), 30,
                 "Prometheus to see the hotline up before its service stops", interval=0.2)
        service.close()  # connections are refused from now on
        notes = wait_for(lambda: hook.matching(receiver="oncall-page", status="firing",
                                               alertname="LifelineTargetDown", target="dinghai-12345-hotline"),
                         90, "the hotline's down page at the on-call webhook", interval=0.2)
        return notes[0].payload
    finally:
        unwind(cleanup)


def test_page_body_renders_from_a_real_page(real_page, tmp_path):
    data = tmp_path / "page.json"
    data.write_text(json.dumps(real_page))
    alert = real_page["alerts"][0]
    notes = alert["annotations"]
    # The rules filled in what the body shows; if these fail the rules changed, not the template.
    assert notes["failing_probes"] == "tcp: refused" and notes["circuit_id"] == "ZS-MSTP-0036" and notes["runbook"]
    expected = ["dinghai-12345-hotline", "tier P0", "site dinghai", "hotline", "ZS-MSTP-0036", "carrier: telecom",
                "contact: +86-580-000000", "failing: tcp: refused",
                "runbook: " + notes["runbook"], notes["summary"]]
    wechat = _render(str(data), "wechat.lifeline.message")
    text = _render(str(data), "email.lifeline.text")
    for body in (wechat, text):
        missing = [e for e in expected if e not in body]
        assert not missing, f"missing {missing} in:\n{body}"
    subject = _render(str(data), "email.lifeline.subject")
    assert subject == "[FIRING 1] critical P0 site dinghai: dinghai-12345-hotline", subject
    page = html.unescape(_render(str(data), "email.lifeline.html", "html"))
    for value in ("dinghai-12345-hotline", "ZS-MSTP-0036", "telecom", "+86-580-000000", notes["runbook"],
                  "tcp: refused"):
        assert value in page, value


def test_wechat_message_fits_wecom_limit_for_a_site_outage(real_page, tmp_path):
    """A site outage groups every circuit of the site into one notification; WeCom takes 2048 bytes of text."""
    outage = copy.deepcopy(real_page)
    base = outage["alerts"][0]
    outage["alerts"] = []
    for i in range(30):
        alert = copy.deepcopy(base)
        alert["labels"]["target"] = f"dinghai-circuit-{i:02d}"
        alert["fingerprint"] = f"{i:016x}"
        outage["alerts"].append(alert)
    data = tmp_path / "outage.json"
    data.write_text(json.dumps(outage))
    body = _render(str(data), "wechat.lifeline.message")
    assert len(body.encode()) <= 2048, f"{len(body.encode())} bytes:\n{body}"
    assert "dinghai-circuit-04" in body and "dinghai-circuit-05" not in body  # the first 5, then a count
    assert "30 alerts in all" in body and body.count("runbook:") == 1
