"""Shards: agents 0..k-1 together probe every target exactly once, and the split is stable."""

from __future__ import annotations

from collections import Counter

import pytest

from agent import cli
from agent.config import DEFAULT_TIERS, Config
from common.model import Target
from agent.shard import Shard, shard_of
from tests.helpers import samples, wait_for


def _targets(n: int) -> tuple[Target, ...]:
    return tuple(Target(name=f"cam-{i:05d}", address="127.0.0.1", tier="P3", category="c", site="s",
                        labels=(), probes=("icmp",)) for i in range(n))


def _config(targets) -> Config:
    return Config(tiers=dict(DEFAULT_TIERS), targets=tuple(targets), digest="d1")


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 16])
def test_shards_cover_every_target_exactly_once(count):
    config = _config(_targets(2000))
    seen = Counter(t.name for i in range(count) for t in Shard(i, count).select(config).targets)
    assert set(seen) == {t.name for t in config.targets}
    assert set(seen.values()) == {1}


@pytest.mark.parametrize("count", [2, 3, 4, 7])
def test_shards_are_balanced(count):
    sizes = [len(Shard(i, count).select(_config(_targets(7000))).targets) for i in range(count)]
    assert max(sizes) < 1.1 * 7000 / count and min(sizes) > 0.9 * 7000 / count, sizes


def test_split_is_crc32_of_the_name_so_any_process_or_tool_agrees():
    # zlib.crc32(b"putuo-hospital-fever-clinic") == 3491466654; Python's hash() would differ per process.
    assert shard_of("putuo-hospital-fever-clinic", 4) == 3491466654 % 4 == 2
    assert [shard_of("checkpoint-cam-0001", k) for k in (1, 2, 3, 4)] == [0, 1, 0, 3]


def test_a_target_keeps_its_shard_when_others_come_and_go():
    before = Shard(1, 3).select(_config(_targets(1000)))
    after = Shard(1, 3).select(_config(_targets(1000)[::2] + _targets(1500)[1000:]))
    kept = {t.name for t in _targets(1000)[::2]}
    assert {t.name for t in before.targets} & kept == {t.name for t in after.targets} & kept


def test_selection_keeps_tiers_settings_and_digest():
    config = _config(_targets(10))
    part = Shard(0, 2).select(config)
    assert part.tiers == config.tiers and part.digest == config.digest and part.scheduler == config.scheduler
    assert Shard().select(config) is config


@pytest.mark.parametrize("index,count,message", [
    (2, 2, "--shard.index must be between 0 and 1 (got 2)"),
    (-1, 3, "--shard.index must be between 0 and 2 (got -1)"),
    (0, 0, "--shard.count must be at least 1 (got 0)"),
], ids=["index-too-high", "negative-index", "zero-count"])
def test_bad_shard_flags_are_refused(index, count, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--config.file", str(tmp_path / "x.yaml"), "--shard.index", str(index),
                  "--shard.count", str(count)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_every_shard_still_validates_the_whole_file(tmp_path, capsys):
    path = tmp_path / "lifeline.yaml"
    path.write_text("targets:\n  - {name: a, address: 127.0.0.1}\n  - {name: b, address: 127.0.0.2, tier: P9}\n")
    owner_of_a = shard_of("a", 2)  # the bad target b may live in the other shard: still refused
    assert cli.main(["run", "--config.file", str(path), "--shard.index", str(owner_of_a), "--shard.count", "2",
                     "--web.listen-address", "127.0.0.1:0"]) == 1
    assert "targets[1].tier: unknown tier 'P9'" in capsys.readouterr().err


FAST = """tiers:
  P0: {interval: 1s, timeout: 300ms, packets: 1}
targets:
"""


@pytest.mark.usefixtures("needs_root")
def test_agents_with_shards_0_to_k_minus_1_probe_every_target_once(agent_factory):
    """Three real agents on one file: their /metrics together hold each target exactly once, each probed."""
    names = [f"clinic-{i:02d}" for i in range(30)]
    text = FAST + "".join(f"  - {{name: {n}, address: 127.6.0.{i + 1}, tier: P0}}\n" for i, n in enumerate(names))
    agents = [agent_factory(text, name=f"shard{i}.yaml", extra_args=["--shard.index", str(i), "--shard.count", "3"])
              for i in range(3)]
    owned: list[set[str]] = []
    for i, agent in enumerate(agents):
        def probed(agent=agent):
            s = samples(agent.metrics())
            info = {dict(ls)["target"] for (n, ls), _ in s.items() if n == "lifeline_target_info"}
            sent = {dict(ls)["target"] for (n, ls), v in s.items() if n == "lifeline_icmp_requests_total" and v > 0}
            return info if info and info == sent else None
        owned.append(wait_for(probed, 10, f"shard {i} to probe all of its targets"))
    for i, names_here in enumerate(owned):
        assert names_here == {n for n in names if shard_of(n, 3) == i}
    everything = Counter(n for names_here in owned for n in names_here)
    assert set(everything) == set(names) and set(everything.values()) == {1}
