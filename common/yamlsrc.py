"""Load YAML into plain Python values while remembering the line of every key.

PyYAML's constructors forget positions and silently accept duplicate keys, and
expanding aliases naively lets a few hundred bytes ("billion laughs") become
gigabytes. We build the values from the parser's events ourselves so that every
error can name a file and a line, duplicate keys are rejected, and the size of
the expanded document is bounded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

try:
    _FAST: Any = yaml.CSafeLoader  # PyYAML built with libyaml (Debian's and PyPI's wheels are)
except AttributeError:
    _FAST = None

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


class _Events:
    """The parser's events, aliases expanded by replaying the events their anchor recorded.

    Values are built from the event stream rather than from PyYAML's composed node graph
    (~200k nodes with two marks each for 10,000 targets): loading that config took the
    process from 34 MB to a 152 MB peak and left it at 133 MB after (a fragmented heap);
    from events, with libyaml, 41 to 70 MB and 68 MB after, in 0.6 s instead of 4.7 s.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.anchors: dict[str, list[yaml.Event]] = {}  # anchor -> the events of its node
        self.recording: list[list[Any]] = []  # [anchor, events, depth] of anchored nodes still open
        self.replays: list[Iterator[yaml.Event]] = []
        self.peeked: yaml.Event | None = None
        self.root: yaml.Mark | None = None  # where the document's root starts, once known

    def peek(self) -> yaml.Event:
        if self.peeked is None:
            self.peeked = self._next()
        return self.peeked

    def next(self) -> yaml.Event:
        event = self.peek()
        self.peeked = None
        return event

    def _next(self) -> yaml.Event:
        while True:
            event = None
            while self.replays and event is None:
                event = next(self.replays[-1], None)
                if event is None:
                    self.replays.pop()
            if event is None:
                event = self._raw()
            if not isinstance(event, yaml.AliasEvent):
                return event
            self.replays.append(iter(self._anchored(event)))

    def _raw(self) -> yaml.Event:
        event = self.loader.get_event()
        opens = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        closes = isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent))
        for rec in self.recording:
            rec[1].append(event)
            rec[2] += opens - closes
        if self.recording and self.recording[-1][2] == 0:  # the innermost anchored node just closed
            name, events, _ = self.recording.pop()
            self.anchors[name] = events
        anchor = None if isinstance(event, yaml.AliasEvent) else getattr(event, "anchor", None)
        if anchor is not None:
            first = self.anchors.get(anchor) or next((r[1] for r in self.recording if r[0] == anchor), None)
            if first is not None:
                raise yaml.composer.ComposerError(f"found duplicate anchor {anchor!r}; first occurrence",
                                                  first[0].start_mark, "second occurrence", event.start_mark)
            if opens:
                self.recording.append([anchor, [event], 1])
            else:
                self.anchors[anchor] = [event]
        return event

    def _anchored(self, alias: yaml.AliasEvent) -> list[yaml.Event]:
        events = self.anchors.get(alias.anchor)
        if events is not None:
            return events
        if any(r[0] == alias.anchor for r in self.recording):
            raise SourceError(alias.start_mark.line + 1,
                              f"alias *{alias.anchor} is inside the node it names (recursive alias)")
        raise yaml.composer.ComposerError(None, None, f"found undefined alias {alias.anchor!r}",
                                          alias.start_mark)

    def drain(self) -> None:
        """Read the rest of the stream, checking aliases without expanding them, so that a later
        syntax or anchor error is the one reported, as when the whole file was composed first."""
        self.replays.clear()
        while not isinstance(self.peeked, yaml.StreamEndEvent):
            self.peeked = self._raw()
            if isinstance(self.peeked, yaml.AliasEvent) and self.peeked.anchor not in self.anchors \
                    and not any(r[0] == self.peeked.anchor for r in self.recording):
                self._anchored(self.peeked)  # an undefined alias
            elif isinstance(self.peeked, yaml.DocumentStartEvent) and self.root is not None:
                self.second_document(self.peeked)

    def second_document(self, event: yaml.Event) -> None:
        raise yaml.composer.ComposerError("expected a single document in the stream", self.root,
                                          "but found another document", event.start_mark)


_STR_TAG = "tag:yaml.org,2002:str"
# Text libyaml accepts where PyYAML refuses it: tabs in plain scalars, "#" right after a block
# scalar indicator (`|#`); non-printable characters are looked for separately.
_LIBYAML_DIFFERS = re.compile(r"\t|[|>][-+0-9]*#")
_END = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


class _Differs(Exception):
    """libyaml reads this file differently from PyYAML's own parser: let the latter read it."""


