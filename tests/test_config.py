"""Config validation: the shipped example, the bad-config corpus, and hostile files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import config as config_mod
from agent.cli import check, main
from common.errors import ConfigInvalid
from tests.helpers import ROOT

BAD = Path(__file__).parent / "configs" / "bad"
CASES = sorted(p.stem for p in BAD.glob("*.yaml"))


def test_example_config_is_valid():
    out = io.StringIO()
    assert check([os.path.join(ROOT, "config.example.yaml")], out) == 0, out.getvalue()
    cfg = config_mod.load(os.path.join(ROOT, "config.example.yaml"))
    tiers = {t.tier for t in cfg.targets}
    assert {"P0", "P1", "P2", "P3"} <= tiers
    hospital = next(t for t in cfg.targets if t.name == "putuo-hospital-fever-clinic")
    assert dict(hospital.labels)["circuit_id"] == "ZS-MSTP-0036"
    assert cfg.tiers["P1"].parts["icmp"].rtt_warn == pytest.approx(0.080)
    assert cfg.tiers["P1"].interval == 15.0
    graph = cfg.graph()
    assert graph.parents["checkpoint-camera-0001"] == ("shenjiamen-agg-router-7",) and len(graph.anchors) == 3


@pytest.mark.parametrize("case", CASES)
def test_bad_config_gives_exact_messages(case):
    path = BAD / f"{case}.yaml"
    expected = (BAD / f"{case}.expect").read_text().replace("DIR/", f"{BAD}/").replace("FILE:", f"{path}:")
    out = io.StringIO()
    assert check([str(path)], out) == 1
    assert out.getvalue() == expected


def test_every_error_is_reported_not_just_the_first():
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(str(BAD / "wrong_types.yaml"))
    assert len(exc.value.errors) == 7


@pytest.mark.parametrize("case", ["tab_indent", "not_yaml", "wrong_types", "empty"])
def test_cli_prints_no_traceback(case):
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "check", str(BAD / f"{case}.yaml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.startswith(f"{BAD / case}.yaml:")


def test_run_refuses_invalid_file(capsys):
    assert main(["run", "--config.file", str(BAD / "unknown_tier.yaml"),
                 "--web.listen-address", "127.0.0.1:0"]) == 1
    err = capsys.readouterr().err
    assert "refusing to start" in err
    assert "unknown_tier.yaml:4: targets[0].tier: unknown tier 'P7'" in err


def test_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.yaml")]) == 1
    assert f"{tmp_path / 'nope.yaml'}:1: (file): cannot read file: No such file or directory" in capsys.readouterr().out


def _write(tmp_path: Path, data: bytes | str) -> str:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def _errors(path: str) -> list[str]:
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(path)
    return [str(e) for e in exc.value.errors]


def test_binary_file(tmp_path):
    # bytes(range(256)) holds one newline (0x0a) before the first invalid byte (0x80).
    path = _write(tmp_path, b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    assert _errors(path) == [f"{path}:2: (file): file is not valid UTF-8 text"]


def test_non_utf8_reports_the_line(tmp_path):
    path = _write(tmp_path, "targets:\n  - name: caf".encode() + b"\xe9\n")
    assert _errors(path) == [f"{path}:2: (file): file is not valid UTF-8 text"]


def test_alias_bomb_is_bounded(tmp_path):
    # "Billion laughs": 9 levels of 10x expansion; composing is cheap, expanding must be refused.
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i-1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    started = time.monotonic()
    errors = _errors(_write(tmp_path, "\n".join(lines) + "\n"))
    assert time.monotonic() - started < 20
    assert len(errors) == 1 and "alias bomb" in errors[0]


def test_deep_nesting_is_refused(tmp_path):
    path = _write(tmp_path, "targets: " + "[" * 5000 + "]" * 5000 + "\n")
    errors = _errors(path)
    assert len(errors) == 1 and "nesting deeper than 64 levels" in errors[0]


def test_huge_file_is_refused(tmp_path):
    path = _write(tmp_path, "# " + "x" * (17 * 1024 * 1024) + "\n")
    assert _errors(path) == [f"{path}:1: (file): file is larger than 16 MiB"]


def test_yaml_merge_keys_work(tmp_path):
    path = _write(tmp_path, """
