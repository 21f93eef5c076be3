"""The SNMP kind: the ``snmp:`` target block and ``snmp_profiles``, its tier keys, state and metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from common.model import Target, Tier
from common.validate import Validator, format_duration
from common.yamlsrc import Path
from probes.base import Probe, ProbeContext, ProbeKind, ProbeResult, target_where
from probes.snmp import config, metrics

if TYPE_CHECKING:
    from probes.snmp.state import SnmpState


@dataclass(frozen=True, slots=True)
class SnmpTier:
    interval: float  # polls are slower than pings: counters move slowly and devices are CPU-bound
    timeout: float  # per request
    retries: int


BUILT_IN = {
    "P0": SnmpTier(15.0, 2.0, 1),
    "P1": SnmpTier(30.0, 2.0, 1),
    "P2": SnmpTier(60.0, 2.0, 1),
    "P3": SnmpTier(120.0, 2.0, 1),
}
# The tier keys' spelling predates per-kind tiers; each maps to an SnmpTier field.
_FIELDS = {"snmp_interval": "interval", "snmp_timeout": "timeout", "snmp_retries": "retries"}


class SnmpKind(ProbeKind):
    name = "snmp"
    settings_key = "snmp"
    profiles_key = "snmp_profiles"
    tier_keys = {
        "snmp_interval": lambda v, p, x: v.duration(p, x, lo=0.1),
        "snmp_timeout": lambda v, p, x: v.duration(p, x, lo=0.01, hi=60),
        "snmp_retries": lambda v, p, x: v.integer(p, x, lo=0, hi=10),
    }
    families = metrics.FAMILIES

    def default_tier(self, tier: str) -> SnmpTier:
        return BUILT_IN.get(tier, BUILT_IN["P3"])

    def parse_tier(self, v: Validator, path: Path, checked: dict[str, Any], fields: Mapping[str, Any],
                   tier: Tier, base: SnmpTier) -> SnmpTier:
        part = replace(base, **{_FIELDS[k]: value for k, value in checked.items()})
        if part.timeout * (part.retries + 1) >= part.interval:
            v.error(path + ("snmp_timeout",), f"snmp_timeout x (snmp_retries + 1) must be below snmp_interval "
                                              f"({format_duration(part.interval)})")
        return part

    def parse_profiles(self, v: Validator, raw: Any, path: Path) -> Any:
        return config.parse_profiles(v, raw, path)

    def parse_settings(self, v: Validator, raw: Any, path: Path, profiles: Any, tier: Tier | None,
                       address: str | None) -> Any:
        return config.parse_settings(v, raw, path, profiles)

    def interval(self, tier: Tier, settings: Any = None) -> float:
        return tier.parts["snmp"].interval

    def open(self, ctx: ProbeContext) -> Probe:
        # The probe, codec, transport and walker load here and in new_state, only for an agent with SNMP
        # targets: `lifeline check` and agents without SNMP never import them (0.3 MB of heap, tracemalloc).
        from probes.snmp.probe import SnmpProbe

        return SnmpProbe(resolver=ctx.resolver)  # pysnmp itself loads only when a v3 target polls

    def new_state(self, target: Target, old: SnmpState | None = None, tier: Tier | None = None) -> SnmpState:
        from probes.snmp.probe import new_state

        settings = target.setting("snmp")
        where = target_where(target)
        if old is not None and old.settings == settings:
            state = old
            if state.where != where:  # the target moved site or category: its labels change
                state.if_keys.clear()
        else:
            state = new_state(settings)
            if old is not None:
                # New settings start a fresh poll memory (interfaces, uptime), but the reboot
                # counter and the last result stay: a counter must not go back on reload.
                state.reboots, state.last = old.reboots, old.last
        state.where = where
        return state

    def record(self, state: SnmpState, result: ProbeResult) -> None:
        metrics.record(state, result)

    def fragments(self, state: SnmpState, key: bytes) -> Sequence[bytes]:
        return metrics.fragments(state, key)
