"""Load YAML into plain Python values while remembering the line of every key.

PyYAML's constructors forget positions and silently accept duplicate keys, and
expanding aliases naively lets a few hundred bytes ("billion laughs") become
gigabytes. We compose the node graph ourselves so that every error can name a
file and a line, duplicate keys are rejected, and the size of the expanded
document is bounded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

MAX_FILE_BYTES = 16 * 1024 * 1024
# A 10,000-target file expands to roughly 200k nodes; leave room for that and
# stop alias bombs long before they hurt memory.
MAX_NODES = 2_000_000
MAX_DEPTH = 64

_MERGE_TAG = "tag:yaml.org,2002:merge"


class SourceError(Exception):
    """A file could not be turned into a document; carries a line for the message."""

    def __init__(self, line: int, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path


@dataclass
class Document:
    """Parsed YAML plus the 1-based line of each path (mapping keys, list items)."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int:
        """Line of ``path`` or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_<>-]+")


def format_path(path: Path) -> str:
    """targets[3].snmp.version; keys that are not plain words are quoted: labels["circuit id"]."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return out or "(document)"


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, lines: dict[Path, int]) -> None:
        self.loader = loader
        self.lines = lines
        self.nodes = 0

    def value(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SourceError(node.start_mark.line + 1,
                              f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
        if depth > MAX_DEPTH:
            raise SourceError(node.start_mark.line + 1, f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self.lines[path + (i,)] = item.start_mark.line + 1
                out.append(self.value(item, path + (i,), depth + 1))
            return out
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise SourceError(node.start_mark.line + 1, _yaml_problem(exc)) from None

    def mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        explicit: set[Any] = set()
        merged: list[tuple[yaml.Node, Any]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append((value_node, key_node.start_mark.line + 1))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise SourceError(key_node.start_mark.line + 1, "mapping keys must be plain scalars")
            key = self.loader.construct_object(key_node)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise SourceError(key_node.start_mark.line + 1, "mapping keys must be plain scalars")
            line = key_node.start_mark.line + 1
            if key in explicit:
                first = self.lines.get(path + (key,), "?")
                raise SourceError(line, f"duplicate key (first at line {first})", path + (key,))
            explicit.add(key)
            self.lines[path + (key,)] = line
            out[key] = self.value(value_node, path + (key,), depth + 1)
        # YAML merge keys (<<: *defaults): explicit keys win, earlier merges win.
        for value_node, line in merged:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    raise SourceError(line, "merge key (<<) needs a mapping or a list of mappings")
                for key, val in self.mapping(src, path, depth + 1).items():
                    if key not in out:
                        out[key] = val
                        self.lines.setdefault(path + (key,), line)
        return out


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = str(getattr(exc, "problem", None) or exc)
    context = getattr(exc, "context", None)
    if "'\\t'" in problem:
        return "tab character where YAML expects spaces (indent with spaces only)"
    return f"{context}, {problem}" if context else problem


def _mark_line(exc: yaml.YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else 1


def parse(text: str | bytes, file: str) -> Document:
    """Parse one YAML document; raise SourceError with a line on any problem."""
    if len(text) > MAX_FILE_BYTES:
        raise SourceError(1, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = text[: exc.start].count(b"\n") + 1
            raise SourceError(line, "file is not valid UTF-8 text") from None
    if "\x00" in text:
        raise SourceError(text[: text.index("\x00")].count("\n") + 1, "file contains NUL bytes (binary file?)")
    lines: dict[Path, int] = {(): 1}
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader rejects non-printable characters right here
        root = loader.get_single_node()
        if root is None:
            return Document(file, None, lines)
        lines[()] = root.start_mark.line + 1
        data = _Walker(loader, lines).value(root, (), 0)
    except yaml.YAMLError as exc:
        raise SourceError(_mark_line(exc), _yaml_problem(exc)) from None
    except RecursionError:
        raise SourceError(1, f"nesting deeper than {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    return Document(file, data, lines)


def read(path: str) -> bytes:
    """A file's bytes, never more than MAX_FILE_BYTES + 1 (enough for parse() to refuse it)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SourceError(1, f"cannot read file: {exc.strerror}") from None


def load(path: str) -> Document:
    """Read and parse a file; I/O problems become SourceError too."""
    return parse(read(path), path)
