"""Fixtures for real components: the agent as a process, test hosts in a namespace."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.testnet import TestNet, available
from tests.helpers import AgentProcess, require_root


@pytest.fixture(scope="session")
def needs_root() -> None:
    """Fail loudly (not skip) when not root: raw ICMP and namespaces are what these tests test."""
    require_root()


@pytest.fixture
def agent_factory(tmp_path) -> Iterator:
    """Start ``lifeline run`` on a YAML text; every agent started is stopped at teardown."""
    started: list[AgentProcess] = []

    def start(config_text: str, name: str = "lifeline.yaml", **kwargs) -> AgentProcess:
        path = tmp_path / name
        path.write_text(config_text)
        agent = AgentProcess(str(path), **kwargs)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture(scope="session")
def testnet() -> Iterator[TestNet]:
    """A namespace with 6 hosts in 198.18.<n>.0/24; tests set loss per host and reset it after."""
    problem = available()
    if problem:
        raise AssertionError(f"network-namespace tests: {problem}")
    octet = 10 + os.getpid() % 200  # parallel runs on one machine do not collide
    net = TestNet(f"llt-{os.getpid()}", octet, f"llt{os.getpid() % 100000}")
    net.create(host_count=6)
    try:
        yield net
    finally:
        net.destroy()
