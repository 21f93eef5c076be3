"""The http kind: its ``http:`` block (see config.py), state and families."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.model import Target, Tier
from common.validate import Validator
from common.yamlsrc import Path
from probes.base import Probe, ProbeContext, ProbeResult
from probes.http import config, metrics
from probes.service import ServiceKind


class HttpKind(ServiceKind):
    name = "http"
    settings_key = "http"
    families = metrics.FAMILIES

    def parse_settings(self, v: Validator, raw: Any, path: Path, profiles: Any, tier: Tier | None,
                       address: str | None) -> Any:
        return config.parse_settings(v, raw, path, tier)

    def open(self, ctx: ProbeContext) -> Probe:
        from probes.http.probe import HttpProbe

        return HttpProbe(ctx.resolver)

    def new_state(self, target: Target, old: metrics.HttpState | None = None,
                  tier: Tier | None = None) -> metrics.HttpState:
        return old if old is not None else metrics.HttpState()

    def record(self, state: metrics.HttpState, result: ProbeResult) -> None:
        metrics.record(state, result)

    def fragments(self, state: metrics.HttpState, key: bytes) -> Sequence[bytes]:
        return metrics.fragments(state, key)
