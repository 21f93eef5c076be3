"""SNMP settings: the per-target ``snmp:`` section and shared ``snmp_profiles:``.

Everything is checked at load, including that secrets resolve (an unset
environment variable or unreadable file is a config error, not a poll-time
surprise). Secrets are wrapped in ``Secret`` so that no repr, str or error
message can show them.

    snmp_profiles:
      core: {version: 2c, community_env: LIFELINE_SNMP_COMMUNITY}
    targets:
      - name: r1
        snmp: {profile: core, interfaces: ["Gi0/0/1", {alias: "~ ^MSTP-"}, 3]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.secrets import Secret, load_secret
from common.validate import Validator
from common.yamlsrc import Path

VERSIONS = ("1", "2c", "3")
# Names as Net-SNMP's -a/-x spell them (plus the C variants); the protocols themselves are in usm.py,
# which is not imported here: it loads `cryptography` (megabytes), and configs without v3 never need it.
# tests/snmp/test_snmp_v3.py checks these names are usm.py's.
AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("DES", "3DES", "AES", "AES128", "AES192", "AES256", "AES192C", "AES256C")
SECRETS = ("community", "auth_key", "priv_key")
SECRET_KEYS = tuple(f"{s}{suffix}" for s in SECRETS for suffix in ("", "_env", "_file"))
PLAIN_KEYS = ("version", "port", "user", "auth_protocol", "priv_protocol", "interfaces", "oids")
PROFILE_KEYS = PLAIN_KEYS + SECRET_KEYS
TARGET_KEYS = PROFILE_KEYS + ("profile",)
V3_ONLY = ("user", "auth_protocol", "priv_protocol", "auth_key", "priv_key")
INTERFACE_FIELDS = ("index", "name", "ifname", "descr", "alias")
_OID_RE = re.compile(r"\.?([0-2])((?:\.\d{1,10})+)")
_OID_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
_PROFILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_USM_KEY = 8  # RFC 3414 pass phrases; Net-SNMP refuses shorter ones too


@dataclass(frozen=True, slots=True)
class InterfaceSelector:
    """One entry of ``interfaces:``; an interface is polled if any selector matches."""

    field: str  # one of INTERFACE_FIELDS; "name" matches ifName or ifDescr
    value: int | str
    pattern: re.Pattern[str] | None = None

    def matches(self, ifindex: int, ifname: str, ifdescr: str, ifalias: str) -> bool:
        if self.field == "index":
            return ifindex == self.value
        texts = {"name": (ifname, ifdescr), "ifname": (ifname,), "descr": (ifdescr,),
                 "alias": (ifalias,)}[self.field]
        if self.pattern is not None:
            return any(self.pattern.search(t) for t in texts)
        return self.value in texts


@dataclass(frozen=True, slots=True)
class ExtraOid:
    name: str
    oid: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SnmpSettings:
    version: str = "2c"
    port: int = 161
    community: Secret | None = None
    user: str | None = None
    auth_protocol: str | None = None
    auth_key: Secret | None = None
    priv_protocol: str | None = None
    priv_key: Secret | None = None
    interfaces: tuple[InterfaceSelector, ...] = ()  # empty: every interface
    oids: tuple[ExtraOid, ...] = ()
    profile: str | None = None

    @property
    def security_level(self) -> str:
        if self.priv_key is not None:
            return "authPriv"
        return "authNoPriv" if self.auth_key is not None else "noAuthNoPriv"

    def selects(self, ifindex: int, ifname: str, ifdescr: str, ifalias: str) -> bool:
        return not self.interfaces or any(s.matches(ifindex, ifname, ifdescr, ifalias)
                                          for s in self.interfaces)


# --- parsing -----------------------------------------------------------------

def parse_profiles(v: Validator, raw: Any, path: Path) -> dict[str, dict[str, Any]]:
    """``snmp_profiles:`` -> {name: partially parsed fields}; cross-field checks wait for the target."""
    if not isinstance(raw, dict):
        v.error(path, f"must be a mapping of profile name to SNMP settings (got {type(raw).__name__})")
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, body in raw.items():
        ppath = path + (name,)
        if not isinstance(name, str) or not _PROFILE_NAME_RE.fullmatch(name):
            v.error(ppath, f"profile names use letters, digits and ._- (got {name!r})")
            continue
        f = v.mapping(ppath, {} if body is None else body, PROFILE_KEYS)
        if f is not None:
            out[name] = _fields(v, ppath, f)
    return out


def parse_settings(v: Validator, raw: Any, path: Path,
                   profiles: dict[str, dict[str, Any]]) -> SnmpSettings | None:
    """A target's ``snmp:`` section, merged over its profile; None after recording errors."""
    before = len(v.errors)
    if raw is None:
        if "default" not in profiles:
            v.error(path, "'snmp' is listed in probes but the target has no 'snmp' settings "
                          "and there is no snmp_profiles.default")
            return None
        raw = {"profile": "default"}
    f = v.mapping(path, raw, TARGET_KEYS)
    if f is None:
        return None
    own = _fields(v, path, f)
    base: dict[str, Any] = {}
    # No profile named: snmp_profiles.default (when defined) is the base, so a target that
    # only overrides its port still inherits the credentials.
    profile = f.get("profile", "default" if "default" in profiles else None)
    if profile is not None:
        if not isinstance(profile, str) or profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none are defined under snmp_profiles"
            v.error(path + ("profile",), f"unknown profile {profile!r}; defined profiles: {known}")
            return None
        base = profiles[profile]
    if len(v.errors) != before:
        return None
    merged = {**base, **own}
    return _build(v, path, merged, profile)


