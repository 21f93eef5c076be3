"""The typed configuration model, its built-in defaults, and complete validation at load.

``load(path)`` returns a ``Config`` or raises ``ConfigInvalid`` carrying every
error found across the main file and all ``targets_files``, each as
``FILE:LINE: path.to.key: message``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from agent.errors import ConfigInvalid
from agent.validate import ConfigError, Validator, format_duration
from agent.yamlsrc import Document, Path, SourceError, format_path, parse, read
from probes.registry import KINDS

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")
TIER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels the agent sets itself, plus the ones Prometheus attaches on scrape.
RESERVED_LABELS = frozenset({"target", "tier", "category", "site", "address", "job", "instance",
                             "probe", "reason"})
SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    priority: int  # lower is more urgent; P0 is 0
    interval: float
    timeout: float
    packets: int
    packet_interval: float
    loss_warn: float
    loss_crit: float
    rtt_warn: float
    rtt_crit: float
    severity: str
    snmp_interval: float
    snmp_timeout: float
    snmp_retries: int

    @property
    def icmp_cycle_budget(self) -> float:
        """Longest an ICMP cycle can take: last packet's send plus its timeout."""
        return (self.packets - 1) * self.packet_interval + self.timeout


def _tier(name: str, priority: int, interval: float, timeout: float, packets: int, loss_warn: float,
          loss_crit: float, rtt_warn: float, rtt_crit: float, severity: str, snmp_interval: float) -> Tier:
    return Tier(name=name, priority=priority, interval=interval, timeout=timeout, packets=packets,
                packet_interval=0.2, loss_warn=loss_warn, loss_crit=loss_crit, rtt_warn=rtt_warn,
                rtt_crit=rtt_crit, severity=severity, snmp_interval=snmp_interval,
                snmp_timeout=2.0, snmp_retries=1)


# Built-in tiers: P0 is a lifeline circuit (hospital, emergency video), P3 a best-effort camera.
DEFAULT_TIERS: dict[str, Tier] = {
    t.name: t
    for t in (
        _tier("P0", 0, 5.0, 1.0, 5, 0.02, 0.10, 0.050, 0.150, "critical", 15.0),
        _tier("P1", 1, 15.0, 2.0, 5, 0.05, 0.20, 0.100, 0.300, "critical", 30.0),
        _tier("P2", 2, 30.0, 2.0, 3, 0.10, 0.30, 0.200, 0.500, "warning", 60.0),
        _tier("P3", 3, 60.0, 3.0, 3, 0.20, 0.50, 0.300, 1.000, "info", 120.0),
    )
}

TIER_KEYS = ("priority", "interval", "timeout", "packets", "packet_interval", "loss_warn", "loss_crit",
             "rtt_warn", "rtt_crit", "severity", "snmp_interval", "snmp_timeout", "snmp_retries")
TARGET_KEYS = ("name", "address", "tier", "category", "site", "labels", "probes")


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
        return dict(self.settings).get(kind)

    def identity(self) -> tuple[Any, ...]:
        """Everything that affects probing and labels; equal identity means "unchanged" on reload."""
        return (self.name, self.address, self.tier, self.category, self.site, self.labels, self.probes,
                self.settings)


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    # Probe cycles allowed to run at once; beyond it, due cycles queue by tier priority.
    max_in_flight: int = 2000


@dataclass(frozen=True, slots=True)
class ReloadSettings:
    # A reload that would take more than this share of the most urgent tier's
    # targets out of it is refused: a truncated file must not silence hospitals.
    max_p0_drop_ratio: float = 0.25
    # Set in the new file when such a large removal is meant; remove it afterwards.
    p0_drop_intended: bool = False


@dataclass(frozen=True, slots=True)
class DnsSettings:
    cache_ttl: float = 60.0  # seconds a resolved host name is reused
    negative_ttl: float = 10.0  # retry failed names sooner, so a fixed DNS entry is noticed quickly


