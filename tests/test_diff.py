"""`lifeline diff` between files and a running agent, the P0 guard's verdict, and /api/v1/status/config
(secrets redacted, behind basic auth). Agents here probe loopback only."""

from __future__ import annotations

import base64
import json

import bcrypt
import yaml

from agent.cli import main
from tests.helpers import free_port, http_get, require_root


def _config(targets: list[tuple[str, str, str]], extra: str = "") -> str:
    lines = [extra, "targets:"] if extra else ["targets:"]
    lines += [f"  - {{name: {n}, address: {a}, tier: {t}}}" for n, a, t in targets]
    return "\n".join(lines) + "\n"


def _old() -> list[tuple[str, str, str]]:
    return [(f"t-{i:04d}", f"198.18.{i // 250}.{i % 250 + 1}", f"P{i % 4}") for i in range(1000)]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _table(out: str) -> dict[str, list[int]]:
    """{tier: [old, new, added, removed, changed, unchanged]} from the report's table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 7 and all(p.isdigit() for p in parts[1:]):
            rows[parts[0]] = [int(p) for p in parts[1:]]
    return rows


def test_900_added_925_removed_counts_per_tier(tmp_path, capsys):
    old = _old()
    kept = old[:75]
    added = [(f"n-{i:04d}", f"198.19.{i // 250}.{i % 250 + 1}", f"P{i % 4}") for i in range(900)]
    (tmp_path / "old.yaml").write_text(_config(old))
    (tmp_path / "new.yaml").write_text(_config(kept + added, "reload: {p0_drop_intended: true}"))
    code, out, err = _run(capsys, "diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"))
    assert code == 0, out + err
    table = _table(out)
    for tier in ("P0", "P1", "P2", "P3"):
        n = int(tier[1])
        was = sum(1 for _, _, t in old if t == tier)
        stay = sum(1 for _, _, t in kept if t == tier)
        new = sum(1 for _, _, t in added if t == tier)
        assert table[tier] == [was, stay + new, new, was - stay, 0, stay], (tier, n)
    assert table["total"] == [1000, 975, 900, 925, 0, 75]
    assert "added P0 (225): n-0000, n-0004, n-0008, n-0012, n-0016 ... (+220)" in out
    assert "removed P3 (232): t-0075, t-0079, t-0083, t-0087, t-0091 ... (+227)" in out
    assert "P0 guard: would be applied (P0 targets 250 -> 244)" in out


def test_a_truncated_file_would_be_refused_exit_3(tmp_path, capsys):
    old = _old()
    (tmp_path / "old.yaml").write_text(_config(old))
    (tmp_path / "new.yaml").write_text(_config(old[:400]))  # a save cut short
    code, out, _ = _run(capsys, "diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"))
    assert code == 3
    assert "P0 guard: would be refused. refused: 150 of 250 P0 targets (60%) would leave P0" in out
    assert _table(out)["P0"] == [250, 100, 0, 150, 0, 100]
    # Nothing to change is exit 0 too.
    code, out, _ = _run(capsys, "diff", str(tmp_path / "old.yaml"), str(tmp_path / "old.yaml"))
    assert code == 0 and "P0 guard: no change to apply (P0 targets 250 -> 250)" in out


def test_changed_and_moved_targets(tmp_path, capsys):
    old = [("a", "198.18.0.1", "P0"), ("b", "198.18.0.2", "P1"), ("c", "198.18.0.3", "P2")]
    new = [("a", "198.18.0.9", "P0"), ("b", "198.18.0.2", "P2"), ("c", "198.18.0.3", "P2")]
    (tmp_path / "old.yaml").write_text(_config(old))
    (tmp_path / "new.yaml").write_text(_config(new))
    code, out, _ = _run(capsys, "diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"))
    assert code == 0
    table = _table(out)
    assert table["P0"] == [1, 1, 0, 0, 1, 0] and table["P1"] == [1, 0, 0, 1, 0, 0]
    assert table["P2"] == [1, 2, 1, 0, 0, 1]
    assert "changed P0 (1): a (address)" in out and "moved tier (1): b P1->P2" in out


def test_invalid_input_exits_1_with_file_and_line(tmp_path, capsys):
    (tmp_path / "ok.yaml").write_text(_config(_old()[:3]))
    (tmp_path / "bad.yaml").write_text("targets:\n  - {name: x, address: 198.18.0.300, tier: P0}\n")
    code, out, err = _run(capsys, "diff", str(tmp_path / "ok.yaml"), str(tmp_path / "bad.yaml"))
    assert code == 1 and out == ""
    assert f"{tmp_path / 'bad.yaml'}:2: targets[0].address: not a valid IPv4 or IPv6 address" in err
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, _, err = _run(capsys, "diff", url, str(tmp_path / "ok.yaml"))
    assert code == 1 and f"{url}/api/v1/status/config:" in err


COMMUNITY = "snmp-community-s3cret-4711"
CAMERA_PASSWORD = "rtsp-pass-s3cret-0815"
AGENT = """
tiers:
  P0: {interval: 2s, timeout: 300ms, packets: 1}
snmp_profiles:
  default: {community_env: LL_TEST_COMMUNITY}
targets:
  - {name: lo-v4, address: 127.0.0.1, tier: P0, category: hospital, site: putuo, labels: {circuit_id: ZS-1}}
  - {name: lo-2, address: 127.0.0.2, tier: P0}
  - {name: lo-v6, address: "::1", tier: P1}
  - {name: lo-snmp, address: 127.0.0.1, tier: P2, probes: [snmp]}
  - {name: lo-camera, address: 127.0.0.1, tier: P3, probes: [rtsp],
     rtsp: {url: "rtsp://127.0.0.1:9/stream1", username: viewer, password_env: LL_TEST_CAM}}
