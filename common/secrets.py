"""Credentials in the config: from the environment, a file, or inline, and never shown.

A ``Secret`` has no repr, str or equality view of its value that could leak
into a log line, an error message or a config dump; messages about a secret
name only where it came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from common.validate import Validator
from common.yamlsrc import Path

MAX_SECRET_FILE = 4096


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential whose value never shows in repr, str, logs or config dumps."""

    value: str = field(repr=False)
    source: str = "inline"  # "env NAME", "file PATH" or "inline"

    def __repr__(self) -> str:
        return f"Secret(<redacted>, from {self.source})"

    __str__ = __repr__


def load_secret(v: Validator, path: Path, key: str, raw: Any) -> Secret | None:
    """The secret a ``*_env`` (variable name), ``*_file`` (path, relative to the config file) or plain key
    gives; None after recording an error. Messages never include the value."""
    if key.endswith("_env"):
        name = v.string(path, raw, max_len=128)
        if name is None:
            return None
        value = os.environ.get(name)
        if not value:
            v.error(path, f"environment variable {name!r} is not set" if value is None
                    else f"environment variable {name!r} is empty")
            return None
        return Secret(value, f"env {name}")
    if key.endswith("_file"):
        name = v.string(path, raw, max_len=4096)
        if name is None:
            return None
        full = name if os.path.isabs(name) else os.path.join(os.path.dirname(v.doc.file), name)
        try:
            with open(full, "rb") as fh:
                data = fh.read(MAX_SECRET_FILE + 1)
        except OSError as exc:
            v.error(path, f"cannot read {full!r}: {exc.strerror}")
            return None
        if len(data) > MAX_SECRET_FILE:
            v.error(path, f"{full!r} is larger than {MAX_SECRET_FILE} bytes; expected one secret")
            return None
        try:
            value = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            v.error(path, f"{full!r} is not UTF-8 text")
            return None
        if not value:
            v.error(path, f"{full!r} is empty")
            return None
        return Secret(value, f"file {full}")
    if not isinstance(raw, str) or not raw:
        v.error(path, "must be a non-empty string (value hidden)")
        return None
    return Secret(raw, "inline")
