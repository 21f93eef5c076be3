"""Deployment files, checked statically: no Docker daemon or systemd instance runs here.

The systemd unit goes through ``systemd-analyze verify`` and its offline
security score; the Dockerfile and compose file are read as data and held to
what the README promises (unprivileged agent, rules and dashboards mounted,
ports on loopback).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from tests.helpers import ROOT, require_tool

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
