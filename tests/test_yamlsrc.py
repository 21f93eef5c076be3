"""common/yamlsrc.py: libyaml and PyYAML's own parser give the same values, lines and errors."""

from __future__ import annotations

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import yamlsrc
from common.yamlsrc import SourceError, parse


def _outcome(text: str) -> tuple:
    try:
        doc = parse(text, "f.yaml")
    except SourceError as exc:
        return ("error", exc.line, exc.message, exc.path)
    return ("ok", repr(doc.data), sorted(doc.lines.items(), key=repr))


def _both(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple, tuple]:
    fast = _outcome(text)
    with monkeypatch.context() as m:
        m.setattr(yamlsrc, "_FAST", None)
        slow = _outcome(text)
    return fast, slow


def test_libyaml_is_used():
    # Without it a 10,000-target file takes seconds to load; Debian's and PyPI's PyYAML have it.
    assert yamlsrc._FAST is not None


_PIECES = st.sampled_from(["a: ", "b", "&x ", "*x", "&y ", "*y", "<<: ", "- ", "\n", "  ", "{", "}", "[", "]",
                           ", ", "1", "!!str ", "!!int ", "? ", ": ", "---\n", "...\n", "!foo ", "'q'", '"\\t"',
                           "|\n  z\n", "#c", "\t", "|#", "!", "name: x", "site: ", "null", "~"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_PIECES, max_size=30))
def test_fast_and_pure_parsers_agree_on_yaml_pieces(monkeypatch, parts):
    fast, slow = _both("".join(parts), monkeypatch)
    assert fast == slow


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=string.printable + "é中&*!|>-[]{}:,#'\"<", max_size=200))
def test_fast_and_pure_parsers_agree_on_any_text(monkeypatch, text):
    fast, slow = _both(text, monkeypatch)
    assert fast == slow


@pytest.mark.parametrize("text, line, message", [
    ("a: 1\nb: !!int\n", 2, "'' is not a valid int"),
    ("a: !!bool maybe\n", 1, "'maybe' is not a valid bool"),
    ("a: !!timestamp x\n", 1, "'x' is not a valid timestamp"),
], ids=["empty-int", "bad-bool", "bad-timestamp"])
def test_explicit_tags_on_bad_text_are_clean_errors(text, line, message):
    # PyYAML's constructors raise IndexError, KeyError or AttributeError here, not a YAML error.
    with pytest.raises(SourceError) as exc:
        parse(text, "f.yaml")
    assert (exc.value.line, exc.value.message) == (line, message)


def test_merged_keys_keep_their_own_lines():
    doc = parse("base: &b\n  tier: P0\n  site: putuo\nt:\n  <<: *b\n  name: x\n  site: dinghai\n", "f.yaml")
    assert doc.data["t"] == {"name": "x", "site": "dinghai", "tier": "P0"}
    # An explicit key is where it is written; a merged one where its anchor's mapping has it.
    assert doc.line(("t", "site")) == 7 and doc.line(("t", "name")) == 6 and doc.line(("t", "tier")) == 2


def test_aliases_expand_to_copies_with_the_anchors_lines():
    doc = parse("a: &l [1, {k: v}]\nb: *l\n", "f.yaml")
    assert doc.data == {"a": [1, {"k": "v"}], "b": [1, {"k": "v"}]}
    assert doc.data["a"][1] is not doc.data["b"][1]
    assert doc.line(("b", 1, "k")) == 1


@pytest.mark.parametrize("text, line, message", [
    ("a: &x [1, *x]\n", 1, "alias *x is inside the node it names (recursive alias)"),
    ("a: *nope\n", 1, "found undefined alias 'nope'"),
    ("a: &x 1\nb: &x 2\n", 2, "found duplicate anchor 'x'; first occurrence, second occurrence"),
    ("a: 1\n---\nb: 2\n", 2, "expected a single document in the stream, but found another document"),
    ("a: 1\na: 2\n", 2, "duplicate key (first at line 1)"),
    ("a: {<<: 3, b: 1}\n", 1, "merge key (<<) needs a mapping or a list of mappings"),
], ids=["recursive-alias", "undefined-alias", "duplicate-anchor", "two-documents", "duplicate-key", "bad-merge"])
def test_structure_errors(text, line, message):
    with pytest.raises(SourceError) as exc:
        parse(text, "f.yaml")
    assert (exc.value.line, exc.value.message) == (line, message)


def test_a_syntax_error_further_down_wins_over_a_duplicate_key():
    # As when the whole file was composed first: the parser's complaint is the one to fix first.
    with pytest.raises(SourceError) as exc:
        parse("a: 1\na: 2\nb: [\n", "f.yaml")
    assert exc.value.line == 4 and "flow node" in exc.value.message


def test_big_file_parses_like_the_pure_parser(monkeypatch):
    text = "targets:\n" + "".join(f"  - {{name: t{i}, address: 127.0.0.{i % 250 + 1}, labels: {{c: '{i}'}}}}\n"
                                  for i in range(2000))
    fast, slow = _both(text, monkeypatch)
    assert fast == slow and fast[0] == "ok"
    assert yaml.safe_load(text) == parse(text, "f.yaml").data
