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

from agent.maintenance.model import Window, parse_windows, unmatched
from common.errors import ConfigInvalid
from agent import topology
from common.model import TARGET_NAME_RE, TIER_NAME_RE, DnsSettings, Target, Tier
from common.secrets import Secret, load_secret
from common.validate import ConfigError, Validator
from common.yamlsrc import Document, Path, SourceError, format_path, parse, read
from probes.base import ProbeKind
from probes.registry import KINDS
from probes.tls import TlsOptions, parse_tls

NAME_RE = TARGET_NAME_RE
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels the agent sets itself, plus the ones Prometheus attaches on scrape.
RESERVED_LABELS = frozenset({"target", "tier", "category", "site", "address", "job", "instance",
                             "probe", "reason", "vantage"})
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
TARGET_KEYS = ("name", "address", "tier", "category", "site", "labels", "probes", "depends_on")


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


# Group labels of a Prometheus service-discovery list that fill a target's own keys; any other label
# without a "__" prefix becomes a target label ("__meta_*" and the rest of "__*" are ignored).
SD_KEY_LABELS = ("tier", "category", "site", "probes", "name")
HTTP_SD_KEYS = ("url", "refresh_interval", "timeout", "default_tier", "max_body_bytes", "basic_auth",
                "bearer_token_env", "bearer_token_file", "tls")
_UNSAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._:@/-]+")


@dataclass(frozen=True)
class HttpSdSource:
    """One ``targets_http`` entry: a Prometheus http_sd URL the agent polls (agent/inventory/pull.py)."""

    url: str
    refresh_interval: float = 60.0
    timeout: float = 10.0
    default_tier: str | None = None  # for groups without a "tier" label; without it such a group is an error
    max_body_bytes: int = 32 * 1024 * 1024
    username: str | None = None
    password: Secret | None = None
    bearer_token: Secret | None = None
    tls: TlsOptions = field(default_factory=TlsOptions)
    where: str = ""  # FILE:LINE of the entry


@dataclass(frozen=True)
class ConsensusSettings:
    """How many vantages must see a P0 down before it pages critical (rules: lifeline.consensus)."""

    quorum: int = 0  # 0: a majority of the live, non-isolated vantages


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
    targets_http: tuple[HttpSdSource, ...] = ()
    sd_cache_dir: str = ""  # absolute; where the last good list of each http_sd source is kept
    # Filled by agent/inventory/pull.py when fetched lists join the file's targets: the lists in use
    # (url -> body), the names they contributed, and the digest of the files alone.
    sd_lists: tuple[tuple[str, bytes], ...] = ()
    pulled: frozenset[str] = frozenset()
    file_digest: str = ""
    maintenance: tuple[Window, ...] = ()  # the `maintenance:` windows (agent/maintenance/)
    # depends_on, sites and anchors as written (agent/topology.py); `graph` resolves them
    declared: topology.Declared = field(default_factory=topology.Declared)
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)

    def graph(self) -> topology.Graph:
        """Parents, children and anchors over this config's targets (bad edges left out)."""
        return topology.resolve(self.declared, self.targets)[0]


