"""Property-based hostile input to the config loader: a valid config or a clean error, always."""

from __future__ import annotations

import re
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import config as config_mod
from common.errors import ConfigInvalid

KEYS = ["tiers", "targets", "targets_files", "scheduler", "reload", "dns", "snmp_profiles", "name", "address",
        "tier", "category", "site", "labels", "probes", "snmp", "P0", "P1", "interval", "timeout", "packets",
        "version", "community", "icmp", "<<", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["5s", "250ms", "P0", "icmp", "snmp", "127.0.0.1",
                                                           "::1", "2c", "-1s", "1e9h"]))
trees = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=5), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), kids, max_size=6)),
    max_leaves=40)
ERROR_RE = re.compile(r"^.+:\d+: \S.*: .+", re.S)


def _check(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        config_mod.load(str(path))
    except ConfigInvalid as exc:
        assert exc.errors
        for err in exc.errors:
            assert ERROR_RE.match(str(err)), str(err)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_any_structure_gives_config_or_clean_error(tmp_path, tree):
    _check(tmp_path, yaml.safe_dump(tree, allow_unicode=True).encode())


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=string.printable + "\t\x00é中&*!|>-[]{}:,#'\"", max_size=300))
def test_any_text_gives_config_or_clean_error(tmp_path, text):
    _check(tmp_path, text.encode())


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_any_bytes_give_config_or_clean_error(tmp_path, data):
    _check(tmp_path, data)
