"""What one target's SNMP polls remember between cycles, and what its metrics need."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probes.snmp.config import SnmpSettings
from probes.snmp.result import SnmpResult

if TYPE_CHECKING:  # the codec and transport load with the probe (SnmpKind.open), not with the config
    from probes.snmp.caller import Batch

MAX_VARBINDS = 48  # per GET; small enough for a 1500-byte reply from most CPEs


@dataclass
class SnmpState:
    settings: SnmpSettings
    scalars: Batch  # the first GET of every poll, built once
    # --- the poll's memory
    uptime: int | None = None  # ticks
    uptime_at: float = 0.0
    if_number: Any = None
    if_last_change: Any = None
    interfaces: dict[int, tuple[str, str, str]] | None = None  # ifindex -> (name, descr, alias)
    polls_since_discovery: int = 0
    fallback: set[tuple[int, str]] = field(default_factory=set)
    plan: list[tuple[Batch, list[tuple[int, str, int]]]] | None = None
    max_varbinds: int = MAX_VARBINDS
    last_reason: str | None = None  # for logging once per change, never per poll
    last_missing: frozenset[str] = frozenset()
    # --- the metrics' memory
    reboots: int = 0  # since the agent started (or the target was added)
    last: SnmpResult | None = None
    # ',category="...",site="..."' for the series the alert rules read (reboots, oper status), set by
    # SnmpKind.new_state: the rules then need no join on lifeline_target_info (see metrics.fragments).
    where: bytes = b""
    # Label strings per interface, built once rather than on every result: (every family's, oper status').
    if_keys: dict[tuple[int, str], tuple[bytes, bytes]] = field(default_factory=dict)
    info_keys: dict[tuple[int, str, str, str], bytes] = field(default_factory=dict)
