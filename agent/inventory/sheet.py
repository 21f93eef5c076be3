"""Tables in and out of CSV and XLSX, and the mapping of their columns to target fields.

A ``Table`` keeps each row's spreadsheet row number (the header's row is 1
when it is the first row), so every message can point at the row a person
sees in Excel. CSV is read the way Excel writes it: UTF-8 with a BOM, or the
GBK/GB18030 of a Chinese-locale "CSV (comma delimited)"; ``--encoding`` overrides.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FIELDS = ("name", "address", "tier", "category", "site", "probes")
# Header spellings each field accepts by default, most specific first: when a sheet has both
# "IP地址" and "地址" (often the street address of the circuit), the IP column wins.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "target", "电路名称", "线路名称", "目标名称", "名称"),
    "address": ("address", "ip", "ip address", "ip地址", "监测地址", "地址"),
    "tier": ("tier", "保障等级", "等级", "优先级"),
    "category": ("category", "业务类型", "类别", "业务类别"),
    "site": ("site", "站点", "区县", "区域"),
    "probes": ("probes", "探测方式"),
    "labels.circuit_id": ("circuit_id", "circuit id", "电路编号", "电路代号", "专线号"),
    "labels.carrier": ("carrier", "运营商"),
    "labels.contact": ("contact", "联系人"),
    "labels.display_name": ("display_name", "显示名称"),
}
# The header `lifeline export` writes for a field (also accepted on import, see above).
CANONICAL = {f: aliases[0] for f, aliases in DEFAULT_ALIASES.items()}
LABEL_PREFIX = "labels."
MAX_HEADER_SCAN = 10  # rows searched for the header, below a title row such as "XX市重点保障电路清单"
MAX_CELL = 4096


class SheetError(Exception):
    """The file as a whole cannot be read or mapped; the message says what to do."""


@dataclass
class Table:
    headers: list[str]
    rows: list[tuple[int, list[str]]]  # (spreadsheet row number, cells as text)
    header_row: int = 1
    sheet: str = ""


@dataclass
class ColumnMap:
    """field -> column index; ``ignored`` are the sheet's columns no field uses."""

    columns: dict[str, int]
    headers: list[str]
    ignored: list[str] = field(default_factory=list)

    def column(self, name: str) -> str:
        """The sheet's header for a field, for messages (the field itself when it has no column)."""
        index = self.columns.get(name)
        return self.headers[index] if index is not None else name


def normalize(header: str) -> str:
    """Full-width to half-width, case, spaces and '_' folded: "ＩＰ 地址" and "ip地址" match."""
    text = unicodedata.normalize("NFKC", header).casefold()
    return re.sub(r"[\s_]+", " ", text).strip()


def cell_text(value: object) -> str:
    """An XLSX cell as the text a person sees: 36.0 typed as a number is "36"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# --- reading -----------------------------------------------------------------

def read(path: str, sheet: str | None = None, encoding: str | None = None) -> Table:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise SheetError(f"cannot read {path}: {exc.strerror}") from None
    if head.startswith(b"PK\x03\x04"):  # XLSX is a zip archive, whatever the file is called
        return _read_xlsx(path, sheet)
    if sheet:
        raise SheetError("--sheet applies to XLSX files; this is a CSV file")
    return _read_csv(path, encoding)


def _read_xlsx(path: str, sheet: str | None) -> Table:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)  # data_only: formulas' values
    except (InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise SheetError(f"{path}: not a readable XLSX workbook ({exc})") from None
    try:
        if sheet is None:
            ws = book.worksheets[0]
        elif sheet in book.sheetnames:
            ws = book[sheet]
        else:
            raise SheetError(f"{path}: no sheet {sheet!r}; sheets: {', '.join(book.sheetnames)}")
        rows = []
        for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
            rows.append((number, [cell_text(v) for v in values]))
        return _table(path, rows, ws.title)
    finally:
        book.close()


def _decode(path: str, data: bytes, encoding: str | None) -> str:
    if encoding:
        try:
            return data.decode(encoding)
        except LookupError:
            raise SheetError(f"unknown encoding {encoding!r} (try utf-8-sig, gb18030, utf-16)") from None
        except UnicodeDecodeError as exc:
            raise SheetError(f"{path}: not {encoding} text (byte {exc.start})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")  # Excel's "Unicode text"
    for candidate in ("utf-8-sig", "gb18030"):  # gb18030 is a superset of GBK and GB2312
        try:
            return data.decode(candidate)
        except UnicodeDecodeError:
            continue
    raise SheetError(f"{path}: neither UTF-8 nor GB18030 text; name the encoding with --encoding")


def _read_csv(path: str, encoding: str | None) -> Table:
    with open(path, "rb") as fh:
        text = _decode(path, fh.read(), encoding)
    first = text.split("\n", 1)[0]
    delimiter = max((",", "\t", ";"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        # The record number is the row Excel shows, even when a quoted cell spans lines.
        rows = [(number, [c.strip() for c in record]) for number, record in enumerate(reader, start=1)]
    except csv.Error as exc:
        raise SheetError(f"{path}: not a readable CSV file ({exc})") from None
    return _table(path, rows, "")


def _table(path: str, rows: list[tuple[int, list[str]]], sheet: str) -> Table:
    rows = [(n, cells) for n, cells in rows if any(cells)]  # blank rows are formatting, not data
    if not rows:
        raise SheetError(f"{path}: the sheet is empty")
    known = {normalize(a) for aliases in DEFAULT_ALIASES.values() for a in aliases}
    header_at = 0
    for i, (_, cells) in enumerate(rows[:MAX_HEADER_SCAN]):
        if sum(normalize(c) in known or normalize(c).startswith(LABEL_PREFIX) for c in cells) >= 2:
            header_at = i
            break
    number, headers = rows[header_at]
    width = len(headers)
    while width and not headers[width - 1]:
        width -= 1
    body = []
    for n, cells in rows[header_at + 1:]:
        cells = (cells + [""] * width)[:width] if len(cells) != width else cells
        body.append((n, [c[:MAX_CELL] if len(c) > MAX_CELL else c for c in cells]))
    return Table(headers=[h.strip() for h in headers[:width]], rows=body, header_row=number, sheet=sheet)


# --- mapping -----------------------------------------------------------------

def parse_maps(items: Iterable[str]) -> dict[str, str]:
    """--map FIELD=COLUMN options; an empty COLUMN means "not from the sheet"."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, column = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SheetError(f"--map {item!r}: expected FIELD=COLUMN, e.g. --map name=电路名称")
        if key not in FIELDS and not key.startswith(LABEL_PREFIX):
            raise SheetError(f"--map {item!r}: unknown field {key!r}; fields: {', '.join(FIELDS)}, labels.NAME")
        if key.startswith(LABEL_PREFIX):
            from agent.config import LABEL_NAME_RE, RESERVED_LABELS

            label = key[len(LABEL_PREFIX):]
            if not LABEL_NAME_RE.fullmatch(label) or label.startswith("__") or label in RESERVED_LABELS:
                raise SheetError(f"--map {item!r}: {label!r} is not a usable label name (letters, digits and "
                                 f"'_'; not {', '.join(sorted(RESERVED_LABELS))})")
        out[key] = column.strip()
    return out


