"""TLS and basic auth for the HTTP endpoints, in the Prometheus exporter-toolkit format.

The same ``--web.config.file`` an operator writes for node_exporter or
blackbox_exporter works here: ``tls_server_config`` (cert_file, key_file,
client_auth_type, client_ca_file, min_version, max_version),
``http_server_config.headers`` and ``basic_auth_users`` with bcrypt hashes.
Toolkit keys Lifeline does not implement are rejected by name rather than
silently ignored: a security setting that is quietly dropped is worse than an
error.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

import bcrypt

from common.errors import ConfigInvalid
from common.validate import ConfigError, Validator
from common.yamlsrc import SourceError
from common.yamlsrc import load as load_yaml

_BCRYPT_RE = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_UNSUPPORTED = {"cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans"}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Verified against when the user is unknown, so a wrong user name costs as much as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"lifeline-dummy", bcrypt.gensalt(rounds=10))


@dataclass
class WebConfig:
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)
    _verified: dict[bytes, bool] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __repr__(self) -> str:  # never print hashes
        return f"WebConfig(tls={self.tls is not None}, users={sorted(self.users)}, headers={sorted(self.headers)})"

    def authorized(self, header: str | None) -> bool:
        """Check an Authorization header; True when no users are configured."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        # bcrypt costs ~50 ms by design; remember successful checks (keyed by a digest, never the
        # password itself) so that a Prometheus scraping every few seconds does not pay it each time.
        key = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed or b""])).digest()
        with self._lock:
            if self._verified.get(key):
                return True
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH) and hashed is not None
        if ok:
            with self._lock:
                if len(self._verified) > 1000:
                    self._verified.clear()
                self._verified[key] = True
        return ok


def load(path: str) -> WebConfig:
    """Read and validate a web config file; raise ConfigInvalid with FILE:LINE errors."""
    try:
        doc = load_yaml(path)
    except SourceError as exc:
        raise ConfigInvalid([ConfigError(path, exc.line, "(file)", exc.message)]) from None
    v = Validator(doc)
    web = WebConfig()
    top = v.mapping((), doc.data if doc.data is not None else {},
                    ("tls_server_config", "http_server_config", "basic_auth_users"))
    if top:
        if "basic_auth_users" in top:
            web.users = _users(v, top["basic_auth_users"])
        if "http_server_config" in top:
            web.headers = _headers(v, top["http_server_config"])
        if "tls_server_config" in top:
            web.tls = _tls(v, top["tls_server_config"], os.path.dirname(path))
    if v.errors:
        raise ConfigInvalid(sorted(v.errors, key=lambda e: e.line))
    return web


def _users(v: Validator, raw: Any) -> dict[str, bytes]:
    if not isinstance(raw, dict):
        v.error(("basic_auth_users",), "must be a mapping of user name to bcrypt hash")
        return {}
    users = {}
    for user, hashed in raw.items():
        path = ("basic_auth_users", user)
        if not isinstance(user, str) or not user or ":" in user:
            v.error(path, "user names are non-empty strings without ':'")
        elif not isinstance(hashed, str) or not _BCRYPT_RE.fullmatch(hashed):
            # Do not echo the value: it may be a plain-text password pasted by mistake.
            v.error(path, "must be a bcrypt hash ($2a$/$2b$/$2y$, 60 characters); "
                          "create one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'")
        else:
            users[user] = hashed.encode()
    return users


def _headers(v: Validator, raw: Any) -> dict[str, str]:
    f = v.mapping(("http_server_config",), raw, ("headers", "http2"))
    if not f:
        return {}
    if "http2" in f:
        v.error(("http_server_config", "http2"), "not supported by lifeline (it serves HTTP/1.1 only)")
    headers = f.get("headers") or {}
    if not isinstance(headers, dict):
        v.error(("http_server_config", "headers"), "must be a mapping of header name to value")
        return {}
    out = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9-]+", name) or not isinstance(value, str) \
                or "\n" in value or "\r" in value:
            v.error(("http_server_config", "headers", name), "header names are letters, digits and '-', "
                                                            "values single-line strings")
        else:
            out[name] = value
    return out


def _tls(v: Validator, raw: Any, base: str) -> ssl.SSLContext | None:
    path = ("tls_server_config",)
    keys = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
            *_UNSUPPORTED)
    f = v.mapping(path, raw, keys, required=("cert_file", "key_file"))
    if f is None:
        return None
    for key in _UNSUPPORTED & set(f):
        v.error(path + (key,), "not supported by lifeline; remove it (Python's TLS defaults apply)")
    auth = v.choice(path + ("client_auth_type",), f.get("client_auth_type", "NoClientCert"), _CLIENT_AUTH)
    versions = {k: v.choice(path + (k,), f[k], _VERSIONS) for k in ("min_version", "max_version") if k in f}
    if "cert_file" not in f or "key_file" not in f or auth is None or None in versions.values():
        return None
    files = {k: os.path.join(base, str(f[k])) for k in ("cert_file", "key_file", "client_ca_file") if k in f}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[versions.get("min_version", "TLS12")]
    if "max_version" in versions:
        ctx.maximum_version = _VERSIONS[versions["max_version"]]
    try:
        ctx.load_cert_chain(files["cert_file"], files["key_file"])
    except (OSError, ssl.SSLError) as exc:
        v.error(path + ("cert_file",), f"cannot load certificate and key: {getattr(exc, 'strerror', None) or exc}")
        return None
    ctx.verify_mode = _CLIENT_AUTH[auth]
    if ctx.verify_mode != ssl.CERT_NONE:
        if "client_ca_file" not in files:
            v.error(path + ("client_auth_type",), f"{auth} needs client_ca_file")
            return None
        try:
            ctx.load_verify_locations(files["client_ca_file"])
        except (OSError, ssl.SSLError) as exc:
            v.error(path + ("client_ca_file",), f"cannot load CA file: {getattr(exc, 'strerror', None) or exc}")
            return None
    return ctx
