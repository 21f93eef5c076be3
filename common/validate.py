"""Typed checks over a parsed YAML document that collect every error with its line.

Each check returns the converted value or ``None`` after recording an error, so
one pass over a file reports all problems instead of stopping at the first.
Probe kinds use the same primitives for their own sections.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.yamlsrc import Document, Path, format_path

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s|m|h|d)")
_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True)
class ConfigError:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


@dataclass
class Validator:
    """Error collector bound to one document."""

    doc: Document
    errors: list[ConfigError] = field(default_factory=list)

    def error(self, path: Path, message: str) -> None:
        self.errors.append(ConfigError(self.doc.file, self.doc.line(path), format_path(path), message))

    def where(self, path: Path) -> str:
        return f"{self.doc.file}:{self.doc.line(path)}"

    # --- structure -------------------------------------------------------

    def mapping(self, path: Path, value: Any, allowed: Iterable[str],
                required: Iterable[str] = ()) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping (got {_kind(value)})")
            return None
        allowed = set(allowed)
        for key in value:
            if key not in allowed:
                hint = _suggest(str(key), allowed)
                self.error(path + (key,), f"unknown key{hint}")
        for key in required:
            if key not in value:
                self.error(path, f"missing required key {key!r}")
        return {k: v for k, v in value.items() if k in allowed}

    def seq(self, path: Path, value: Any) -> list[Any] | None:
        if not isinstance(value, list):
            self.error(path, f"must be a list (got {_kind(value)})")
            return None
        return value

    # --- scalars ---------------------------------------------------------

    def string(self, path: Path, value: Any, *, pattern: re.Pattern[str] | None = None,
               what: str = "", max_len: int = 256) -> str | None:
        if not isinstance(value, str) or not value:
            self.error(path, f"must be a non-empty string (got {_kind(value)})")
            return None
        if len(value) > max_len:
            self.error(path, f"longer than {max_len} characters")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.error(path, f"{what or 'invalid value'} (got {value!r})")
            return None
        return value

    def label_value(self, path: Path, value: Any) -> str | None:
        """Free text that ends up as a label value: strings and plain numbers."""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.error(path, f"must be a string or number (got {_kind(value)})")
            return None
        text = str(value)
        if len(text) > 1024:
            self.error(path, "longer than 1024 characters")
            return None
        return text

    def integer(self, path: Path, value: Any, *, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be an integer (got {_kind(value)})")
            return None
        if not lo <= value <= hi:
            self.error(path, f"must be between {lo} and {hi} (got {value})")
            return None
        return value

    def boolean(self, path: Path, value: Any) -> bool | None:
        # YAML 1.1 reads yes/no/on/off as booleans too; a quoted "true" stays a string and is refused.
        if not isinstance(value, bool):
            self.error(path, f"must be true or false (got {value!r})")
            return None
        return value

    def ratio(self, path: Path, value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(path, f"must be a number between 0 and 1 (got {_kind(value)})")
            return None
        if not 0.0 <= value <= 1.0:
            self.error(path, f"must be between 0 and 1 (got {value})")
            return None
        return float(value)

    def duration(self, path: Path, value: Any, *, lo: float = 0.0, hi: float = 86400.0) -> float | None:
        seconds = parse_duration(value)
        if seconds is None:
            self.error(path, f'must be a duration such as "5s", "250ms" or "1m30s" (got {value!r})')
            return None
        if not lo < seconds <= hi:
            self.error(path, f"must be above {format_duration(lo)} and at most {format_duration(hi)} "
                             f"(got {value})")
            return None
        return seconds

    def choice(self, path: Path, value: Any, choices: Iterable[Any]) -> Any:
        choices = list(choices)
        if value not in choices:
            shown = ", ".join(str(c) for c in choices)
            self.error(path, f"must be one of {shown} (got {value!r})")
            return None
        return value

    def address(self, path: Path, value: Any) -> str | None:
        """An IPv4/IPv6 literal or an RFC 1123 host name."""
        if not isinstance(value, str) or not value:
            self.error(path, f"must be an IP address or host name (got {_kind(value)})")
            return None
        problem = address_problem(value)
        if problem:
            self.error(path, f"{problem} (got {value!r})")
            return None
        return value


def address_problem(value: str) -> str | None:
    """Why ``value`` is neither an IP literal nor a valid host name, or None."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+", value) or ":" in value:
        return "not a valid IPv4 or IPv6 address"
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 253 or not all(_HOST_LABEL_RE.match(part) for part in name.split(".")):
        return "not a valid IP address or host name"
    return None


def parse_duration(value: Any) -> float | None:
    """Prometheus-style durations ("1m30s", "250ms"); bare numbers are rejected as ambiguous."""
    if not isinstance(value, str) or not value:
        return None
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(value):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(value) else None


def format_duration(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}" if len(value) < 40 else "a long string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _suggest(key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; allowed: {', '.join(sorted(allowed))}"