class _Builder:
    """Plain values from events, the line of every key and list item noted on the way."""

    def __init__(self, events: _Events, loader: Any, lines: dict[Path, int]) -> None:
        self.events = events
        self.loader = loader
        self.lines = lines
        self.nodes = 0
        self.fast = isinstance(loader, _FAST) if _FAST is not None else False

    def value(self, path: Path, depth: int) -> Any:
        event = self.events.next()
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SourceError(event.start_mark.line + 1,
                              f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
        if depth > MAX_DEPTH:
            raise SourceError(event.start_mark.line + 1, f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(event, yaml.MappingStartEvent):
            return self.mapping(path, depth)
        if isinstance(event, yaml.SequenceStartEvent):
            out = []
            while not isinstance(self.events.peek(), yaml.SequenceEndEvent):
                i = len(out)
                self.lines[path + (i,)] = self.events.peek().start_mark.line + 1
                out.append(self.value(path + (i,), depth + 1))
            self.events.next()
            return out
        return self.scalar(event)

    def skip(self) -> None:
        """Read past one node without building it."""
        depth = 0
        while True:
            event = self.events.next()
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise SourceError(event.start_mark.line + 1,
                                  f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
            depth += isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)) - isinstance(event, _END)
            if depth <= 0:
                return

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag == "!" and self.fast:
            raise _Differs  # libyaml calls a lone "!" non-plain (a string), PyYAML plain (so "" is null)
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR_TAG:  # what SafeConstructor makes of it, without the detour
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            if self.fast:  # libyaml accepts some tags PyYAML refuses (`!~!`): let PyYAML give the message
                raise _Differs from None
            raise SourceError(event.start_mark.line + 1, _yaml_problem(exc)) from None
        except (ValueError, LookupError, AttributeError, TypeError):
            # PyYAML's constructors raise these for explicit tags on bad text (`!!int`, `!!bool x`).
            raise SourceError(event.start_mark.line + 1,
                              f"{event.value!r} is not a valid {tag.rsplit(':', 1)[-1]}") from None
        finally:
            self.loader.constructed_objects.pop(node, None)  # the constructor's cache would keep every node

    def mapping(self, path: Path, depth: int) -> dict[Any, Any]:
        events = self.events
        out: dict[Any, Any] = {}
        explicit: set[Any] = set()
        merged: list[tuple[dict[Any, Any], dict[Path, int]] | int] = []  # an int: the line of a bad <<
        while not isinstance(events.peek(), yaml.MappingEndEvent):
            key_event = events.next()
            line = key_event.start_mark.line + 1
            if not isinstance(key_event, yaml.ScalarEvent):
                raise SourceError(line, "mapping keys must be plain scalars")
            tag = key_event.tag
            if (tag is None or tag == "!") and \
                    self.loader.resolve(yaml.ScalarNode, key_event.value, key_event.implicit) == _MERGE_TAG:
                merged += self.merge_sources(path, depth, line)
                continue
            key = self.scalar(key_event)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise SourceError(line, "mapping keys must be plain scalars")
            if key in explicit:
                first = self.lines.get(path + (key,), "?")
                raise SourceError(line, f"duplicate key (first at line {first})", path + (key,))
            explicit.add(key)
            self.lines[path + (key,)] = line
            out[key] = self.value(path + (key,), depth + 1)
        events.next()
        # YAML merge keys (<<: *defaults): explicit keys win, earlier merges win; a merged key
        # keeps the lines it has in the mapping it came from.
        for item in merged:
            if isinstance(item, int):
                raise SourceError(item, "merge key (<<) needs a mapping or a list of mappings")
            source, lines = item
            won = {key for key in source if key not in out}
            for key in won:
                out[key] = source[key]
            self.lines.update((p, n) for p, n in lines.items() if p[len(path)] in won)
        return out

    def merge_sources(self, path: Path, depth: int, line: int) -> list[tuple[dict[Any, Any], dict[Path, int]] | int]:
        """The mapping(s) after a ``<<`` key, each with the lines of its keys (as if under ``path``);
        ``line`` in place of a value that is not a mapping (the error waits, as other keys' come first)."""
        events = self.events
        many = isinstance(events.peek(), yaml.SequenceStartEvent)
        if many:
            events.next()
        out: list[tuple[dict[Any, Any], dict[Path, int]] | int] = []
        while not (many and isinstance(events.peek(), yaml.SequenceEndEvent)):
            outer, self.lines = self.lines, {}
            try:
                if isinstance(events.peek(), yaml.MappingStartEvent):
                    events.next()
                    out.append((self.mapping(path, depth + 1), self.lines))
                else:
                    self.skip()
                    out.append(line)
            finally:
                self.lines = outer
            if not many:
                return out
        events.next()
        return out


def _build(loader: Any, lines: dict[Path, int]) -> Any:
    """The single document of ``loader``'s stream as plain values (None if there is none)."""
    events = _Events(loader)
    try:
        events.next()  # stream start
        if isinstance(events.peek(), yaml.StreamEndEvent):
            return None
        events.next()  # document start
        events.root = events.peek().start_mark
        lines[()] = events.root.line + 1
        builder = _Builder(events, loader, lines)
        data = builder.value((), 0)
        if data is None and builder.fast:
            raise _Differs  # an empty document: libyaml puts its (empty) root a line further down
        events.next()  # document end
        if not isinstance(events.peek(), yaml.StreamEndEvent):
            events.second_document(events.next())
        return data
    except SourceError:
        events.drain()
        raise


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
    try:
        # libyaml's parser when PyYAML has it: a 10,000-target file in ~1 s rather than ~3 s.
        # Its messages differ from PyYAML's own, so a file it refuses is read again by the pure-
        # Python parser for the message. What the two judge differently (found by differential
        # fuzzing, tests/test_yamlsrc.py) goes there directly.
        if _FAST is not None and not _LIBYAML_DIFFERS.search(text) \
                and not yaml.reader.Reader.NON_PRINTABLE.search(text):
            try:
                return _document(_FAST, text, file)
            except (yaml.YAMLError, _Differs):
                pass
        return _document(yaml.SafeLoader, text, file)
    except yaml.YAMLError as exc:
        raise SourceError(_mark_line(exc), _yaml_problem(exc)) from None
    except RecursionError:
        raise SourceError(1, f"nesting deeper than {MAX_DEPTH} levels") from None


def _document(loader_class: Any, text: str, file: str) -> Document:
    lines: dict[Path, int] = {(): 1}
    loader = loader_class(text)  # the pure-Python reader rejects non-printable characters right here
    try:
        return Document(file, _build(loader, lines), lines)
    finally:
        loader.dispose()


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
