"""`lifeline import` and `lifeline export`: real XLSX and CSV files (UTF-8 with BOM, GBK), every bad row
reported with its spreadsheet row and column, derived names, and the export -> import round trip."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import openpyxl
import pytest

from agent import config as config_mod
from agent.cli import main
from tests.helpers import ROOT

HEADERS = ["电路名称", "IP地址", "保障等级", "业务类型", "区县", "电路编号", "运营商", "联系人", "备注"]
SITES = ["普陀", "定海", "岱山", "嵊泗"]
CARRIERS = ["电信", "移动", "联通"]


def _rows(n: int) -> list[list[str]]:
    """A carrier's list: a third of the names are Chinese text (derived names), the rest valid names."""
    rows = []
    for i in range(n):
        name = f"{SITES[i % 4]}人民医院专线{i}" if i % 3 == 0 else f"circuit-{i:04d}"
        rows.append([name, f"198.18.{i // 250}.{i % 250 + 1}", f"P{i % 4}", ["hospital", "gov-cloud", "camera"][i % 3],
                     SITES[i % 4], f"ZS-MSTP-{i:04d}", CARRIERS[i % 3], f"+86-580-{i:06d}", "备注"])
    return rows


def _xlsx(path, headers, rows, title_row: str | None = None, sheet: str = "电路清单") -> None:
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    if title_row:
        ws.append([title_row])
    ws.append(headers)
    for row in rows:
        ws.append(row)
    book.save(path)


def _csv(path, headers, rows, encoding: str) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    with open(path, "wb") as fh:
        fh.write(buf.getvalue().encode(encoding))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _errors(err: str, path) -> list[str]:
    return [line.replace(f"{path}:", "FILE:") for line in err.splitlines() if line.startswith(f"{path}:")
            and not line.startswith(f"{path}: ")]


def _identities(path) -> list[tuple]:
    return [t.identity() for t in config_mod.load(str(path)).targets]


def test_xlsx_gbk_csv_and_utf8_bom_csv_import_to_the_same_yaml(tmp_path, capsys):
    rows = _rows(1000)
    _xlsx(tmp_path / "list.xlsx", HEADERS, rows)
    _csv(tmp_path / "list-gbk.csv", HEADERS, rows, "gbk")
    _csv(tmp_path / "list-utf8.csv", HEADERS, rows, "utf-8-sig")
    outputs = []
    for name in ("list.xlsx", "list-gbk.csv", "list-utf8.csv"):
        out = tmp_path / (name + ".yaml")
        code, _, err = _run(capsys, "import", str(tmp_path / name), "--output", str(out))
        assert code == 0, err
        assert "ignored columns: 备注" in err
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    cfg = config_mod.load(str(tmp_path / "list.xlsx.yaml"))
    assert len(cfg.targets) == 1000
    by_name = {t.name: t for t in cfg.targets}
    assert by_name["circuit-0001"].address == "198.18.0.2" and by_name["circuit-0001"].tier == "P1"
    assert dict(by_name["circuit-0001"].labels) == {"circuit_id": "ZS-MSTP-0001", "carrier": "移动",
                                                    "contact": "+86-580-000001"}
    derived = [t for t in cfg.targets if dict(t.labels).get("display_name")]
    assert len(derived) == 334
    assert all(config_mod.NAME_RE.fullmatch(t.name) for t in derived)
    assert {dict(t.labels)["display_name"] for t in derived} == {r[0] for r in rows if not r[0].startswith("c")}
    assert main(["check", str(tmp_path / "list.xlsx.yaml")]) == 0
    capsys.readouterr()


def test_encoding_can_be_named_and_a_wrong_one_is_an_error(tmp_path, capsys):
    _csv(tmp_path / "gbk.csv", HEADERS, _rows(5), "gbk")
    code, out, _ = _run(capsys, "import", str(tmp_path / "gbk.csv"), "--encoding", "gbk")
    assert code == 0 and "display_name: 普陀人民医院专线0" in out
    code, _, err = _run(capsys, "import", str(tmp_path / "gbk.csv"), "--encoding", "utf-8")
    assert code == 1 and f"{tmp_path / 'gbk.csv'}: not utf-8 text" in err