defaults: &hospital {tier: P0, category: hospital, site: putuo}
targets:
  - {<<: *hospital, name: a, address: 127.0.0.1}
  - {<<: *hospital, name: b, address: 127.0.0.2, site: dinghai}
""")
    # 'defaults' is not a known key: anchors must live inside known keys or a targets file.
    assert _errors(path) == [f"{path}:2: defaults: unknown key; allowed: anchors, consensus, dns, maintenance, reload, scheduler, "
                             "sd_cache_dir, sites, snmp_profiles, targets, targets_files, targets_http, targets_sd_files, "
                             "tiers"]
    path = _write(tmp_path, """
targets:
  - &h {name: a, address: 127.0.0.1, tier: P0, category: hospital, site: putuo}
  - {<<: *h, name: b, address: 127.0.0.2, site: dinghai}
""")
    cfg = config_mod.load(path)
    b = cfg.targets[1]
    assert (b.name, b.address, b.tier, b.category, b.site) == ("b", "127.0.0.2", "P0", "hospital", "dinghai")


def test_targets_files_are_merged_and_relative(tmp_path):
    (tmp_path / "targets.d").mkdir()
    (tmp_path / "targets.d" / "putuo.yaml").write_text("- {name: c1, address: 127.0.0.5, tier: P3}\n")
    (tmp_path / "targets.d" / "dinghai.yaml").write_text(
        "targets:\n  - {name: c2, address: 127.0.0.6, tier: P3}\n")
    main_file = tmp_path / "main.yaml"
    main_file.write_text('targets_files: ["targets.d/*.yaml"]\ntargets:\n  - {name: h, address: "::1", tier: P0}\n')
    cfg = config_mod.load(str(main_file))
    assert sorted(t.name for t in cfg.targets) == ["c1", "c2", "h"]
    assert len(cfg.files) == 3 and len(cfg.digest) == 64


def test_custom_tier_inherits_and_validates(tmp_path):
    path = _write(tmp_path, "tiers:\n  P4: {interval: 2m, severity: info}\n"
                            "targets:\n  - {name: a, address: 127.0.0.1, tier: P4}\n")
    tier = config_mod.load(path).tiers["P4"]
    assert tier.interval == 120 and tier.priority > config_mod.DEFAULT_TIERS["P3"].priority


def test_rtt_histogram_is_per_tier_on_by_default_and_strictly_boolean(tmp_path):
    path = _write(tmp_path, "tiers:\n  P3: {rtt_histogram: false}\n  P4: {interval: 2m}\n"
                            "targets:\n  - {name: a, address: 127.0.0.1, tier: P3}\n")
    tiers = config_mod.load(path).tiers
    assert [tiers[t].parts["icmp"].rtt_histogram for t in ("P0", "P1", "P2", "P3", "P4")] == [
        True, True, True, False, True]
    path = _write(tmp_path, 'tiers:\n  P2: {rtt_histogram: "false"}\n'
                            "targets:\n  - {name: a, address: 127.0.0.1, tier: P2}\n")
    assert _errors(path) == [f"{path}:2: tiers.P2.rtt_histogram: must be true or false (got 'false')"]


def test_p0_drop_intended_is_strictly_boolean(tmp_path):
    path = _write(tmp_path, "reload: {p0_drop_intended: 'true'}\n"
                            "targets:\n  - {name: a, address: 127.0.0.1, tier: P0}\n")
    assert _errors(path) == [f"{path}:1: reload.p0_drop_intended: must be true or false (got 'true')"]


SNMP_ENV = {"LIFELINE_SNMP_COMMUNITY": "c0mmunity-Xq7", "LIFELINE_SNMP_AUTH_KEY": "auth-Key-9fz1",
            "LIFELINE_SNMP_PRIV_KEY": "priv-Key-4kd8"}


def test_snmp_example_is_valid_and_never_shows_its_secrets(monkeypatch):
    for k, v in SNMP_ENV.items():
        monkeypatch.setenv(k, v)
    path = os.path.join(ROOT, "examples", "snmp.yaml")
    out = io.StringIO()
    assert check([path], out) == 0, out.getvalue()
    cfg = config_mod.load(path)
    dump = repr(cfg) + str(cfg) + out.getvalue()
    assert "gov-cloud-core-uplink" in dump  # the dump is real; only the secret values are hidden
    for secret in SNMP_ENV.values():
        assert secret not in dump
