"""The loaded configuration as plain data with every secret replaced, for /api/v1/status/config.

Rendering walks the parsed values, not the files: a ``Secret`` (SNMP
communities and keys, RTSP passwords) and any dataclass field declared
``repr=False`` (HTTP header values) become ``"<secret>"``, whatever file or
variable they came from. Unknown object types render as their type name
rather than ``str()``, so a new kind's value can never leak by accident.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import re
import threading
from collections.abc import Mapping
from typing import Any

import yaml

from agent.config import Config
from common.model import Target, Tier
from common.secrets import Secret

REDACTED = "<secret>"
API_PATH = "/api/v1/status/config"

try:  # libyaml: rendering 10,000 targets takes ~1 s with it, several without
    _Dumper: type = yaml.CSafeDumper
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Dumper = yaml.SafeDumper


def plain(value: Any) -> Any:
    """``value`` as JSON-safe data, secrets redacted."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: (REDACTED if not f.repr and getattr(value, f.name) is not None else
                         plain(getattr(value, f.name)))
                for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    to_text = getattr(value, "to_text", None)  # dnspython names
    if type(value).__module__.startswith("dns.") and callable(to_text):
        return to_text()
    return f"<{type(value).__name__}>"


def target_data(target: Target) -> dict[str, Any]:
    out: dict[str, Any] = {"name": target.name, "address": target.address, "tier": target.tier,
                           "category": target.category, "site": target.site,
                           "labels": dict(target.labels), "probes": list(target.probes)}
    for kind, settings in target.settings:
        out.setdefault("settings", {})[kind] = plain(settings)
    return out


def tier_data(tier: Tier) -> dict[str, Any]:
    out: dict[str, Any] = {"priority": tier.priority, "interval": tier.interval, "timeout": tier.timeout,
                           "severity": tier.severity}
    for kind, part in tier.parts.items():
        out[kind] = plain(part)
    return out


def config_data(config: Config) -> dict[str, Any]:
    """Tiers, reload/scheduler/dns settings and targets, secrets redacted."""
    return {
        "tiers": {name: tier_data(t) for name, t in config.tiers.items()},
        "reload": plain(config.reload),
        "scheduler": plain(config.scheduler),
        "dns": plain(config.dns),
        "targets": [target_data(t) for t in config.targets],
        # Names that came from targets_http lists rather than the files: `lifeline diff FILE URL` leaves
        # them out, since the file alone does not fetch them.
        "pulled": sorted(config.pulled),
    }


def status_body(config: Config, shard: Mapping[str, int] | None = None) -> bytes:
    """The JSON document of /api/v1/status/config: Prometheus's ``data.yaml`` plus structured ``data.config``."""
    data = config_data(config)
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=None,
                     width=120)
    body = {"status": "success",
            "data": {"yaml": text, "config": data, "digest": config.digest,
                     "shard": dict(shard or {"index": 0, "count": 1})}}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class ConfigPage:
    """Renders the body once per configuration digest; served from the HTTP threads."""

    def __init__(self, current: Any, shard: Mapping[str, int] | None = None) -> None:
        self._current = current  # () -> Config
        self._shard = shard
        self._lock = threading.Lock()
        self._cached: tuple[Config, bytes] | None = None

    def __call__(self) -> bytes:
        config = self._current()
        with self._lock:  # one render at a time; concurrent requests wait for it and share it
            if self._cached is None or self._cached[0] is not config:  # a reload swaps the object
                self._cached = (config, status_body(config, self._shard))
            return self._cached[1]
