"""The tcp kind: its ``tcp:`` block (see config.py), and no families beyond the core's (success, phases, TLS)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.model import Target, Tier
from common.validate import Validator
from common.yamlsrc import Path
from probes.base import Probe, ProbeContext, ProbeResult
from probes.service import ServiceKind
from probes.tcp import config


class TcpKind(ServiceKind):
    name = "tcp"
    settings_key = "tcp"

    def parse_settings(self, v: Validator, raw: Any, path: Path, profiles: Any, tier: Tier | None,
                       address: str | None) -> Any:
        return config.parse_settings(v, raw, path, tier)

    def open(self, ctx: ProbeContext) -> Probe:
        from probes.tcp.probe import TcpProbe

        return TcpProbe(ctx.resolver)

    def new_state(self, target: Target, old: Any = None, tier: Tier | None = None) -> None:
        return None  # nothing per target beyond the core's counters

    def record(self, state: Any, result: ProbeResult) -> None:
        pass

    def fragments(self, state: Any, key: bytes) -> Sequence[bytes]:
        return ()