def warnings(cfg: Config) -> list[ConfigError]:
    """Problems that do not stop the config from loading: maintenance windows matching no target.

    Over the targets known now: for ``lifeline check`` the files' (a file with targets_http is not
    judged, its lists are not fetched), for the agent the merged ones.
    """
    if cfg.targets_http and not cfg.sd_lists:
        return []
    out = unmatched(cfg.maintenance, cfg.targets)
    if cfg.targets_http:  # names the files could not judge at load (see topology.py)
        out += [replace(e, message=f"warning: {e.message}; ignored")
                for e in topology.resolve(cfg.declared, cfg.targets)[1]]
    return out


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
        self.depends: dict[str, tuple[topology.Named, ...]] = {}  # target -> its own depends_on

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
                                       "targets_sd_files", "targets_http", "sd_cache_dir", "maintenance",
                                       "sites", "anchors", "consensus", *profile_keys))
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
        sd_files, sd_patterns = self._include(v, top.get("targets_sd_files"), os.path.dirname(path),
                                              "targets_sd_files")
        http = self._http_sources(v, top.get("targets_http"), tiers)
        cache_dir = self._cache_dir(v, top.get("sd_cache_dir"), path)
        self.errors.extend(v.errors)
        for extra in includes:
            targets.extend(self._targets_file(extra, tiers, profiles))
        for extra in sd_files:
            targets.extend(self._sd_file(extra, tiers, profiles))
        self._check_duplicates(targets)
        # Windows whose match covers no target are warnings (see warnings()), not errors.
        vm = Validator(doc)
        maintenance = parse_windows(vm, top.get("maintenance"), ("maintenance",), tiers)
        declared = topology.Declared(
            own=self.depends, sites=topology.parse_sites(vm, top.get("sites")),
            anchors=topology.parse_names(vm, ("anchors",), top["anchors"]) if top.get("anchors") is not None else ())
        consensus = self._consensus(vm, top.get("consensus"))
        self.errors.extend(vm.errors)
        final = tuple(t for t, _, _ in targets)
        if not http:  # with fetched lists the names are judged after the merge (warnings())
            self.errors.extend(topology.resolve(declared, final)[1])
        return Config(tiers=tiers, targets=final, scheduler=scheduler,
                      reload=reload, dns=dns, files=tuple(self.files),
                      include_patterns=tuple(patterns + sd_patterns), digest=self.digest.hexdigest(),
                      targets_http=http, sd_cache_dir=cache_dir, maintenance=maintenance,
                      declared=declared, consensus=consensus)

    def _consensus(self, v: Validator, raw: Any) -> ConsensusSettings:
        if raw is None:
            return ConsensusSettings()
        f = v.mapping(("consensus",), raw, ("quorum",)) or {}
        quorum = v.integer(("consensus", "quorum"), f["quorum"], lo=0, hi=64) if "quorum" in f else 0
        return ConsensusSettings(quorum=quorum or 0)

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
        intended = v.boolean(("reload", "p0_drop_intended"), f.get("p0_drop_intended", False))
        return ReloadSettings(max_p0_drop_ratio=0.25 if ratio is None else ratio, p0_drop_intended=bool(intended))

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

    def _include(self, v: Validator, raw: Any, base: str, key: str = "targets_files") -> tuple[list[str], list[str]]:
        if raw is None:
            return [], []
        items = v.seq((key,), raw)
        files: list[str] = []
        patterns: list[str] = []
        for i, pattern in enumerate(items or []):
            pattern = v.string((key, i), pattern)
            if pattern:
                full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
                patterns.append(os.path.abspath(full))
                matches = sorted(glob.glob(full))
                if not matches and not glob.has_magic(pattern):
                    v.error((key, i), f"file not found: {full}")
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

    def _sd_file(self, path: str, tiers: dict[str, Tier],
                 profiles: dict[str, dict[str, Any]]) -> list[tuple[Target, str, str]]:
        """A Prometheus file_sd file (JSON or YAML): a list of {targets, labels} groups."""
        doc = self._document(path)
        if doc is None:
            return []
        v = Validator(doc)
        targets = sd_targets(v, doc.data, tiers, profiles, self.kinds)
        self.errors.extend(v.errors)
        return targets

    def _http_sources(self, v: Validator, raw: Any, tiers: dict[str, Tier]) -> tuple[HttpSdSource, ...]:
        out: list[HttpSdSource] = []
        for i, item in enumerate((v.seq(("targets_http",), raw) if raw is not None else None) or []):
            source = _parse_http_source(v, ("targets_http", i), item, tiers)
            if source is not None:
                if any(s.url == source.url for s in out):
                    v.error(("targets_http", i, "url"), f"{source.url!r} is listed twice")
                else:
                    out.append(source)
        return tuple(out)

    def _cache_dir(self, v: Validator, raw: Any, path: str) -> str:
        name = ".lifeline-sd-cache" if raw is None else v.string(("sd_cache_dir",), raw, max_len=4096)
        if name is None:
            return ""
        return os.path.abspath(name if os.path.isabs(name) else os.path.join(os.path.dirname(path), name))

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
                if item.get("depends_on") is not None:
                    self.depends[target.name] = topology.parse_names(v, path + (i, "depends_on"), item["depends_on"])
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


