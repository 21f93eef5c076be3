"""The ICMP kind: its tier keys (echoes per cycle, thresholds, option defaults), target block, state and metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from common.model import Target, Tier
from common.textfmt import Family, escape, fmt
from common.validate import Validator, format_duration
from common.yamlsrc import Path
from probes.base import Probe, ProbeContext, ProbeKind, ProbeResult, target_where
from probes.icmp import metrics
from probes.icmp.options import IcmpOptions, family_problem, parse_options


@dataclass(frozen=True, slots=True)
class IcmpTier:
    packets: int  # echoes per cycle
    packet_interval: float  # spacing of those echoes; each waits the tier's timeout
    loss_warn: float
    loss_crit: float
    rtt_warn: float
    rtt_crit: float
    options: IcmpOptions | None = None  # the tier's `icmp:` defaults; None when it sets none
    # The per-target RTT histogram: 19 of the ~31 series of an ICMP target, about half of what a
    # Prometheus holds for a large list. At 30,000 targets with it off on P2 and P3, Prometheus
    # held 628 k series instead of 1.14 M, 2.2 GB instead of 3.5 GB, 25 % of a core instead of
    # 39 % (bench/bench_scaleout.py --no-histogram). Off for a tier, its targets keep every gauge
    # and counter (loss, min/avg/max RTT, jitter).
    rtt_histogram: bool = True

    def cycle_budget(self, timeout: float) -> float:
        """Longest a cycle can take: the last echo's send plus its timeout."""
        return (self.packets - 1) * self.packet_interval + timeout


# P0 is a lifeline circuit (hospital, emergency video), P3 a best-effort camera; new tiers start from P3.
BUILT_IN = {
    "P0": IcmpTier(5, 0.2, 0.02, 0.10, 0.050, 0.150),
    "P1": IcmpTier(5, 0.2, 0.05, 0.20, 0.100, 0.300),
    "P2": IcmpTier(3, 0.2, 0.10, 0.30, 0.200, 0.500),
    "P3": IcmpTier(3, 0.2, 0.20, 0.50, 0.300, 1.000),
}

# (IcmpTier attribute, family): the thresholds reach the alert rules as metrics, so one rule set
# serves any configuration. The names predate per-kind tiers and are kept for the shipped rules.
TIER_FAMILIES = (
    ("packets", Family("lifeline_tier_packets", "gauge", "Echoes sent per cycle in the tier.")),
    ("loss_warn", Family("lifeline_tier_loss_warn_ratio", "gauge", "Loss ratio above which the tier warns.")),
    ("loss_crit", Family("lifeline_tier_loss_crit_ratio", "gauge", "Loss ratio above which the tier is critical.")),
    ("rtt_warn", Family("lifeline_tier_rtt_warn_seconds", "gauge", "RTT above which the tier warns.")),
    ("rtt_crit", Family("lifeline_tier_rtt_crit_seconds", "gauge", "RTT above which the tier is critical.")),
)


class IcmpKind(ProbeKind):
    name = "icmp"
    settings_key = "icmp"
    tier_keys = {
        "packets": lambda v, p, x: v.integer(p, x, lo=1, hi=100),
        "packet_interval": lambda v, p, x: v.duration(p, x, lo=0.0001, hi=60),
        "loss_warn": lambda v, p, x: v.ratio(p, x),
        "loss_crit": lambda v, p, x: v.ratio(p, x),
        "rtt_warn": lambda v, p, x: v.duration(p, x, lo=0.0),
        "rtt_crit": lambda v, p, x: v.duration(p, x, lo=0.0),
        "rtt_histogram": lambda v, p, x: v.boolean(p, x),
        "icmp": parse_options,
    }
    families = metrics.FAMILIES

    def default_tier(self, tier: str) -> IcmpTier:
        return BUILT_IN.get(tier, BUILT_IN["P3"])

    def parse_tier(self, v: Validator, path: Path, checked: dict[str, Any], fields: Mapping[str, Any],
                   tier: Tier, base: IcmpTier) -> IcmpTier:
        checked = dict(checked)
        options = checked.pop("icmp", base.options)
        part = replace(base, **checked, options=None if options is None or options.empty() else options)
        budget = part.cycle_budget(tier.timeout)
        if budget >= tier.interval:
            key = "timeout" if "timeout" in fields else "interval"
            detail = (f"timeout ({format_duration(tier.timeout)})" if part.packets == 1 else
                      f"{part.packets} packets {format_duration(part.packet_interval)} apart plus timeout "
                      f"({format_duration(budget)})")
            v.error(path + (key,), f"{detail} must be below interval ({format_duration(tier.interval)})")
        if part.loss_crit < part.loss_warn:
            v.error(path + ("loss_crit",), "must not be below loss_warn")
        if part.rtt_crit < part.rtt_warn:
            v.error(path + ("rtt_crit",), "must not be below rtt_warn")
        return part

    def parse_settings(self, v: Validator, raw: Any, path: Path, profiles: Any,
                       tier: Tier | None, address: str | None) -> IcmpOptions | None:
        """The target's ``icmp:`` block over its tier's defaults; None (the shared fast path) when neither sets any."""
        own = None
        if raw is not None:
            own = parse_options(v, path, raw)
            if own is None:
                return None
        part = tier.parts.get("icmp") if tier is not None else None
        base = part.options if isinstance(part, IcmpTier) else None
        options = own.over(base) if own is not None else base
        if options is None or options.empty():
            return None
        if options.source is not None:
            problem = family_problem(options.source, address) if address is not None else None
            if problem and own is not None and own.source is not None:
                v.error(path + ("source",), problem)
            elif problem:
                v.error(path[:-1] + ("address",), f"{problem} (the source comes from tier {tier.name}'s icmp "
                                                  "defaults; set icmp.source on this target)")
        return options

    def open(self, ctx: ProbeContext) -> Probe:
        from probes.icmp.probe import IcmpProbe

        return IcmpProbe(resolver=ctx.resolver)

    def new_state(self, target: Target, old: metrics.IcmpState | None = None,
                  tier: Tier | None = None) -> metrics.IcmpState:
        state = old if old is not None else metrics.IcmpState()
        state.where = target_where(target)  # a changed target may have moved site or category
        part = tier.parts.get("icmp") if tier is not None else None
        if part is not None and not part.rtt_histogram:
            state.rtt = None
        elif state.rtt is None:  # turned back on: counts from zero, as a new series does
            state.rtt = metrics.rtt_histogram()
        return state

    def record(self, state: metrics.IcmpState, result: ProbeResult) -> None:
        metrics.record(state, result)

    def fragments(self, state: metrics.IcmpState, key: bytes) -> Sequence[bytes]:
        return metrics.fragments(state, key)

    def degraded(self, state: metrics.IcmpState, tier: Tier) -> str | None:
        figures = metrics.window_figures(state)
        part = tier.parts.get("icmp")
        if figures is None or part is None:
            return None
        loss, rtt = figures
        if loss > part.loss_warn:
            return f"loss {loss:.0%} > {part.loss_warn:.0%}"
        if rtt is not None and rtt > part.rtt_warn:
            return f"RTT {rtt * 1000:.1f} ms > {part.rtt_warn * 1000:.0f} ms"
        return None

    def render_tiers(self, tiers: Sequence[Tier], out: list[str]) -> None:
        for attr, family in TIER_FAMILIES:
            family.lines(out)
            out.extend(f'{family.name}{{tier="{escape(t.name)}"}} {fmt(getattr(t.parts["icmp"], attr))}'
                       for t in tiers)