def _fields(v: Validator, path: Path, f: dict[str, Any]) -> dict[str, Any]:
    """Check each key on its own; returns only the keys that were valid."""
    out: dict[str, Any] = {}
    if "version" in f:
        raw = f["version"]
        version = v.choice(path + ("version",), str(raw) if isinstance(raw, int) and not isinstance(raw, bool)
                           else raw, VERSIONS)
        if version is not None:
            out["version"] = version
    if "port" in f:
        port = v.integer(path + ("port",), f["port"], lo=1, hi=65535)
        if port is not None:
            out["port"] = port
    if "user" in f:
        user = v.string(path + ("user",), f["user"], max_len=32)
        if user is not None:
            out["user"] = user
    for key, table in (("auth_protocol", AUTH_PROTOCOLS), ("priv_protocol", PRIV_PROTOCOLS)):
        if key in f:
            raw = f[key]
            name = raw.upper() if isinstance(raw, str) else raw
            if v.choice(path + (key,), name, table) is not None:
                out[key] = name
    for secret in SECRETS:
        given = [k for k in (secret, f"{secret}_env", f"{secret}_file") if k in f]
        if len(given) > 1:
            v.error(path + (given[1],), f"set only one of {', '.join(given)}")
        elif given:
            value = load_secret(v, path + (given[0],), given[0], f[given[0]])
            if value is not None:
                out[secret] = value
    if "interfaces" in f:
        selectors = _interfaces(v, path + ("interfaces",), f["interfaces"])
        if selectors is not None:
            out["interfaces"] = selectors
    if "oids" in f:
        oids = _oids(v, path + ("oids",), f["oids"])
        if oids is not None:
            out["oids"] = oids
    return out


def _interfaces(v: Validator, path: Path, raw: Any) -> tuple[InterfaceSelector, ...] | None:
    items = v.seq(path, raw)
    if items is None:
        return None
    out = []
    ok = True
    for i, item in enumerate(items):
        ipath = path + (i,)
        if isinstance(item, bool):
            v.error(ipath, "must be an interface name, an ifIndex or a mapping like {alias: \"~ regex\"}")
            ok = False
        elif isinstance(item, int):
            if v.integer(ipath, item, lo=1, hi=2**31 - 1) is None:
                ok = False
            else:
                out.append(InterfaceSelector("index", item))
        elif isinstance(item, str):
            sel = _selector(v, ipath, "name", item)
            if sel is None:
                ok = False
            else:
                out.append(sel)
        elif isinstance(item, dict):
            if len(item) != 1:
                v.error(ipath, f"use exactly one of {', '.join(INTERFACE_FIELDS)} per entry")
                ok = False
                continue
            (key, value), = item.items()
            if key not in INTERFACE_FIELDS:
                v.error(ipath + (key,), f"unknown interface field; use one of {', '.join(INTERFACE_FIELDS)}")
                ok = False
                continue
            if key == "index":
                index = v.integer(ipath + (key,), value, lo=1, hi=2**31 - 1)
                sel = InterfaceSelector("index", index) if index is not None else None
            else:
                sel = _selector(v, ipath + (key,), key, value)
            if sel is None:
                ok = False
            else:
                out.append(sel)
        else:
            v.error(ipath, "must be an interface name, an ifIndex or a mapping like {alias: \"~ regex\"}")
            ok = False
    return tuple(out) if ok else None


