"""Least privilege: non-root with only CAP_NET_RAW, non-root with unprivileged ICMP, and neither."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.helpers import (ROOT, AgentProcess, free_port, ping_namespace, require_root, require_tool, value,
                           wait_for)

CONFIG = """
tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 2, packet_interval: 20ms}
targets:
  - {name: lo, address: 127.0.0.1, tier: P0}
  - {name: lo6, address: "::1", tier: P0}
"""
NOBODY = "65534"


def _hidden_ancestor(path: str) -> str | None:
    """The first directory on the way to ``path`` that other users cannot enter, if any."""
    parts = os.path.realpath(path).split("/")
    for i in range(2, len(parts)):
        d = "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def _as_nobody(caps: str | None) -> str:
    """Shell that (in a private mount namespace) makes the interpreter reachable, then drops to nobody."""
    setpriv = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups"
    if caps:
        setpriv += f" --inh-caps=+{caps} --ambient-caps=+{caps}"
    expose = ""
    hidden = _hidden_ancestor(sys.executable)
    if hidden:
        # e.g. a pyenv Python under /root (mode 700): show only that tree, read-only, to nobody.
        inner = os.path.realpath(sys.executable)[len(hidden) + 1:].split("/")[0]
        expose = (f'd=$(mktemp -d) && mount --bind {hidden}/{inner} "$d" && '
                  f"mount -t tmpfs -o mode=755 tmpfs {hidden} && mkdir {hidden}/{inner} && "
                  f'mount --bind "$d" {hidden}/{inner} && ')
    return f'{expose}exec {setpriv} "$@"'


@pytest.fixture
def shared_dir():
    d = tempfile.mkdtemp(prefix="lifeline-priv-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _write_config(d: str) -> str:
    path = os.path.join(d, "lifeline.yaml")
    with open(path, "w") as fh:
        fh.write(CONFIG)
    os.chmod(path, 0o644)
    return path


def test_non_root_with_only_cap_net_raw(shared_dir):
    require_root()
    require_tool("setpriv", "util-linux")
    wrapper = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _as_nobody("net_raw"), "sh"]
    agent = AgentProcess(_write_config(shared_dir), wrapper=wrapper)
    try:
        wait_for(lambda: value(agent.metrics(), "lifeline_target_up", target="lo") == 1
                 and value(agent.metrics(), "lifeline_target_up", target="lo6") == 1, 6, "probing as nobody")
        assert '"ipv4": "raw"' in agent.log()
        uid = subprocess.run(["ps", "-o", "uid=", "-p", str(_agent_pid(agent))], capture_output=True,
                             text=True).stdout.strip()
        assert uid == NOBODY
    finally:
        agent.stop()


def _agent_pid(agent: AgentProcess) -> int:
    # The wrapper exec()s into the agent, so the Popen pid is the agent's.
    return agent.proc.pid


def test_unprivileged_datagram_icmp(shared_dir):
    """No capabilities at all; ICMP works through datagram sockets where ping_group_range allows it."""
    require_root()
    with ping_namespace("llpriv") as nsexec:
        wrapper = [*nsexec, "sh", "-c", _as_nobody(None), "sh"]

        def ns_get(path: str) -> str:
            proc = subprocess.run([*nsexec, sys.executable, "-c",
                                   f"import urllib.request;print(urllib.request.urlopen('{path}',timeout=2).read().decode())"],
                                  capture_output=True, text=True, timeout=10)
            return proc.stdout if proc.returncode == 0 else ""

        agent = AgentProcess(_write_config(shared_dir), wrapper=wrapper,
                             ready_check=lambda a: "Ready" in ns_get(a.url + "/-/ready"))
        try:
            wait_for(lambda: value(ns_get(agent.url + "/metrics"), "lifeline_target_up", target="lo") == 1
                     and value(ns_get(agent.url + "/metrics"), "lifeline_target_up", target="lo6") == 1, 8,
                     "probing through datagram ICMP sockets")
            assert '"ipv4": "dgram"' in agent.log() and '"ipv6": "dgram"' in agent.log()
            text = ns_get(agent.url + "/metrics")
            assert value(text, "lifeline_icmp_loss_ratio", target="lo") == 0
        finally:
            agent.stop()


def test_neither_privilege_gives_a_clear_message(shared_dir):
    require_root()
    # The host's own ping_group_range may allow everyone; a fresh namespace starts at "1 0" (nobody).
    ns = f"llnopriv-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        cmd = ["ip", "netns", "exec", ns, "sh", "-c", _as_nobody(None), "sh", sys.executable, "-m", "agent.cli",
               "run", "--config.file", _write_config(shared_dir), "--web.listen-address", f"127.0.0.1:{free_port()}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode == 1, proc.stderr
    assert "cannot open an ICMP socket" in proc.stderr
    assert "CAP_NET_RAW" in proc.stderr and "ping_group_range" in proc.stderr
    assert "Traceback" not in proc.stderr
