"""The one list of probe kinds; config validation and the agent both read it.

A kind names the target key that holds its per-target settings (if any), the
top-level key of shared named profiles (if any), the parsers for both, and a
factory that builds the probe. Factories import lazily so that
``lifeline check`` stays fast and does not need a probe's heavy dependencies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import Tier
    from agent.validate import Validator
    from agent.yamlsrc import Path
    from probes.base import Probe

SettingsParser = Callable[["Validator", Any, "Path", dict[str, Any]], Any]
ProfilesParser = Callable[["Validator", Any, "Path"], dict[str, Any]]


@dataclass(frozen=True)
class ProbeKind:
    name: str
    factory: Callable[..., Probe]
    # How often this kind runs for a target of a given tier (ICMP: tier.interval).
    interval: Callable[[Tier], float] = lambda tier: tier.interval
    settings_key: str | None = None
    parse_settings: SettingsParser | None = None  # called with raw=None when the key is absent
    profiles_key: str | None = None
    parse_profiles: ProfilesParser | None = None


def _icmp_factory(**kwargs: Any) -> Probe:
    from probes.icmp import IcmpProbe

    return IcmpProbe(**kwargs)


KINDS: dict[str, ProbeKind] = {
    "icmp": ProbeKind(name="icmp", factory=_icmp_factory),
}
