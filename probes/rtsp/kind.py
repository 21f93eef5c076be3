"""The rtsp kind: its ``rtsp:`` block, per-target state and lifeline_rtsp_status_code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from common.model import Target, Tier
from common.textfmt import Family
from common.validate import Validator
from common.yamlsrc import Path
from probes.base import Probe, ProbeContext, ProbeResult
from probes.rtsp import config
from probes.service import ServiceKind

FAMILIES = (
    Family("lifeline_rtsp_status_code", "gauge",
           "Status of the last RTSP DESCRIBE (after any auth challenge); 0 when no answer arrived."),
)


@dataclass(slots=True)
class RtspState:
    status: int | None = None  # None until the first cycle ends


class RtspKind(ServiceKind):
    name = "rtsp"
    settings_key = "rtsp"
    families = FAMILIES

    def parse_settings(self, v: Validator, raw: Any, path: Path, profiles: Any, tier: Tier | None,
                       address: str | None) -> Any:
        return config.parse_settings(v, raw, path, tier)

    def open(self, ctx: ProbeContext) -> Probe:
        from probes.rtsp.probe import RtspProbe

        return RtspProbe(resolver=ctx.resolver)

    def new_state(self, target: Target, old: RtspState | None = None, tier: Tier | None = None) -> RtspState:
        return old if old is not None else RtspState()

    def record(self, state: RtspState, result: ProbeResult) -> None:
        state.status = getattr(result, "status", 0)  # a crashed cycle (reason "internal") got no answer

    def fragments(self, state: RtspState, key: bytes) -> Sequence[bytes]:
        if state.status is None:
            return (b"",)
        return (b"lifeline_rtsp_status_code{%s} %d\n" % (key, state.status),)
