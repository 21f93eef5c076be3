"""The dns kind: its ``dns:`` target block, runtime, state and families."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.model import Target, Tier
from common.validate import Validator
from common.yamlsrc import Path
from probes.base import Probe, ProbeContext, ProbeResult
from probes.dns import config, metrics
from probes.dns.config import DnsSettings
from probes.service import ServiceKind


class DnsKind(ServiceKind):
    name = "dns"
    settings_key = "dns"
    families = metrics.FAMILIES

    def parse_settings(self, v: Validator, raw: Any, path: Path, profiles: Any,
                       tier: Tier | None, address: str | None) -> DnsSettings | None:
        return config.parse_settings(v, raw, path, tier)

    def open(self, ctx: ProbeContext) -> Probe:
        from probes.dns.probe import DnsProbe  # dnspython's message and rdata code: the runtime only

        return DnsProbe(resolver=ctx.resolver)

    def new_state(self, target: Target, old: metrics.DnsState | None = None,
                  tier: Tier | None = None) -> metrics.DnsState:
        return old if old is not None else metrics.DnsState()

    def record(self, state: metrics.DnsState, result: ProbeResult) -> None:
        metrics.record(state, result)

    def fragments(self, state: metrics.DnsState, key: bytes) -> Sequence[bytes]:
        return metrics.fragments(state, key)
