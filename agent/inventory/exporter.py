"""Targets back to a sheet, with the column mapping ``lifeline import`` reads, so a round trip is exact.

Columns: name, address, tier, category, site, probes, then one per label
(circuit_id, carrier, contact, display_name first; others as ``labels.NAME``,
which import maps back). ``--map`` renames a column, as on import. Per-probe
blocks (a tcp port, an http URL ...) have no column; targets that carry one
are named in a warning, since an import of the sheet would need them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from agent.inventory import sheet as sheet_mod

CORE = ("name", "address", "tier", "category", "site", "probes")
FIRST_LABELS = ("circuit_id", "carrier", "contact", "display_name")


def table(targets: Sequence[dict[str, Any]], maps: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for ``targets`` (plain dicts as ``render.target_data`` gives)."""
    names = {k for t in targets for k in t.get("labels", {})}
    labels = [n for n in FIRST_LABELS if n in names] + sorted(names - set(FIRST_LABELS))
    fields = [f for f in CORE if maps.get(f, None) != ""] + \
        [sheet_mod.LABEL_PREFIX + n for n in labels if maps.get(sheet_mod.LABEL_PREFIX + n, None) != ""]
    headers = [maps.get(f) or sheet_mod.CANONICAL.get(f) or f for f in fields]
    rows = []
    for t in targets:
        row = []
        for f in fields:
            if f == "probes":
                row.append(",".join(t.get("probes", ())))
            elif f.startswith(sheet_mod.LABEL_PREFIX):
                row.append(str(t.get("labels", {}).get(f[len(sheet_mod.LABEL_PREFIX):], "")))
            else:
                row.append(str(t.get(f, "")))
        rows.append(row)
    return headers, rows


def with_blocks(targets: Iterable[dict[str, Any]]) -> list[str]:
    """Names of targets whose per-probe settings a sheet cannot carry."""
    return [t["name"] for t in targets if t.get("settings")]


def write(out: Any, fmt: str, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    if fmt == "xlsx":
        sheet_mod.write_xlsx(out, headers, rows)
    else:
        sheet_mod.write_csv(out, headers, rows)
