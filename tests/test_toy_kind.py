"""A probe kind written in a test proves the seam: the kind alone, plus one registry entry, is enough.

``FileKind`` checks that a local heartbeat file exists and is fresh. It has a
target block with its own validation, a tier key, per-target state, its own
metric family and a failure reason of its own, and nothing outside this file
knows about it except the registry mapping handed to the agent.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import pytest

from agent import config as config_mod
from agent.app import Agent
from common.errors import ConfigInvalid
from common.textfmt import Family
from probes.base import Probe, ProbeKind, ProbeResult
from probes.registry import KINDS
from tests.helpers import free_port, http_get, http_post, samples, value


# --- the toy kind: everything a kind is, in a few dozen lines -------------------------------

@dataclass(frozen=True)
class FileSettings:
    path: str


@dataclass(slots=True)
class FileResult(ProbeResult):
    size: int = 0


class FileProbe(Probe):
    async def run(self, target, tier, state):
        try:
            st = os.stat(target.setting("file").path)
        except FileNotFoundError:
            return FileResult(ok=False, reason="missing")
        age_limit = tier.parts["file"]
        if time.time() - st.st_mtime > age_limit:
            return FileResult(ok=False, reason="stale", size=st.st_size)
        return FileResult(ok=True, size=st.st_size)


class FileKind(ProbeKind):
    name = "file"
    settings_key = "file"
    tier_keys = {"file_max_age": lambda v, p, x: v.duration(p, x, lo=1)}
    families = (Family("lifeline_file_size_bytes", "gauge", "Size of the heartbeat file."),)

    def default_tier(self, tier):
        return 3600.0

    def parse_tier(self, v, path, checked, fields, tier, base):
        return checked.get("file_max_age", base)

    def parse_settings(self, v, raw, path, profiles, tier, address):
        f = v.mapping(path, raw, ("path",), required=("path",))
        text = v.string(path + ("path",), f["path"]) if f and "path" in f else None
        return FileSettings(text) if text else None

    def open(self, ctx):
        return FileProbe()

    def new_state(self, target, old=None, tier=None):
        return old if old is not None else {"size": None}

    def record(self, state, result):
        state["size"] = getattr(result, "size", None) if result.ok else None

    def fragments(self, state, key):
        size = state["size"]
        return (b"" if size is None else b"lifeline_file_size_bytes{%s} %d\n" % (key, size),)


TOY_KINDS = {**KINDS, "file": FileKind()}  # the one registry line


# --- what it shows ------------------------------------------------------------------------

def _write(tmp_path, text):
    path = tmp_path / "lifeline.yaml"
    path.write_text(text)
    return str(path)


def test_the_kind_validates_its_own_block_and_tier_key_with_lines(tmp_path):
    path = _write(tmp_path, "tiers:\n  P0: {file_max_age: 0s}\n"
                            "targets:\n  - {name: hb, address: 127.0.0.1, tier: P0, probes: [file],\n"
                            "     file: {pat: /tmp/x}}\n")
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(path, TOY_KINDS)
    messages = [str(e).replace(path, "FILE") for e in exc.value.errors]
    assert messages[0].startswith("FILE:2: tiers.P0.file_max_age: ")
    assert "FILE:5: targets[0].file.pat: unknown key (did you mean 'path'?)" in messages
    assert any(m.startswith("FILE:5: targets[0].file: ") and "path" in m for m in messages), messages
    # Without the registry entry the same file names neither the key nor the probe.
    with pytest.raises(ConfigInvalid) as exc:
        config_mod.load(path, KINDS)
    text = "\n".join(str(e) for e in exc.value.errors)
    assert "tiers.P0.file_max_age: unknown key" in text and "unknown probe 'file'" in text


def test_the_agent_runs_reloads_and_exports_the_toy_kind(tmp_path):
    beat = tmp_path / "heartbeat"
    beat.write_text("alive")
    text = ("tiers:\n  P0: {interval: 200ms, timeout: 100ms, packets: 1, file_max_age: 1h}\n"
            f"targets:\n  - {{name: hb, address: 127.0.0.1, tier: P0, probes: [file, icmp], file: {{path: {beat}}}}}\n")
    path = _write(tmp_path, text)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def scrape_until(check, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = await asyncio.to_thread(http_get, url + "/metrics")
            except OSError:  # not listening yet
                status, body = 0, b""
            if status == 200 and check(samples(body.decode())):
                return samples(body.decode())
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    async def main():
        agent = Agent(path, config_mod.load(path, TOY_KINDS), f"127.0.0.1:{port}", kinds=TOY_KINDS)
        runner = asyncio.create_task(agent.run())
        try:
            m = await scrape_until(lambda m: value(m, "lifeline_file_size_bytes", target="hb") == 5, "file size")
            assert value(m, "lifeline_probe_success", target="hb", probe="file") == 1
            assert value(m, "lifeline_target_up", target="hb") == 1
            assert value(m, "lifeline_tier_probe_interval_seconds", tier="P0", probe="file") == 0.2
            beat.unlink()
            m = await scrape_until(lambda m: value(m, "lifeline_probe_failures_total", target="hb", probe="file",
                                                   reason="missing"), "reason missing")
            assert value(m, "lifeline_file_size_bytes", target="hb") is None
            # Every probe must succeed for `up`: ICMP still answers, the file kind does not.
            assert value(m, "lifeline_target_up", target="hb") == 0
            assert value(m, "lifeline_probe_success", target="hb", probe="icmp") == 1
            # A reload that adds a target keeps hb's counters.
            missing_before = value(m, "lifeline_probe_failures_total", target="hb", probe="file", reason="missing")
            with open(path, "a") as fh:
                fh.write(f"  - {{name: hb2, address: 127.0.0.1, tier: P0, probes: [file], file: {{path: {path}}}}}\n")
            status, body = await asyncio.to_thread(http_post, url + "/-/reload")
            assert status == 200, body
            m = await scrape_until(lambda m: value(m, "lifeline_file_size_bytes", target="hb2"), "hb2 probed")
            assert value(m, "lifeline_target_up", target="hb2") == 1
            assert value(m, "lifeline_probe_failures_total", target="hb", probe="file",
                         reason="missing") >= missing_before
        finally:
            agent.stop()
            await runner

    asyncio.run(main())