BAD_HEADERS = ["name", "address", "tier", "category", "site", "circuit_id", "probes"]
EXISTING = """
tiers:
  video: {priority: 5, interval: 30s}
targets:
  - {name: already-there, address: 198.18.9.1, tier: P0}
"""


def _bad_sheet() -> list[list[str]]:
    long = "x" * 1100
    return [
        ["ok-1", "198.18.1.1", "P0", "hospital", "putuo", "C1", ""],               # row 2: fine
        ["", "198.18.1.2", "P0", "", "", "", ""],                                 # 3: empty name
        ["no-address", "", "P1", "", "", "", ""],                                 # 4: empty address
        ["bad-v4", "198.18.1.300", "P1", "", "", "", ""],                         # 5: bad IPv4
        ["bad-v6", "2001:db8::zz", "P1", "", "", "", ""],                         # 6: bad IPv6
        ["bad-host", "bad_host.example", "P2", "", "", "", ""],                   # 7: bad host name
        ["bad-tier", "198.18.1.7", "P9", "", "", "", ""],                         # 8: unknown tier
        ["no-tier", "198.18.1.8", "", "", "", "", ""],                            # 9: empty tier
        ["ok-1", "198.18.1.9", "P2", "", "", "", ""],                             # 10: duplicate in the sheet
        ["already-there", "198.18.1.10", "P2", "", "", "", ""],                   # 11: duplicate of the config
        ["long-label", "198.18.1.11", "P3", "", "", long, ""],                    # 12: label value too long
        ["bad-probe", "198.18.1.12", "P3", "", "", "", "icmp, ping"],             # 13: unknown probe
        ["twice", "198.18.1.13", "P3", "", "", "", "icmp,icmp"],                  # 14: probe listed twice
        ["tcp-no-port", "198.18.1.14", "P3", "", "", "", "icmp tcp"],             # 15: kind needs a block
        ["custom-tier", "198.18.1.15", "video", "camera", "daishan", "C15", ""],  # 16: fine (tier from config)
        ["ok-2", "198.18.1.16", "p1", "", "", "", "ICMP"],                        # 17: fine ("p1" is P1)
        ["", "", "", "", "", "", ""],                                             # 18: blank row, ignored
        ["two-problems", "300.1.1.1", "P7", "", "", "", ""],                      # 19: two errors
    ]


EXPECTED = [
    "FILE:3: name: empty; every row needs a name",
    "FILE:4: address: empty; every row needs an IP address or host name",
    "FILE:5: address: not a valid IPv4 or IPv6 address (got '198.18.1.300')",
    "FILE:6: address: not a valid IPv4 or IPv6 address (got '2001:db8::zz')",
    "FILE:7: address: not a valid IP address or host name (got 'bad_host.example')",
    "FILE:8: tier: unknown tier 'P9'; defined tiers: P0, P1, P2, P3, video",
    "FILE:9: tier: empty; tiers: P0, P1, P2, P3, video",
    "FILE:10: name: duplicate name 'ok-1': also row 2",
    "FILE:11: name: name 'already-there' is already defined in EXISTING:5",
    "FILE:12: circuit_id: longer than 1024 characters",
    "FILE:13: probes: unknown probe 'ping'; known probes: dns, http, icmp, rtsp, sip, snmp, tcp",
    "FILE:14: probes: probe 'icmp' listed twice",
    "FILE:15: probes: the tcp probe needs a block with at least 'port', e.g. tcp: {port: 443}",
    "FILE:19: address: not a valid IPv4 or IPv6 address (got '300.1.1.1')",
    "FILE:19: tier: unknown tier 'P7'; defined tiers: P0, P1, P2, P3, video",
]


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_every_bad_row_is_reported_with_its_row_and_column_and_nothing_is_written(tmp_path, capsys, fmt):
    existing = tmp_path / "lifeline.yaml"
    existing.write_text(EXISTING)
    sheet = tmp_path / f"bad.{fmt}"
    if fmt == "xlsx":
        _xlsx(sheet, BAD_HEADERS, _bad_sheet())
    else:
        _csv(sheet, BAD_HEADERS, _bad_sheet(), "utf-8-sig")
    out = tmp_path / "targets.yaml"
    code, _, err = _run(capsys, "import", str(sheet), "--config.file", str(existing), "-o", str(out))
    assert code == 1
    assert [e.replace(str(existing), "EXISTING") for e in _errors(err, sheet)] == EXPECTED
    assert "14 invalid rows; nothing written" in err
    assert not out.exists()

    code, _, err = _run(capsys, "import", str(sheet), "--config.file", str(existing), "-o", str(out),
                        "--skip-invalid")
    assert code == 1  # a script still notices
    assert "skipped 14 rows: 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 19" in err
    assert "3 targets written" in err
    written = config_mod.load(_as_include(tmp_path, existing, out))
    assert [t.name for t in written.targets] == ["already-there", "ok-1", "custom-tier", "ok-2"]
    assert written.targets[2].tier == "video" and written.targets[3].tier == "P1"
    assert written.targets[3].probes == ("icmp",)


