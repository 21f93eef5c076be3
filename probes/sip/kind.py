"""The SIP kind: its target block, per-target state and the status-code family."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.model import Target, Tier
from common.textfmt import Family
from common.validate import Validator
from common.yamlsrc import Path
from probes.base import Probe, ProbeContext, ProbeResult
from probes.service import ServiceKind
from probes.sip import config
from probes.sip.result import SipResult


@dataclass(slots=True)
class SipState:
    status_code: int | None = None  # None until the first cycle ends


class SipKind(ServiceKind):
    name = "sip"
    settings_key = "sip"
    families = (Family("lifeline_sip_status_code", "gauge",
                       "Status code of the last final response to OPTIONS; 0 when none arrived."),)

    def parse_settings(self, v: Validator, raw: Any, path: Path, profiles: Any,
                       tier: Tier | None, address: str | None) -> config.SipSettings | None:
        return config.parse_settings(v, raw, path, tier)

    def open(self, ctx: ProbeContext) -> Probe:
        from probes.sip.probe import SipProbe

        return SipProbe(ctx.resolver)

    def new_state(self, target: Target, old: SipState | None = None, tier: Tier | None = None) -> SipState:
        return old if old is not None else SipState()

    def record(self, state: SipState, result: ProbeResult) -> None:
        state.status_code = result.status_code if isinstance(result, SipResult) else 0

    def fragments(self, state: SipState, key: bytes) -> Sequence[bytes]:
        if state.status_code is None:
            return (b"",)
        return (b"lifeline_sip_status_code{%s} %d\n" % (key, state.status_code),)
