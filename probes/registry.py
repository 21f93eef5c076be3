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


def _snmp_factory(**kwargs: Any) -> Probe:
    from probes.snmp import SnmpProbe  # pulls in pysnmp only when SNMP is used

    return SnmpProbe(**kwargs)


def _snmp_settings(v: Validator, raw: Any, path: Path, profiles: dict[str, Any]) -> Any:
    from probes.snmp_config import parse_settings

    return parse_settings(v, raw, path, profiles)


def _snmp_profiles(v: Validator, raw: Any, path: Path) -> dict[str, Any]:
    from probes.snmp_config import parse_profiles

    return parse_profiles(v, raw, path)


KINDS: dict[str, ProbeKind] = {
    "icmp": ProbeKind(name="icmp", factory=_icmp_factory),
    "snmp": ProbeKind(name="snmp", factory=_snmp_factory, interval=lambda t: t.snmp_interval,
                      settings_key="snmp", parse_settings=_snmp_settings,
                      profiles_key="snmp_profiles", parse_profiles=_snmp_profiles),
}
