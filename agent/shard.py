"""Deterministic shards of the target list, for running several agents side by side.

``lifeline run --shard.index I --shard.count N`` probes only the targets whose
``crc32(name) mod N == I``. CRC-32 (not Python's ``hash()``, which is salted per
process) makes the split the same in every process, on every machine and in
every version, so any tool can reproduce it, and a target keeps its shard when
others are added or removed. The whole file is still loaded and validated by
every shard: an error anywhere refuses the start or the reload everywhere.

A shard also probes the anchors and the parents (``depends_on``, transitively) of the
targets it owns, wherever they hash: isolation and parent suppression are decided
inside one agent, from its own probes. Such a target's series then come from each
shard that probes it (different ``instance``); Alertmanager's grouping by site makes
one notification of its alerts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

from agent.config import Config


def shard_of(name: str, count: int) -> int:
    """The shard (0 .. count-1) that owns the target called ``name``."""
    return zlib.crc32(name.encode("utf-8")) % count


@dataclass(frozen=True, slots=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"--shard.count must be at least 1 (got {self.count})")
        if not 0 <= self.index < self.count:
            raise ValueError(f"--shard.index must be between 0 and {self.count - 1} (got {self.index})")

    def owns(self, name: str) -> bool:
        return self.count == 1 or shard_of(name, self.count) == self.index

    def select(self, config: Config) -> Config:
        """``config`` with only this shard's targets; tiers, digest and settings unchanged."""
        if self.count == 1:
            return config
        graph = config.graph()
        keep = {t.name for t in config.targets if self.owns(t.name)}
        todo = [*keep, *graph.anchors]
        keep.update(graph.anchors)
        while todo:
            for parent in graph.parents.get(todo.pop(), ()):
                if parent not in keep:
                    keep.add(parent)
                    todo.append(parent)
        return replace(config, targets=tuple(t for t in config.targets if t.name in keep))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
