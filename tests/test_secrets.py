"""Secrets (SNMP community and v3 keys, web passwords) never reach logs, /metrics or error output."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.helpers import ROOT, free_port, require_root, value, wait_for

SECRETS = {"LIFELINE_SNMP_COMMUNITY": "c0mmunity-Xq7", "LIFELINE_SNMP_AUTH_KEY": "auth-Key-9fz1",
           "LIFELINE_SNMP_PRIV_KEY": "priv-Key-4kd8"}


def test_secrets_stay_out_of_logs_metrics_and_errors(agent_factory, tmp_path):
    require_root()
    port = free_port(socket.AF_INET, socket.SOCK_DGRAM)  # nothing answers here: polls fail and get logged
    config = f"""
tiers:
  P0: {{interval: 1s, timeout: 300ms, packets: 1, snmp_interval: 1s, snmp_timeout: 200ms, snmp_retries: 0}}
snmp_profiles:
  default: {{version: 2c, community_env: LIFELINE_SNMP_COMMUNITY}}
  v3: {{version: 3, user: ro, auth_protocol: SHA, auth_key_env: LIFELINE_SNMP_AUTH_KEY,
        priv_protocol: AES, priv_key_env: LIFELINE_SNMP_PRIV_KEY}}
targets:
  - {{name: cpe-v2, address: 127.0.0.1, tier: P0, probes: [snmp], snmp: {{port: {port}}}}}
  - {{name: cpe-v3, address: 127.0.0.2, tier: P0, probes: [snmp], snmp: {{profile: v3, port: {port}}}}}
"""
    agent = agent_factory(config, env=SECRETS, extra_args=["--log.level", "debug"])
    wait_for(lambda: (value(agent.metrics(), "lifeline_probe_failures_total", target="cpe-v2") or 0) >= 2
             and (value(agent.metrics(), "lifeline_probe_failures_total", target="cpe-v3") or 0) >= 1, 15,
             "failed SNMP polls")
    # A broken reload logs its errors; they must not carry secret values either.
    (tmp_path / "lifeline.yaml").write_text(config.replace("version: 2c", "version: 2"))
    agent.reload_signal()
    wait_for(lambda: value(agent.metrics(), "lifeline_config_last_reload_successful") == 0, 5, "failed reload")
    check = subprocess.run([sys.executable, "-m", "agent.cli", "check", str(tmp_path / "lifeline.yaml")],
                           capture_output=True, text=True, cwd=ROOT, env={**SECRETS, "PATH": "/usr/bin:/bin"},
                           timeout=60)
    seen = agent.log() + agent.metrics() + check.stdout + check.stderr
    assert "snmp_profiles.default.version" in seen  # the error output is really there
    for secret in SECRETS.values():
        assert secret not in seen