@dataclass(frozen=True)
class Config:
    tiers: dict[str, Tier]
    targets: tuple[Target, ...]
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    reload: ReloadSettings = field(default_factory=ReloadSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    files: tuple[str, ...] = ()
    include_patterns: tuple[str, ...] = ()  # absolute globs of targets_files, for the file watcher
    digest: str = ""  # sha256 over every file read, for the config info metric and no-op reloads


def load(path: str) -> Config:
    """Load and validate ``path`` and every file it includes; raise ConfigInvalid with all errors."""
    loader = _Loader()
    config = loader.load(path)
    if loader.errors or config is None:
        order = {f: i for i, f in enumerate(dict.fromkeys(e.file for e in loader.errors))}
        raise ConfigInvalid(sorted(loader.errors, key=lambda e: (order[e.file], e.line)))
    return config


def parse_tiers(v: Validator, raw: Any, path: Path) -> dict[str, Tier]:
    tiers = dict(DEFAULT_TIERS)
    if raw is None:
        return tiers
    if not isinstance(raw, dict):
        v.error(path, "must be a mapping of tier name to settings")
        return tiers
    for name, body in raw.items():
        tpath = path + (name,)
        if not isinstance(name, str) or not TIER_NAME_RE.fullmatch(name):
            v.error(tpath, f"tier names are letters, digits, '-' and '_' (got {name!r})")
            continue
        body = {} if body is None else body
        fields = v.mapping(tpath, body, TIER_KEYS)
        if fields is None:
            continue
        base = tiers.get(name) or replace(DEFAULT_TIERS["P3"], name=name, priority=4 + len(tiers))
        tiers[name] = _parse_tier(v, tpath, fields, base)
    return tiers


def _parse_tier(v: Validator, path: Path, f: dict[str, Any], base: Tier) -> Tier:
    changes: dict[str, Any] = {}
    checks = {
        "priority": lambda p, x: v.integer(p, x, lo=0, hi=99),
        "interval": lambda p, x: v.duration(p, x, lo=0.05),
        "timeout": lambda p, x: v.duration(p, x, lo=0.001),
        "packets": lambda p, x: v.integer(p, x, lo=1, hi=100),
        "packet_interval": lambda p, x: v.duration(p, x, lo=0.0001, hi=60),
        "loss_warn": v.ratio, "loss_crit": v.ratio,
        "rtt_warn": lambda p, x: v.duration(p, x, lo=0.0), "rtt_crit": lambda p, x: v.duration(p, x, lo=0.0),
        "severity": lambda p, x: v.choice(p, x, SEVERITIES),
        "snmp_interval": lambda p, x: v.duration(p, x, lo=0.1),
        "snmp_timeout": lambda p, x: v.duration(p, x, lo=0.01, hi=60),
        "snmp_retries": lambda p, x: v.integer(p, x, lo=0, hi=10),
    }
    failed = False
    for key, value in f.items():
        checked = checks[key](path + (key,), value)
        failed = failed or checked is None
        changes[key] = checked
    if failed:
        return base  # cross-field checks on half-valid values would only add noise
    tier = replace(base, **changes)
    if tier.icmp_cycle_budget >= tier.interval:
        key = "timeout" if "timeout" in f else "interval"
        detail = (f"timeout ({format_duration(tier.timeout)})" if tier.packets == 1 else
                  f"{tier.packets} packets {format_duration(tier.packet_interval)} apart plus timeout "
                  f"({format_duration(tier.icmp_cycle_budget)})")
        v.error(path + (key,), f"{detail} must be below interval ({format_duration(tier.interval)})")
    if tier.snmp_timeout * (tier.snmp_retries + 1) >= tier.snmp_interval:
        v.error(path + ("snmp_timeout",), f"snmp_timeout x (snmp_retries + 1) must be below snmp_interval "
                                          f"({format_duration(tier.snmp_interval)})")
    if tier.loss_crit < tier.loss_warn:
        v.error(path + ("loss_crit",), "must not be below loss_warn")
    if tier.rtt_crit < tier.rtt_warn:
        v.error(path + ("rtt_crit",), "must not be below rtt_warn")
    return tier


class _Loader:
    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.digest = hashlib.sha256()
        self.files: list[str] = []

    def _document(self, path: str) -> Document | None:
        try:
            raw = read(path)  # one bounded read serves both the digest and the parser
            self.digest.update(raw)
            doc = parse(raw, path)
        except SourceError as exc:
            where = format_path(exc.path) if exc.path is not None else "(file)"
            self.errors.append(ConfigError(path, exc.line, where, exc.message))
            return None
        self.files.append(path)
        return doc

    def load(self, path: str) -> Config | None:
        doc = self._document(path)
        if doc is None:
            return None
        v = Validator(doc)
        if doc.data is None:
            v.error((), "file is empty; expected a mapping with 'targets' (and optionally 'tiers')")
            self.errors.extend(v.errors)
            return None
        profile_keys = {k.profiles_key: k for k in KINDS.values() if k.profiles_key}
        top = v.mapping((), doc.data, ("tiers", "targets", "targets_files", "scheduler", "reload", "dns",
                                       *profile_keys))
        if top is None:
            self.errors.extend(v.errors)
            return None
        tiers = parse_tiers(v, top.get("tiers"), ("tiers",))
        scheduler = self._scheduler(v, top.get("scheduler"))
        reload = self._reload(v, top.get("reload"))
        dns = self._dns(v, top.get("dns"))
        profiles = {key: kind.parse_profiles(v, top[key], (key,)) if kind.parse_profiles else {}
                    for key, kind in profile_keys.items() if key in top}
        targets = self._targets(v, top.get("targets"), ("targets",), tiers, profiles)
        includes, patterns = self._include(v, top.get("targets_files"), os.path.dirname(path))
        self.errors.extend(v.errors)
        for extra in includes:
            targets.extend(self._targets_file(extra, tiers, profiles))
        self._check_duplicates(targets)
        return Config(tiers=tiers, targets=tuple(t for t, _, _ in targets), scheduler=scheduler,
                      reload=reload, dns=dns, files=tuple(self.files), include_patterns=tuple(patterns),
                      digest=self.digest.hexdigest())

    def _scheduler(self, v: Validator, raw: Any) -> SchedulerSettings:
        if raw is None:
            return SchedulerSettings()
        f = v.mapping(("scheduler",), raw, ("max_in_flight",))
        if not f or "max_in_flight" not in f:
            return SchedulerSettings()
        n = v.integer(("scheduler", "max_in_flight"), f["max_in_flight"], lo=1, hi=1_000_000)
        return SchedulerSettings(max_in_flight=n or SchedulerSettings.max_in_flight)

    def _reload(self, v: Validator, raw: Any) -> ReloadSettings:
        f = v.mapping(("reload",), raw, ("max_p0_drop_ratio", "p0_drop_intended")) if raw is not None else None
        if not f:
            return ReloadSettings()
        ratio = v.ratio(("reload", "max_p0_drop_ratio"), f.get("max_p0_drop_ratio", 0.25))
        intended = f.get("p0_drop_intended", False)
        if not isinstance(intended, bool):
            v.error(("reload", "p0_drop_intended"), f"must be true or false (got {intended!r})")
            intended = False
        return ReloadSettings(max_p0_drop_ratio=0.25 if ratio is None else ratio, p0_drop_intended=intended)

    def _dns(self, v: Validator, raw: Any) -> DnsSettings:
        f = v.mapping(("dns",), raw, ("cache_ttl", "negative_ttl")) if raw is not None else None
        if not f:
            return DnsSettings()
        out = {}
        for key in f:
            seconds = v.duration(("dns", key), f[key], lo=0.0, hi=86400)
            if seconds is not None:
                out[key] = seconds
        return DnsSettings(**out)

    def _include(self, v: Validator, raw: Any, base: str) -> tuple[list[str], list[str]]:
        if raw is None:
            return [], []
        items = v.seq(("targets_files",), raw)
        files: list[str] = []
        patterns: list[str] = []
        for i, pattern in enumerate(items or []):
            pattern = v.string(("targets_files", i), pattern)
            if pattern:
                full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
                patterns.append(os.path.abspath(full))
                matches = sorted(glob.glob(full))
                if not matches and not glob.has_magic(pattern):
                    v.error(("targets_files", i), f"file not found: {full}")
                files.extend(matches)
        return files, patterns

    def _targets_file(self, path: str, tiers: dict[str, Tier],
                      profiles: dict[str, dict[str, Any]]) -> list[tuple[Target, str, str]]:
        doc = self._document(path)
        if doc is None:
            return []
        v = Validator(doc)
        data, base = doc.data, ()
        if isinstance(data, dict):
            top = v.mapping((), data, ("targets",), required=("targets",))
            data, base = (top or {}).get("targets"), ("targets",)
        targets = [] if data is None else self._targets(v, data, base, tiers, profiles)
        self.errors.extend(v.errors)
        return targets

    def _targets(self, v: Validator, raw: Any, path: Path, tiers: dict[str, Tier],
                 profiles: dict[str, dict[str, Any]]) -> list[tuple[Target, str, str]]:
        if raw is None:
            return []
        items = v.seq(path, raw)
        out = []
        for i, item in enumerate(items or []):
            target = _parse_target(v, path + (i,), item, tiers, profiles)
            if target is not None:
                out.append((target, v.where(path + (i, "name")), format_path(path + (i, "name"))))
        return out

    def _check_duplicates(self, targets: list[tuple[Target, str, str]]) -> None:
        seen: dict[str, str] = {}
        for target, where, path in targets:
            if target.name in seen:
                file, line = where.rsplit(":", 1)
                self.errors.append(ConfigError(file, int(line), path,
                                               f"duplicate target name {target.name!r} "
                                               f"(first defined at {seen[target.name]})"))
            else:
                seen[target.name] = where


def _parse_target(v: Validator, path: Path, raw: Any, tiers: dict[str, Tier],
                  profiles: dict[str, dict[str, Any]]) -> Target | None:
    settings_keys = {k.settings_key: k for k in KINDS.values() if k.settings_key}
    f = v.mapping(path, raw, (*TARGET_KEYS, *settings_keys), required=("name", "address", "tier"))
    if f is None:
        return None
    before = len(v.errors)
    name = v.string(path + ("name",), f.get("name"), pattern=NAME_RE, max_len=128,
                    what="names start with a letter or digit and use letters, digits and ._:@/-") \
        if "name" in f else None
    address = v.address(path + ("address",), f["address"]) if "address" in f else None
    tier = f.get("tier")
    if "tier" in f and (not isinstance(tier, str) or tier not in tiers):
        v.error(path + ("tier",), f"unknown tier {tier!r}; defined tiers: {', '.join(sorted(tiers))}")
    category = v.label_value(path + ("category",), f.get("category", "unspecified"))
    site = v.label_value(path + ("site",), f.get("site", "unspecified"))
    labels = _parse_labels(v, path + ("labels",), f.get("labels"))
    probes = _parse_probe_list(v, path + ("probes",), f.get("probes", ["icmp"]))
    settings = []
    for key, kind in settings_keys.items():
        if kind.name in probes or key in f:
            if key in f and kind.name not in probes:
                v.error(path + (key,), f"settings for {kind.name!r} but 'probes' does not list it")
                continue
            if kind.parse_settings is not None:
                parsed = kind.parse_settings(v, f.get(key), path + (key,),
                                             profiles.get(kind.profiles_key or "", {}))
                if parsed is not None:
                    settings.append((kind.name, parsed))
    if len(v.errors) != before:
        return None
    return Target(name=name, address=address, tier=tier, category=category, site=site, labels=labels,
                  probes=probes, settings=tuple(settings), source=v.where(path))


def _parse_labels(v: Validator, path: Path, raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        v.error(path, "must be a mapping of label name to value")
        return ()
    out = []
    for key, value in raw.items():
        kpath = path + (key,)
        if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key) or key.startswith("__"):
            v.error(kpath, "label names use letters, digits and '_', must not start with a digit or '__'")
        elif key in RESERVED_LABELS:
            v.error(kpath, f"{key!r} is reserved; set it with the target's own key or pick another name")
        else:
            text = v.label_value(kpath, value)
            if text is not None:
                out.append((key, text))
    return tuple(sorted(out))


def _parse_probe_list(v: Validator, path: Path, raw: Any) -> tuple[str, ...]:
    items = v.seq(path, raw)
    if items is None:
        return ()
    if not items:
        v.error(path, "must list at least one probe")
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or item not in KINDS:
            v.error(path + (i,), f"unknown probe {item!r}; known probes: {', '.join(sorted(KINDS))}")
        elif item in out:
            v.error(path + (i,), f"probe {item!r} listed twice")
        else:
            out.append(item)
    return tuple(out)