def _as_include(tmp_path, existing, out) -> str:
    """The existing config with the imported file as its targets_files: what `lifeline check` would load."""
    main_file = tmp_path / "with-include.yaml"
    main_file.write_text(existing.read_text() + f"targets_files: [{out}]\n")
    return str(main_file)


def test_chinese_names_get_safe_unique_stable_names_with_display_name(tmp_path, capsys):
    rows = [["普陀医院 Fever Clinic", "198.18.2.1", "P0", "hospital", "Putuo"],
            ["普陀医院 发热门诊", "198.18.2.2", "P0", "hospital", "普陀"],
            ["定海 120 指挥中心", "198.18.2.3", "P0", "emergency", "定海"],
            ["city hall", "198.18.2.4", "P1", "", ""]]
    sheet = tmp_path / "names.csv"
    _csv(sheet, ["名称", "地址", "等级", "类别", "站点"], rows, "gb18030")
    code, out, err = _run(capsys, "import", str(sheet))
    assert code == 0, err
    (tmp_path / "a.yaml").write_text(out)
    targets = config_mod.load(str(tmp_path / "a.yaml")).targets
    names = [t.name for t in targets]
    assert names[0].startswith("fever-clinic-putuo-") and len(names[0]) == len("fever-clinic-putuo-") + 10
    assert names[1].startswith("target-")
    assert names[2].startswith("120-")
    assert names[3].startswith("city-hall-")
    assert len(set(names)) == 4
    assert [dict(t.labels)["display_name"] for t in targets] == [r[0] for r in rows]
    code, again, _ = _run(capsys, "import", str(sheet))
    assert again == out  # the same sheet gives the same names: counters survive a re-import


def test_a_sheet_without_a_name_column_gets_names_from_site_and_address(tmp_path, capsys):
    sheet = tmp_path / "no-names.xlsx"
    _xlsx(sheet, ["IP地址", "保障等级", "站点"],
          [["198.18.3.1", "P2", "putuo"], ["2001:db8::5", "P2", "定海"], ["198.18.3.3", "P3", ""],
           ["198.18.3.1", "P2", "putuo"]],
          title_row="舟山市重点保障电路清单（2024）")
    code, _, err = _run(capsys, "import", str(sheet), "-o", str(tmp_path / "t.yaml"))
    assert code == 1
    assert "header at row 2" in err and "no name column: names are <site>-<address>" in err
    assert _errors(err, sheet) == ["FILE:6: name: duplicate name 'putuo-198.18.3.1': also row 3"]
    code, _, err = _run(capsys, "import", str(sheet), "-o", str(tmp_path / "t.yaml"), "--skip-invalid")
    names = [t.name for t in config_mod.load(str(tmp_path / "t.yaml")).targets]
    assert names[0] == "putuo-198.18.3.1" and names[2] == "198.18.3.3"
    assert names[1].startswith("s") and names[1].endswith("-2001:db8::5")