def sd_targets(v: Validator, raw: Any, tiers: Mapping[str, Tier], profiles: Mapping[str, Any],
               kinds: Mapping[str, ProbeKind], default_tier: str | None = None) -> list[tuple[Target, str, str]]:
    """Targets of a Prometheus SD list (file_sd or http_sd): ``[{"targets": [...], "labels": {...}}]``.

    Each address is one target; ``tier``, ``category``, ``site``, ``probes`` (comma-separated) and
    ``name`` come from the group's labels, other labels without a ``__`` prefix become target labels.
    """
    if raw is None:
        return []
    out: list[tuple[Target, str, str]] = []
    for i, group in enumerate(v.seq((), raw) or []):
        f = v.mapping((i,), group, ("targets", "labels"), required=("targets",))
        if f is None or "targets" not in f:
            continue
        before = len(v.errors)
        addresses = v.seq((i, "targets"), f["targets"]) or []
        labels = f.get("labels") or {}
        if not isinstance(labels, dict):
            v.error((i, "labels"), "must be a mapping of label name to value")
            continue
        for key, value in labels.items():
            if not isinstance(value, str):
                v.error((i, "labels", key), f"label values are strings (got {value!r})")
        tier = labels.get("tier", default_tier)
        if tier is None:
            v.error((i, "labels"), "no 'tier' label, and the source has no default_tier")
        elif tier not in tiers:
            v.error((i, "labels", "tier"), f"unknown tier {tier!r}; defined tiers: {', '.join(sorted(tiers))}")
        category = v.label_value((i, "labels", "category"), labels.get("category", "unspecified"))
        site = v.label_value((i, "labels", "site"), labels.get("site", "unspecified"))
        probe_text = labels.get("probes", "icmp")
        probes = _parse_probe_list(v, (i, "labels", "probes"),
                                   [p.strip() for p in str(probe_text).split(",") if p.strip()], kinds)
        extra = {k: val for k, val in labels.items() if not str(k).startswith("__") and k not in SD_KEY_LABELS}
        display = labels.get("name")
        label_items = _parse_labels(v, (i, "labels"), extra)
        if len(v.errors) != before:
            continue
        for j, raw_address in enumerate(addresses):
            tpath = (i, "targets", j)
            mark = len(v.errors)
            address = v.address(tpath, raw_address)
            if address is None:
                continue
            name = _sd_name(display if isinstance(display, str) else None, site, address, len(addresses))
            name = v.string(tpath, name, pattern=NAME_RE, max_len=128, what="cannot make a target name")
            own = label_items
            if isinstance(display, str) and display != name and "display_name" not in extra:
                own = tuple(sorted((*label_items, ("display_name", display))))
            settings = []
            for kind in kinds.values():
                if kind.settings_key and kind.name in probes:
                    parsed = kind.parse_settings(v, None, tpath, profiles.get(kind.name, {}), tiers[tier], address)
                    if parsed is not None:
                        settings.append((kind.name, parsed))
            if len(v.errors) == mark and name is not None:
                out.append((Target(name=name, address=address, tier=tier, category=category, site=site,
                                   labels=own, probes=probes, settings=tuple(settings), source=v.where(tpath)),
                            v.where(tpath), format_path(tpath)))
    return out


def _sd_name(name: str | None, site: str | None, address: str, count: int) -> str:
    """``name`` for a one-target group, else ``<name or site>-<address>``, made safe for a target name."""
    if name and count == 1:
        text = name
    else:
        prefix = name or (site if site and site != "unspecified" else "")
        text = f"{prefix}-{address}" if prefix else address
    return _UNSAFE_NAME_RE.sub("-", text).strip("-._:@/")[:128] or address


def _parse_http_source(v: Validator, path: Path, raw: Any, tiers: Mapping[str, Tier]) -> HttpSdSource | None:
    f = v.mapping(path, raw, HTTP_SD_KEYS, required=("url",))
    if f is None or "url" not in f:
        return None
    before = len(v.errors)
    url = v.string(path + ("url",), f["url"], pattern=re.compile(r"https?://[^/@\s]+(/\S*)?"), max_len=2048,
                   what="an http:// or https:// URL, without user:password@ (use basic_auth)")
    out: dict[str, Any] = {}
    for key, lo in (("refresh_interval", 0.1), ("timeout", 0.01)):
        if key in f:
            out[key] = v.duration(path + (key,), f[key], lo=lo)
    if "default_tier" in f:
        tier = f["default_tier"]
        if not isinstance(tier, str) or tier not in tiers:
            v.error(path + ("default_tier",), f"unknown tier {tier!r}; defined tiers: {', '.join(sorted(tiers))}")
        out["default_tier"] = tier
    if "max_body_bytes" in f:
        out["max_body_bytes"] = v.integer(path + ("max_body_bytes",), f["max_body_bytes"], lo=1, hi=1 << 30)
    if "basic_auth" in f:
        auth = v.mapping(path + ("basic_auth",), f["basic_auth"], ("username", "password_env", "password_file"),
                         required=("username",))
        if auth is not None:
            out["username"] = v.string(path + ("basic_auth", "username"), auth.get("username"))
            keys = [k for k in ("password_env", "password_file") if k in auth]
            if len(keys) != 1:
                v.error(path + ("basic_auth",), "needs exactly one of password_env, password_file")
            else:
                out["password"] = load_secret(v, path + ("basic_auth", keys[0]), keys[0], auth[keys[0]])
    tokens = [k for k in ("bearer_token_env", "bearer_token_file") if k in f]
    if len(tokens) > 1 or (tokens and "basic_auth" in f):
        v.error(path, "use one of basic_auth, bearer_token_env, bearer_token_file")
    elif tokens:
        out["bearer_token"] = load_secret(v, path + (tokens[0],), tokens[0], f[tokens[0]])
    if "tls" in f:
        out["tls"] = parse_tls(v, path + ("tls",), f["tls"])
    if out.get("timeout") is None and out.get("refresh_interval"):
        out["timeout"] = min(HttpSdSource.timeout, out["refresh_interval"])  # a fetch ends before the next
    source = HttpSdSource(url=url or "", where=v.where(path), **{k: x for k, x in out.items() if x is not None})
    if len(v.errors) == before and source.timeout > source.refresh_interval:
        v.error(path + ("timeout",), "must not be longer than refresh_interval")
    return source if len(v.errors) == before else None
