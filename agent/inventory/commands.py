"""``lifeline import``, ``export`` and ``diff``: flags and handlers (the heavy modules load on use)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

COMMANDS = ("import", "export", "diff")


def add_parsers(sub: Any) -> None:
    imp = sub.add_parser("import", help="turn a CSV/XLSX circuit list into a validated target file")
    imp.add_argument("file", metavar="FILE", help="CSV (UTF-8, UTF-8 with BOM, GBK/GB18030) or XLSX")
    imp.add_argument("--sheet", default=None, help="XLSX sheet name (default: the first sheet)")
    imp.add_argument("--encoding", default=None, help="CSV encoding (default: utf-8-sig, then gb18030)")
    _map_flag(imp)
    imp.add_argument("--output", "-o", default="-", help="target file to write (default: stdout)")
    imp.add_argument("--skip-invalid", action="store_true",
                     help="write the valid rows and list the skipped ones (exit status stays 1)")
    imp.add_argument("--config.file", dest="config_file", default=None,
                     help="existing configuration: its tiers and profiles apply and its names must not repeat")

    exp = sub.add_parser("export", help="write the targets of a config file or a running agent as CSV/XLSX")
    src = exp.add_mutually_exclusive_group(required=True)
    src.add_argument("--config.file", dest="config_file", help="configuration file")
    src.add_argument("--url", help="running agent, e.g. http://127.0.0.1:9123 (https://user:pass@host:port)")
    exp.add_argument("--format", choices=("csv", "xlsx"), default=None,
                     help="default: from the --output name, else csv")
    _map_flag(exp)
    exp.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    exp.add_argument("--ca-file", default=None, help="CA certificate for an https --url")

    dif = sub.add_parser("diff", help="what a reload from OLD to NEW would change, and whether the P0 guard "
                                      "would refuse it (exit 0 applied, 3 refused, 1 invalid input)")
    dif.add_argument("old", metavar="OLD", help="config file or a running agent's URL")
    dif.add_argument("new", metavar="NEW", help="config file or a running agent's URL")
    dif.add_argument("--ca-file", default=None, help="CA certificate for https URLs")


def _map_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                        help="column for a field (name, address, tier, category, site, probes, labels.NAME); "
                             "repeatable; FIELD= leaves the field out")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    handler = {"import": _import, "export": _export, "diff": _diff}[args.command]
    return handler(args, out, err)


def _load_config(path: str, err: TextIO) -> Any:
    from agent import config as config_mod
    from common.errors import ConfigInvalid

    try:
        return config_mod.load(path)
    except ConfigInvalid as exc:
        for e in exc.errors:
            print(e, file=err)
        return None


def _write_text(path: str, text: str, out: TextIO) -> None:
    if path == "-":
        out.write(text)
        return
    _atomic(path, text.encode("utf-8"))


def _atomic(path: str, data: bytes) -> None:
    """Write beside the file and rename: an agent watching targets.d never reads half a file.
    The temporary name ends in .tmp, so a ``*.yaml`` glob never matches it."""
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from agent.inventory import sheet
    from agent.inventory.importer import Importer, render_yaml

    existing = None
    if args.config_file:
        existing = _load_config(args.config_file, err)
        if existing is None:
            print(f"lifeline import: {args.config_file} is invalid; fix it first", file=err)
            return 1
    try:
        importer = Importer(args.file, sheet.parse_maps(args.map), existing, args.config_file,
                            sheet=args.sheet, encoding=args.encoding)
        result = importer.run()
    except sheet.SheetError as exc:
        print(f"lifeline import: {exc}", file=err)
        return 1
    for note in result.notes:
        print(note, file=err)
    for e in result.errors:
        print(e, file=err)
    if result.errors and not args.skip_invalid:
        print(f"lifeline import: {len(result.bad_rows)} invalid rows; nothing written "
              f"(fix them, or use --skip-invalid)", file=err)
        return 1
    if result.errors:
        print(f"lifeline import: skipped {len(result.bad_rows)} rows: "
              f"{', '.join(str(r) for r in result.bad_rows if r)}", file=err)
    text = render_yaml([entry for _, entry in result.targets])
    _write_text(args.output, text, out)
    where = "stdout" if args.output == "-" else args.output
    print(f"lifeline import: {len(result.targets)} targets written to {where}", file=err)
    return 1 if result.errors else 0


def _export(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from agent.inventory import exporter, sheet
    from agent.inventory.remote import RemoteError, fetch
    from agent.inventory.render import target_data

    try:
        maps = sheet.parse_maps(args.map)
        if args.url:
            targets = fetch(args.url, args.ca_file)["config"]["targets"]
        else:
            cfg = _load_config(args.config_file, err)
            if cfg is None:
                return 1
            targets = [target_data(t) for t in cfg.targets]
    except (sheet.SheetError, RemoteError) as exc:
        print(f"lifeline export: {exc}", file=err)
        return 1
    fmt = args.format or ("xlsx" if args.output.lower().endswith((".xlsx", ".xlsm")) else "csv")
    headers, rows = exporter.table(targets, maps)
    blocks = exporter.with_blocks(targets)
    if blocks:
        print(f"lifeline export: {len(blocks)} targets have per-probe settings a sheet does not carry "
              f"(after an import they get the defaults, or need their blocks again): "
              f"{', '.join(blocks[:10])}{' ...' if len(blocks) > 10 else ''}", file=err)
    if args.output == "-":
        if fmt == "xlsx" and getattr(out, "isatty", lambda: False)():
            print("lifeline export: XLSX is binary; use --output FILE", file=err)
            return 1
        buffer = getattr(out, "buffer", None)
        if buffer is None:  # a text stream (tests): CSV as text, without the BOM
            if fmt == "xlsx":
                print("lifeline export: XLSX is binary; use --output FILE", file=err)
                return 1
            import io

            data = io.BytesIO()
            exporter.write(data, fmt, headers, rows)
            out.write(data.getvalue().decode("utf-8-sig"))
        else:
            exporter.write(buffer, fmt, headers, rows)
            buffer.flush()
    else:
        import io

        data = io.BytesIO()
        exporter.write(data, fmt, headers, rows)
        _atomic(args.output, data.getvalue())
        print(f"lifeline export: {len(rows)} targets written to {args.output} ({fmt})", file=err)
    return 0


def _diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from dataclasses import replace

    from agent.inventory.diff import compare, format_report
    from agent.inventory.remote import RemoteError, canonical, fetch, from_data, is_url, shown

    sides = []
    failed = False
    for spec in (args.old, args.new):
        if is_url(spec):
            try:
                data = fetch(spec, args.ca_file)
            except RemoteError as exc:
                print(f"lifeline diff: {exc}", file=err)
                failed = True
                continue
            shard = data.get("shard") or {}
            if shard.get("count", 1) > 1:
                print(f"lifeline diff: {shown(spec)} is shard {shard.get('index')} of {shard.get('count')}; "
                      f"only its own targets are compared", file=err)
            remote = from_data(data["config"], spec)
            pulled = set(data["config"].get("pulled") or ())
            if pulled and not (is_url(args.old) and is_url(args.new)):
                # Fetched by the agent from targets_http: the file on the other side has no such targets.
                remote = replace(remote, targets=tuple(t for t in remote.targets if t.name not in pulled))
                print(f"lifeline diff: {len(pulled)} targets {shown(spec)} fetched from targets_http are not "
                      f"compared", file=err)
            sides.append((shown(spec), remote, True))
        else:
            cfg = _load_config(spec, err)
            failed = failed or cfg is None
            sides.append((spec, cfg, False))
    if failed:
        return 1
    (old_name, old, old_remote), (new_name, new, new_remote) = sides
    if old_remote != new_remote:  # compare like with like: the redacted rendering on both sides
        old, new = (old if old_remote else canonical(old)), (new if new_remote else canonical(new))
    report = compare(old, new, old_name, new_name)
    out.write(format_report(report))
    return 3 if report.refusal else 0
