"""SNMP settings: exact messages for bad files, profiles, secrets that never show."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load
from common.errors import ConfigInvalid
from probes.snmp.config import InterfaceSelector, Secret, SnmpSettings

HERE = Path(__file__).parent / "configs"
BAD = HERE / "bad"
ENV = {"LIFELINE_TEST_COMMUNITY": "c0mmunity-val", "LIFELINE_TEST_PRIV": "priv-value-123"}
SECRET_VALUES = ("c0mmunity-val", "priv-value-123", "inline-secret-value", "auth-from-env-1",
                 "community-from-file", "short")


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("LIFELINE_TEST_UNSET_VAR", raising=False)


@pytest.mark.parametrize("case", sorted(p.stem for p in BAD.glob("*.yaml")))
def test_bad_config_gives_exact_messages(case):
    path = BAD / f"{case}.yaml"
    expected = (BAD / f"{case}.expect").read_text().replace("DIR/", f"{BAD}/").replace("FILE:", f"{path}:")
    with pytest.raises(ConfigInvalid) as exc:
        load(str(path))
    assert "\n".join(str(e) for e in exc.value.errors) + "\n" == expected


@pytest.mark.parametrize("case", sorted(p.stem for p in BAD.glob("*.yaml")))
def test_errors_never_show_secrets(case, capsys):
    assert main(["check", str(BAD / f"{case}.yaml")]) != 0
    out = capsys.readouterr()
    for secret in SECRET_VALUES:
        if secret == "short":
            continue  # a plain English word that may appear in messages
        assert secret not in out.out + out.err


GOOD = """\
snmp_profiles:
  default: {version: 2c, community_env: LIFELINE_TEST_COMMUNITY}
  core:
    version: 2c
    community_file: community.txt
    interfaces: ["GigabitEthernet0/0/1", {alias: "~ ^MSTP-"}, 7, {index: 9}]
  v3-noc:
    version: 3
    user: noc
    auth_protocol: sha256
    auth_key_env: LIFELINE_TEST_AUTH
    priv_protocol: aes
    priv_key: inline-secret-value
targets:
  - {name: uses-default, address: 127.0.0.1, tier: P1, probes: [snmp]}
  - name: core-override
    address: 127.0.0.1
    tier: P1
    probes: [icmp, snmp]
    snmp: {profile: core, port: 1161, oids: [{name: cpu_load, oid: "1.3.6.1.4.1.2011.6.3.4.1.2.0"}]}
  - {name: v3-device, address: 127.0.0.1, tier: P2, probes: [snmp], snmp: {profile: v3-noc}}
  - {name: v1-device, address: 127.0.0.1, tier: P2, probes: [snmp], snmp: {version: 1, community: inline-secret-value}}
"""


def good_config(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFELINE_TEST_AUTH", "auth-from-env-1")
    (tmp_path / "community.txt").write_text("community-from-file\n")
    path = tmp_path / "lifeline.yaml"
    path.write_text(GOOD)
    return load(str(path))


def test_profiles_merge_and_target_keys_override(tmp_path, monkeypatch):
    config = good_config(tmp_path, monkeypatch)
    s = {t.name: t.setting("snmp") for t in config.targets}
    assert s["uses-default"] == SnmpSettings(version="2c", community=Secret("c0mmunity-val", "env LIFELINE_TEST_COMMUNITY"),
                                             profile="default")
    core = s["core-override"]
    assert (core.port, core.profile, core.community.value) == (1161, "core", "community-from-file")
    assert [x.name for x in core.oids] == ["cpu_load"]
    assert core.interfaces[0] == InterfaceSelector("name", "GigabitEthernet0/0/1")
    assert core.interfaces[1].pattern.pattern == "^MSTP-"
    assert [sel.value for sel in core.interfaces[2:]] == [7, 9]
    v3 = s["v3-device"]
    assert (v3.version, v3.user, v3.auth_protocol, v3.priv_protocol, v3.security_level) == \
        ("3", "noc", "SHA256", "AES", "authPriv")
    assert v3.auth_key.value == "auth-from-env-1"


def test_secrets_never_in_repr_str_or_dump(tmp_path, monkeypatch):
    config = good_config(tmp_path, monkeypatch)
    dumps = [repr(config), str(config.targets), repr([t.setting("snmp") for t in config.targets]),
             str(config.targets[2].setting("snmp").auth_key)]
    for text in dumps:
        for secret in SECRET_VALUES[:-1]:
            assert secret not in text
    assert "env LIFELINE_TEST_AUTH" in dumps[3]  # where it came from is still visible


def test_interface_selectors_match_like_the_docs_say():
    import re

    name = InterfaceSelector("name", "Gi0/0/1")
    alias = InterfaceSelector("alias", "~ ^MSTP-", re.compile("^MSTP-"))
    index = InterfaceSelector("index", 3)
    assert name.matches(1, "Gi0/0/1", "GigabitEthernet0/0/1", "")
    assert InterfaceSelector("name", "GigabitEthernet0/0/1").matches(1, "Gi0/0/1", "GigabitEthernet0/0/1", "")
    assert not InterfaceSelector("ifname", "GigabitEthernet0/0/1").matches(1, "Gi0/0/1", "GigabitEthernet0/0/1", "")
    assert alias.matches(2, "x", "y", "MSTP-gov") and not alias.matches(2, "MSTP-gov", "y", "other")
    assert index.matches(3, "", "", "") and not index.matches(4, "", "", "")
    assert SnmpSettings(interfaces=()).selects(5, "", "", "")  # default: every interface


def test_check_accepts_the_good_file(tmp_path, monkeypatch):
    good_config(tmp_path, monkeypatch)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(["check", str(tmp_path / "lifeline.yaml")]) == 0
