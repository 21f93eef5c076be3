"""Small builders for unit tests of the core: tiers, targets, a store and a scheduler driven by configs.

The agent applies a ``Plan`` computed from the previous configuration; these
wrappers keep that previous configuration so a test can just say "now the
configuration is this".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.config import DEFAULT_TIERS, Config
from agent.exposition import AgentStatus, Exposition, Renderer
from agent.reload import Plan
from agent.scheduler import Scheduler
from agent.store import MetricsStore
from common.model import Target, Tier
from probes.base import ProbeResult
from probes.registry import KINDS

# Old flat tier key -> (kind, field of that kind's tier part).
_PART_KEYS = {
    "packets": ("icmp", "packets"), "packet_interval": ("icmp", "packet_interval"),
    "loss_warn": ("icmp", "loss_warn"), "loss_crit": ("icmp", "loss_crit"),
    "rtt_warn": ("icmp", "rtt_warn"), "rtt_crit": ("icmp", "rtt_crit"), "rtt_histogram": ("icmp", "rtt_histogram"),
    "snmp_interval": ("snmp", "interval"), "snmp_timeout": ("snmp", "timeout"), "snmp_retries": ("snmp", "retries"),
}


def retier(tier: Tier, **changes: Any) -> Tier:
    """``tier`` with core fields and kinds' fields changed, by their YAML key names."""
    core = {k: v for k, v in changes.items() if k not in _PART_KEYS}
    parts = dict(tier.parts)
    for key, value in changes.items():
        if key in _PART_KEYS:
            kind, attr = _PART_KEYS[key]
            parts[kind] = replace(parts[kind], **{attr: value})
    return replace(tier, **core, parts=parts)


def tiers(**changes: Any) -> dict[str, Tier]:
    return {name: retier(t, **changes) for name, t in DEFAULT_TIERS.items()}


def target(name: str, tier: str = "P0", **kw: Any) -> Target:
    base = dict(name=name, address="127.0.0.1", tier=tier, category="c", site="s", labels=(), probes=("icmp",))
    base.update(kw)
    return Target(**base)


def config(*targets: Target, tier_map: dict[str, Tier] | None = None, **kw: Any) -> Config:
    return Config(tiers=dict(tier_map or DEFAULT_TIERS), targets=tuple(targets), **kw)


class StoreKit:
    """A MetricsStore fed by configurations and by results addressed by target."""

    def __init__(self, *targets: Target, clock: Any = None) -> None:
        self.store = MetricsStore(KINDS, **({"clock": clock} if clock else {}))
        self.status = AgentStatus()
        self.renderer = Renderer(self.store, KINDS, self.status)
        self._config: Config | None = None
        if targets:
            self.apply(config(*targets))

    def apply(self, cfg: Config) -> Plan:
        plan = Plan.between(self._config, cfg)
        self.store.apply(plan)
        self._config = cfg
        return plan

    def record(self, target: Target, kind: str, result: ProbeResult, lag: float = 0.0) -> None:
        self.store.record(self.store.targets[target.name], kind, result, lag)

    def render(self) -> str:
        return b"".join(self.renderer.chunks()).decode()

    def exposition(self, min_age: float = 1.0) -> Exposition:
        return Exposition(self.renderer, min_age=min_age)


class Owner:
    """Stands in for the store's TargetState: the scheduler hands it back with each result."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.name = target.name
        self.kinds: dict[str, Any] = dict.fromkeys(target.probes)


class TestScheduler(Scheduler):
    """A Scheduler that takes whole configurations and returns (added, removed, kept) jobs."""

    __test__ = False

    def __init__(self, probes: dict[str, Any], sink: Any, **kw: Any) -> None:
        super().__init__(KINDS, probes, sink, **kw)
        self._config: Config | None = None

    def apply_config(self, cfg: Config) -> tuple[int, int, int]:
        plan = Plan.between(self._config, cfg)
        self.apply(plan, {t.name: Owner(t) for t in cfg.targets})
        self._config = cfg
        return len(plan.jobs_added), len(plan.jobs_removed), len(plan.jobs_kept)