def test_map_flags_pick_columns_and_bad_maps_are_explained(tmp_path, capsys):
    sheet = tmp_path / "odd.xlsx"
    _xlsx(sheet, ["线路", "管理IP", "级别", "专线编号"], [["hq-1", "198.18.4.1", "P0", "ZS-9"]], sheet="第二页")
    code, _, err = _run(capsys, "import", str(sheet))
    assert code == 1 and "no column for 'address'" in err and "--map address=COLUMN" in err
    code, out, err = _run(capsys, "import", str(sheet), "--sheet", "第二页", "--map", "name=线路",
                          "--map", "address=管理IP", "--map", "tier=级别", "--map", "labels.circuit_id=专线编号")
    assert code == 0, err
    assert "circuit_id: ZS-9" in out
    code, _, err = _run(capsys, "import", str(sheet), "--sheet", "nope")
    assert code == 1 and "no sheet 'nope'; sheets: 第二页" in err
    code, _, err = _run(capsys, "import", str(sheet), "--map", "address=IP")
    assert code == 1 and "the sheet has no column 'IP'; columns: 线路, 管理IP, 级别, 专线编号" in err
    code, _, err = _run(capsys, "import", str(sheet), "--map", "labels.site=线路")
    assert code == 1 and "'site' is not a usable label name" in err


ROUND_TRIP = """
targets:
  - {name: putuo-hospital, address: 198.18.5.1, tier: P0, category: hospital, site: putuo,
     labels: {circuit_id: "0036", carrier: 电信, contact: "+86-580-000000", vlan: "=1+2"}}
  - {name: fever-clinic-3fa2c1d0e5, address: "2001:db8::10", tier: P1,
     labels: {display_name: 普陀医院 发热门诊, circuit_id: "ZS, MSTP \\"7\\""}, probes: [icmp]}
  - {name: camera-0001, address: cam1.example, tier: P3, category: camera, site: 定海}
"""


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_then_import_gives_the_same_targets(tmp_path, capsys, fmt):
    cfg = tmp_path / "lifeline.yaml"
    cfg.write_text(ROUND_TRIP)
    for maps in ([], ["--map", "name=电路名称", "--map", "labels.vlan=VLAN"]):
        sheet = tmp_path / f"export.{fmt}"
        code, _, err = _run(capsys, "export", "--config.file", str(cfg), "--output", str(sheet), *maps)
        assert code == 0, err
        if fmt == "csv":
            assert sheet.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel opens it as UTF-8
        code, out, err = _run(capsys, "import", str(sheet), *maps)
        assert code == 0, err
        (tmp_path / "back.yaml").write_text(out)
        assert _identities(tmp_path / "back.yaml") == _identities(cfg)
    book = openpyxl.load_workbook(tmp_path / "export.xlsx") if fmt == "xlsx" else None
    if book is not None:  # text cells stay text: no formula, no number
        values = [c.value for row in book.active.iter_rows() for c in row]
        assert "=1+2" in values and "0036" in values


def test_export_csv_to_stdout(tmp_path, capsys):
    cfg = tmp_path / "lifeline.yaml"
    cfg.write_text(ROUND_TRIP)
    code, out, _ = _run(capsys, "export", "--config.file", str(cfg))
    assert code == 0
    assert out.splitlines()[0] == "\ufeffname,address,tier,category,site,probes,circuit_id,carrier,contact," \
                                  "display_name,labels.vlan"  # with the BOM, also on stdout
    code, _, err = _run(capsys, "export", "--config.file", str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml:1: (file): cannot read file" in err


def test_import_as_a_subprocess_writes_yaml_to_stdout(tmp_path):
    _csv(tmp_path / "gbk.csv", HEADERS, _rows(20), "gbk")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "import", str(tmp_path / "gbk.csv")],
                          capture_output=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode("utf-8")
    assert text.startswith("# Generated by `lifeline import`: 20 targets.")
    (tmp_path / "out.yaml").write_text(text, encoding="utf-8")
    assert len(config_mod.load(str(tmp_path / "out.yaml")).targets) == 20
    assert "Traceback" not in proc.stderr.decode()
    assert os.path.getsize(tmp_path / "out.yaml") > 0