def resolve(headers: Sequence[str], maps: dict[str, str]) -> ColumnMap:
    """Which column feeds which field: --map first, then the default spellings, then ``labels.X`` headers."""
    from agent.config import LABEL_NAME_RE, RESERVED_LABELS

    by_norm: dict[str, int] = {}
    for i, h in enumerate(headers):
        if h:
            by_norm.setdefault(normalize(h), i)
    columns: dict[str, int] = {}
    for fld, column in maps.items():
        if not column:
            continue
        if normalize(column) not in by_norm:
            shown = ", ".join(h for h in headers if h)
            raise SheetError(f"--map {fld}={column}: the sheet has no column {column!r}; columns: {shown}")
        columns[fld] = by_norm[normalize(column)]
    taken = set(columns.values())
    for fld, aliases in DEFAULT_ALIASES.items():
        if fld in maps:
            continue
        for alias in aliases:
            index = by_norm.get(normalize(alias))
            if index is not None and index not in taken:
                columns[fld] = index
                taken.add(index)
                break
    for i, h in enumerate(headers):
        norm = normalize(h)
        if i in taken or not norm.startswith(LABEL_PREFIX):
            continue
        label = h.strip()[len(LABEL_PREFIX):]
        key = LABEL_PREFIX + label
        if LABEL_NAME_RE.fullmatch(label) and not label.startswith("__") and label not in RESERVED_LABELS \
                and key not in columns and key not in maps:
            columns[key] = i
            taken.add(i)
    ignored = [h for i, h in enumerate(headers) if h and i not in taken]
    return ColumnMap(columns=columns, headers=list(headers), ignored=ignored)


# --- writing -----------------------------------------------------------------

def write_csv(out: io.BufferedIOBase | io.RawIOBase, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """UTF-8 with a BOM and CRLF, which Excel opens as UTF-8 (without the BOM it assumes the ANSI code page)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    out.write(text.getvalue().encode("utf-8-sig"))


def write_xlsx(out: io.BufferedIOBase | io.RawIOBase | str, headers: Sequence[str],
               rows: Iterable[Sequence[str]], title: str = "targets") -> None:
    import openpyxl
    from openpyxl.cell import WriteOnlyCell

    book = openpyxl.Workbook(write_only=True)
    ws = book.create_sheet(title)

    def cells(values: Sequence[str]) -> list[WriteOnlyCell]:
        out_cells = []
        for value in values:
            cell = WriteOnlyCell(ws, value=value)
            cell.data_type = "s"  # text, always: "=..." must not become a formula, "0036" not 36
            out_cells.append(cell)
        return out_cells

    ws.append(cells(headers))
    for row in rows:
        ws.append(cells(row))
    book.save(out)