def _selector(v: Validator, path: Path, key: str, raw: Any) -> InterfaceSelector | None:
    text = v.string(path, raw, max_len=1024)
    if text is None:
        return None
    if not text.startswith("~"):
        return InterfaceSelector(key, text)
    expr = text[1:].strip()
    try:
        return InterfaceSelector(key, text, re.compile(expr))
    except re.error as exc:
        v.error(path, f"bad regular expression {expr!r}: {exc.msg} at position {exc.pos}")
        return None


def parse_oid(text: Any) -> tuple[int, ...] | None:
    """Dotted numeric OID -> tuple, or None if it is not one (MIB names are not resolved)."""
    if not isinstance(text, str):
        return None
    m = _OID_RE.fullmatch(text.strip())
    if not m:
        return None
    arcs = (int(m.group(1)),) + tuple(int(a) for a in m.group(2)[1:].split("."))
    if any(a >= 2**32 for a in arcs) or (arcs[0] < 2 and arcs[1] >= 40):
        return None
    return arcs


def _oids(v: Validator, path: Path, raw: Any) -> tuple[ExtraOid, ...] | None:
    items = v.seq(path, raw)
    if items is None:
        return None
    out: list[ExtraOid] = []
    seen: dict[str, int] = {}
    ok = True
    for i, item in enumerate(items):
        ipath = path + (i,)
        f = v.mapping(ipath, item, ("name", "oid"), required=("name", "oid"))
        if f is None or "name" not in f or "oid" not in f:
            ok = False
            continue
        name = v.string(ipath + ("name",), f["name"], pattern=_OID_NAME_RE, max_len=64,
                        what="names use letters, digits and '_' and do not start with a digit")
        oid = parse_oid(f["oid"])
        if oid is None:
            v.error(ipath + ("oid",), f"must be a dotted numeric OID such as \"1.3.6.1.2.1.1.3.0\" "
                                      f"in quotes (got {f['oid']!r})")
        if name is not None and name in seen:
            v.error(ipath + ("name",), f"duplicate OID name {name!r} (first is oids[{seen[name]}])")
        elif name is not None:
            seen[name] = i
            if oid is not None:
                out.append(ExtraOid(name, oid))
                continue
        ok = False
    return tuple(out) if ok else None


def _build(v: Validator, path: Path, f: dict[str, Any], profile: str | None) -> SnmpSettings | None:
    version = f.get("version", "2c")
    where = f" (in the target or profile {profile!r})" if profile else ""
    before = len(v.errors)
    if version in ("1", "2c"):
        if "community" not in f:
            v.error(path, f"SNMP v{version} needs a community: set community_env, community_file "
                          f"or community{where}")
        extra = [k for k in V3_ONLY if k in f]
        if extra:
            v.error(path, f"{', '.join(extra)} only apply to version 3 (version is {version})")
    else:
        if "community" in f:
            v.error(path, "community does not apply to version 3; use user and keys")
        if "user" not in f:
            v.error(path, f"SNMP v3 needs a user{where}")
        for kind in ("auth", "priv"):
            has_key, has_proto = f"{kind}_key" in f, f"{kind}_protocol" in f
            if has_key and not has_proto:
                v.error(path, f"{kind}_protocol is required when an {kind} key is set")
            if has_proto and not has_key:
                v.error(path, f"{kind}_protocol is set but no {kind} key: set {kind}_key_env, "
                              f"{kind}_key_file or {kind}_key")
            if has_key and len(f[f"{kind}_key"].value) < MIN_USM_KEY:
                v.error(path, f"{kind} key ({f[f'{kind}_key'].source}) is shorter than "
                              f"{MIN_USM_KEY} characters")
        if "priv_key" in f and "auth_key" not in f:
            v.error(path, "privacy (priv_key) needs authentication too (auth_protocol and auth_key)")
    if len(v.errors) != before:
        return None
    return SnmpSettings(version=version, port=f.get("port", 161), community=f.get("community"),
                        user=f.get("user"), auth_protocol=f.get("auth_protocol"),
                        auth_key=f.get("auth_key"), priv_protocol=f.get("priv_protocol"),
                        priv_key=f.get("priv_key"), interfaces=f.get("interfaces", ()),
                        oids=f.get("oids", ()), profile=profile)
