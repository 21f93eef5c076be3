"""The configuration loader: files, includes, tiers, targets; complete validation at load.

``load(path)`` returns a ``Config`` or raises ``ConfigInvalid`` carrying every
error found across the main file and all ``targets_files``, each as
``FILE:LINE: path.to.key: message``. The loader owns the core keys; each probe
kind parses and checks its own tier keys, target block and profiles (see
``probes/base.py``), with the same validator, so its errors carry lines too.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from common.errors import ConfigInvalid
from common.model import DnsSettings, Target, Tier
from common.validate import ConfigError, Validator
from common.yamlsrc import Document, Path, SourceError, format_path, parse, read
from probes.base import ProbeKind
from probes.registry import KINDS

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")
TIER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels the agent sets itself, plus the ones Prometheus attaches on scrape.
RESERVED_LABELS = frozenset({"target", "tier", "category", "site", "address", "job", "instance",
                             "probe", "reason"})
SEVERITIES = ("critical", "warning", "info")


# Core tier keys: (priority, interval, timeout, severity) of the four built-in tiers. Each probe
# kind adds its own part (ICMP: echoes and thresholds; SNMP: poll interval ...) to every tier.
# P0 is a lifeline circuit (hospital, emergency video), P3 a best-effort camera.
BUILT_IN_TIERS = {
    "P0": (0, 5.0, 1.0, "critical"),
    "P1": (1, 15.0, 2.0, "critical"),
    "P2": (2, 30.0, 2.0, "warning"),
    "P3": (3, 60.0, 3.0, "info"),
}
CORE_TIER_KEYS = ("priority", "interval", "timeout", "severity")
TARGET_KEYS = ("name", "address", "tier", "category", "site", "labels", "probes")


def default_tiers(kinds: Mapping[str, ProbeKind] = KINDS) -> dict[str, Tier]:
    return {name: Tier(name=name, priority=p, interval=i, timeout=t, severity=sev,
                       parts={k: part for k, kind in kinds.items() if (part := kind.default_tier(name)) is not None})
            for name, (p, i, t, sev) in BUILT_IN_TIERS.items()}


DEFAULT_TIERS = default_tiers()


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


def load(path: str, kinds: Mapping[str, ProbeKind] = KINDS) -> Config:
    """Load and validate ``path`` and every file it includes; raise ConfigInvalid with all errors."""
    loader = _Loader(kinds)
    config = loader.load(path)
    if loader.errors or config is None:
        order = {f: i for i, f in enumerate(dict.fromkeys(e.file for e in loader.errors))}
        raise ConfigInvalid(sorted(loader.errors, key=lambda e: (order[e.file], e.line)))
    return config


def parse_tiers(v: Validator, raw: Any, path: Path, kinds: Mapping[str, ProbeKind] = KINDS) -> dict[str, Tier]:
    tiers = default_tiers(kinds)
    if raw is None:
        return tiers
    if not isinstance(raw, dict):
        v.error(path, "must be a mapping of tier name to settings")
        return tiers
    owners = {key: kind for kind in kinds.values() for key in kind.tier_keys}
    for name, body in raw.items():
        tpath = path + (name,)
        if not isinstance(name, str) or not TIER_NAME_RE.fullmatch(name):
            v.error(tpath, f"tier names are letters, digits, '-' and '_' (got {name!r})")
            continue
        body = {} if body is None else body
        fields = v.mapping(tpath, body, (*CORE_TIER_KEYS, *owners))
        if fields is None:
            continue
        # A new tier starts from the built-in P3, after the built-in priorities.
        base = tiers.get(name) or replace(default_tiers(kinds)["P3"], name=name, priority=4 + len(tiers))
        tiers[name] = _parse_tier(v, tpath, fields, base, owners, kinds)
    return tiers


_CORE_CHECKS = {
    "priority": lambda v, p, x: v.integer(p, x, lo=0, hi=99),
    "interval": lambda v, p, x: v.duration(p, x, lo=0.05),
    "timeout": lambda v, p, x: v.duration(p, x, lo=0.001),
    "severity": lambda v, p, x: v.choice(p, x, SEVERITIES),
}


def _parse_tier(v: Validator, path: Path, fields: dict[str, Any], base: Tier, owners: Mapping[str, ProbeKind],
                kinds: Mapping[str, ProbeKind]) -> Tier:
    core: dict[str, Any] = {}
    per_kind: dict[str, dict[str, Any]] = {}
    failed = False
    for key, value in fields.items():  # in file order, so errors on one line keep their order
        owner = owners.get(key)
        check = _CORE_CHECKS[key] if owner is None else owner.tier_keys[key]
        checked = check(v, path + (key,), value)
        failed = failed or checked is None
        if owner is None:
            core[key] = checked
        else:
            per_kind.setdefault(owner.name, {})[key] = checked
    if failed:
        return base  # cross-field checks on half-valid values would only add noise
    tier = replace(base, **core)
    parts = dict(tier.parts)
    for name, kind in kinds.items():
        if name in parts:
            parts[name] = kind.parse_tier(v, path, per_kind.get(name, {}), fields, tier, parts[name])
    return replace(tier, parts=parts)


class _Loader:
    def __init__(self, kinds: Mapping[str, ProbeKind]) -> None:
        self.kinds = kinds
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
        profile_keys = {k.profiles_key: k for k in self.kinds.values() if k.profiles_key}
        top = v.mapping((), doc.data, ("tiers", "targets", "targets_files", "scheduler", "reload", "dns",
                                       *profile_keys))
        if top is None:
            self.errors.extend(v.errors)
            return None
        tiers = parse_tiers(v, top.get("tiers"), ("tiers",), self.kinds)
        scheduler = self._scheduler(v, top.get("scheduler"))
        reload = self._reload(v, top.get("reload"))
        dns = self._dns(v, top.get("dns"))
        profiles = {kind.name: kind.parse_profiles(v, top[key], (key,))
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
            target = _parse_target(v, path + (i,), item, tiers, profiles, self.kinds)
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
                  profiles: dict[str, Any], kinds: Mapping[str, ProbeKind]) -> Target | None:
    settings_keys = {k.settings_key: k for k in kinds.values() if k.settings_key}
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
    probes = _parse_probe_list(v, path + ("probes",), f.get("probes", ["icmp"]), kinds)
    settings = []
    for key, kind in settings_keys.items():
        if kind.name in probes or key in f:
            if key in f and kind.name not in probes:
                v.error(path + (key,), f"settings for {kind.name!r} but 'probes' does not list it")
                continue
            parsed = kind.parse_settings(v, f.get(key), path + (key,), profiles.get(kind.name, {}),
                                         tiers.get(tier) if isinstance(tier, str) else None, address)
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


def _parse_probe_list(v: Validator, path: Path, raw: Any, kinds: Mapping[str, ProbeKind]) -> tuple[str, ...]:
    items = v.seq(path, raw)
    if items is None:
        return ()
    if not items:
        v.error(path, "must list at least one probe")
    out: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or item not in kinds:
            v.error(path + (i,), f"unknown probe {item!r}; known probes: {', '.join(sorted(kinds))}")
        elif item in out:
            v.error(path + (i,), f"probe {item!r} listed twice")
        else:
            out.append(item)
    return tuple(out)