"""
ENV = {"LL_TEST_COMMUNITY": COMMUNITY, "LL_TEST_CAM": CAMERA_PASSWORD}


def test_config_endpoint_redacts_secrets_and_diff_reads_a_running_agent(agent_factory, tmp_path, capsys,
                                                                         monkeypatch):
    require_root()
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    agent = agent_factory(AGENT, env=ENV)
    status, body = http_get(agent.url + "/api/v1/status/config")
    assert status == 200
    assert COMMUNITY.encode() not in body and CAMERA_PASSWORD.encode() not in body
    doc = json.loads(body)
    assert doc["status"] == "success"
    data = doc["data"]
    rendered = yaml.safe_load(data["yaml"])
    assert [t["name"] for t in rendered["targets"]] == ["lo-v4", "lo-2", "lo-v6", "lo-snmp", "lo-camera"]
    by_name = {t["name"]: t for t in data["config"]["targets"]}
    assert by_name["lo-snmp"]["settings"]["snmp"]["community"] == "<secret>"
    assert by_name["lo-camera"]["settings"]["rtsp"]["password"] == "<secret>"
    assert by_name["lo-camera"]["settings"]["rtsp"]["username"] == "viewer"
    assert data["config"]["tiers"]["P0"]["interval"] == 2.0 and data["config"]["tiers"]["P0"]["icmp"]["packets"] == 1

    same = tmp_path / "same.yaml"
    same.write_text(AGENT)
    code, out, err = _run(capsys, "diff", agent.url, str(same))
    assert code == 0, out + err
    assert "no change to apply" in out and _table(out)["total"] == [5, 5, 0, 0, 0, 5]

    grown = tmp_path / "grown.yaml"
    grown.write_text(AGENT.replace('lo-v6, address: "::1"', 'lo-v6, address: "::1", site: zhoushan')
                     + "  - {name: lo-3, address: 127.0.0.3, tier: P1}\n")
    code, out, _ = _run(capsys, "diff", agent.url, str(grown))
    assert code == 0
    assert _table(out)["P1"] == [1, 2, 1, 0, 1, 0] and "changed P1 (1): lo-v6 (site)" in out

    truncated = tmp_path / "truncated.yaml"
    truncated.write_text(AGENT.replace("  - {name: lo-2, address: 127.0.0.2, tier: P0}\n", ""))
    code, out, _ = _run(capsys, "diff", agent.url, str(truncated))
    assert code == 3 and "would be refused" in out and "1 of 2 P0 targets (50%)" in out
    code, out, _ = _run(capsys, "diff", str(truncated), agent.url)  # either side can be the agent
    assert code == 0 and "added P0 (1): lo-2" in out

    # export from the agent: the targets' core fields, a warning for the blocks a sheet cannot carry
    sheet = tmp_path / "from-agent.csv"
    code, _, err = _run(capsys, "export", "--url", agent.url, "--output", str(sheet))
    assert code == 0 and "2 targets have per-probe settings" in err and "lo-snmp, lo-camera" in err
    text = sheet.read_bytes().decode("utf-8-sig").splitlines()
    assert text[0] == "name,address,tier,category,site,probes,circuit_id"
    assert text[1] == "lo-v4,127.0.0.1,P0,hospital,putuo,icmp,ZS-1"
    assert text[3] == "lo-v6,::1,P1,unspecified,unspecified,icmp,"
    assert COMMUNITY not in agent.log() and CAMERA_PASSWORD not in agent.log()


PASSWORD = "noc-wall-pass-2024"


def test_config_endpoint_needs_basic_auth_when_the_web_config_sets_it(agent_factory, tmp_path, capsys):
    require_root()
    web = tmp_path / "web.yaml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    web.write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    auth = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()}
    agent = agent_factory(_config([("lo-v4", "127.0.0.1", "P2")]), extra_args=["--web.config.file", str(web)],
                          ready_check=lambda a: http_get(a.url + "/-/ready", timeout=1, headers=auth)[0] == 200)
    status, body = http_get(agent.url + "/api/v1/status/config")
    assert status == 401 and b"lo-v4" not in body
    status, body = http_get(agent.url + "/api/v1/status/config", headers=auth)
    assert status == 200 and json.loads(body)["data"]["config"]["targets"][0]["name"] == "lo-v4"
    (tmp_path / "same.yaml").write_text(_config([("lo-v4", "127.0.0.1", "P2")]))
    code, out, err = _run(capsys, "diff", agent.url, str(tmp_path / "same.yaml"))
    assert code == 1 and "HTTP 401 (basic auth: put the user and password in the URL)" in err
    with_auth = agent.url.replace("http://", f"http://prometheus:{PASSWORD}@")
    code, out, err = _run(capsys, "diff", with_auth, str(tmp_path / "same.yaml"))
    assert code == 0, err
    assert PASSWORD not in out and PASSWORD not in err and "prometheus:***@127.0.0.1" in out


def test_rendering_hides_secrets_and_header_values_and_unknown_objects():
    from agent.inventory.render import plain
    from common.secrets import Secret
    from probes.http.config import Header

    assert plain(Secret("hunter2", "env X")) == "<secret>"
    assert plain(Header("Authorization", "Bearer hunter2")) == {"name": "Authorization", "value": "<secret>"}
    assert plain(object()) == "<object>"
    assert plain({"a": (1, frozenset({2})), "b": b"x"}) == {"a": [1, [2]], "b": "x"}
