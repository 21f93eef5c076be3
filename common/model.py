"""The configuration's value types, shared by the agent and the probe kinds.

A ``Tier`` holds what every kind reads (interval, timeout, priority,
severity) and, in ``parts``, each kind's own tier settings, parsed and
validated by that kind. A ``Target`` holds, in ``settings``, each kind's own
per-target block. The agent never looks inside either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Target names: also used in dependency lists and anchors, so one pattern for all of them.
TARGET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")
# Tier names: also written into PromQL selectors by rules/generate.py, so nothing a regex or a
# PromQL string reads as special.
TIER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    priority: int  # lower is more urgent; P0 is 0
    interval: float
    timeout: float
    severity: str
    parts: Mapping[str, Any] = field(default_factory=dict)  # kind name -> that kind's tier settings

    def part(self, kind: str) -> Any:
        return self.parts.get(kind)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    address: str
    tier: str
    category: str
    site: str
    labels: tuple[tuple[str, str], ...]
    probes: tuple[str, ...]
    # Per-kind settings, e.g. {"snmp": SnmpSettings(...)}; kinds without settings are absent.
    settings: tuple[tuple[str, Any], ...] = ()
    source: str = ""  # "file:line", for messages

    def setting(self, kind: str) -> Any:
        for name, value in self.settings:
            if name == kind:
                return value
        return None

    def identity(self) -> tuple[Any, ...]:
        """Everything that affects probing and labels; equal identity means "unchanged" on reload."""
        return (self.name, self.address, self.tier, self.category, self.site, self.labels, self.probes,
                self.settings)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    cache_ttl: float = 60.0  # seconds a resolved host name is reused
    negative_ttl: float = 10.0  # retry failed names sooner, so a fixed DNS entry is noticed quickly
