"""The reload's parser process (agent/child.py): results, errors and a child that dies come back."""

from __future__ import annotations

import os

import pytest

from agent.child import ChildDied, run_in_child
from common.errors import ConfigInvalid
from common.validate import ConfigError


def test_the_childs_bytes_come_back_and_it_is_reaped():
    def work() -> bytes:
        return b"pid %d" % os.getpid()

    out = run_in_child(work)
    pid = int(out.split()[1])
    assert pid != os.getpid()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left per reload


def test_a_config_error_keeps_its_file_and_line():
    def invalid() -> bytes:
        raise ConfigInvalid([ConfigError("/etc/lifeline/a.yaml", 12, "targets[3].address", "not an IP address")])

    with pytest.raises(ConfigInvalid) as exc:
        run_in_child(invalid)
    [err] = exc.value.errors
    assert (err.file, err.line, err.path) == ("/etc/lifeline/a.yaml", 12, "targets[3].address")
    assert "not an IP address" in str(exc.value)


def test_an_exception_that_does_not_pickle_still_says_what_happened():
    class Local(Exception):  # defined in a function: pickle cannot find it by name
        pass

    def fails() -> bytes:
        raise Local("parser bug")

    with pytest.raises(RuntimeError, match="parser bug"):
        run_in_child(fails)


def test_a_child_that_dies_is_an_error_not_an_empty_configuration():
    def dies() -> bytes:
        os._exit(3)

    with pytest.raises(ChildDied, match="without a result"):
        run_in_child(dies)
