"""TLS for the service kinds: the ``tls:`` block, client contexts, and what the whole chain shows.

The expiry exported is the earliest not-after among **every** certificate the
server presented, not only the leaf: an intermediate that expires first takes
a portal down just as surely, and blackbox_exporter users have been caught by
an expiry metric that looked at one chain only.

Python 3.11 has no public API for the presented chain; ``SSLObject`` exposes
it from 3.13 (``get_unverified_chain``) and the C object behind it has had the
method since 3.10, which is what we use on older versions.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from dataclasses import dataclass
from typing import Any

from common.validate import Validator
from common.yamlsrc import Path
from probes.base import REASON_CERT_EXPIRED, REASON_TLS, TlsInfo

TLS_KEYS = ("ca_file", "server_name", "cert_file", "key_file", "insecure_skip_verify")
X509_V_ERR_CERT_HAS_EXPIRED = 10  # OpenSSL's verify code for a certificate past its not-after
_DER = 2  # _ssl.ENCODING_DER


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: str | None = None  # None: the system's trust store
    server_name: str | None = None  # SNI and the name verified; None: the URL's host
    cert_file: str | None = None  # client certificate, for servers that ask for one
    key_file: str | None = None
    insecure_skip_verify: bool = False


def parse_tls(v: Validator, path: Path, raw: Any) -> TlsOptions | None:
    """The ``tls:`` block; files must exist and be readable at load, not at the first handshake."""
    if raw is None:
        return TlsOptions()
    f = v.mapping(path, raw, TLS_KEYS)
    if f is None:
        return None
    before = len(v.errors)
    out: dict[str, Any] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        if key in f:
            name = v.string(path + (key,), f[key])
            if name is not None and not os.access(name, os.R_OK):
                v.error(path + (key,), f"cannot read {name!r}")
            out[key] = name
    if "server_name" in f:
        out["server_name"] = v.string(path + ("server_name",), f["server_name"])
    if "insecure_skip_verify" in f:
        skip = v.boolean(path + ("insecure_skip_verify",), f["insecure_skip_verify"])
        if skip is not None:
            out["insecure_skip_verify"] = skip
    if ("cert_file" in f) != ("key_file" in f):
        v.error(path, "cert_file and key_file go together")
    if len(v.errors) != before:
        return None
    options = TlsOptions(**out)
    try:
        client_context(options)  # a CA file that is not PEM, a key that does not match ...
    except (ssl.SSLError, OSError) as exc:
        v.error(path, f"cannot build a TLS context: {exc}")
        return None
    return options


def client_context(options: TlsOptions) -> ssl.SSLContext:
    """A context per distinct options (callers cache it): building one reads the CA files."""
    ctx = ssl.create_default_context(cafile=options.ca_file)
    if options.cert_file:
        ctx.load_cert_chain(options.cert_file, options.key_file)
    if options.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def failure_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code == X509_V_ERR_CERT_HAS_EXPIRED:
        return REASON_CERT_EXPIRED
    return REASON_TLS


class TlsClient:
    """What a kind needs to speak TLS: one context per distinct ``tls:`` options (building one reads
    the CA files, so it is done once, not per cycle) and the chain reader."""

    def __init__(self) -> None:
        self.chains = ChainReader()
        self._contexts: dict[TlsOptions, ssl.SSLContext] = {}

    def context(self, options: TlsOptions) -> ssl.SSLContext:
        ctx = self._contexts.get(options)
        if ctx is None:
            ctx = self._contexts[options] = client_context(options)
        return ctx


class ChainReader:
    """TlsInfo of a handshake's presented chain, parsed once per distinct chain."""

    def __init__(self, limit: int = 4096) -> None:
        self._seen: dict[bytes, TlsInfo] = {}
        self._limit = limit

    def info(self, ssl_object: Any) -> TlsInfo | None:
        chain = _presented_chain(ssl_object)
        if not chain:
            return None
        ders = [c.public_bytes(_DER) for c in chain]
        key = hashlib.sha256(b"".join(ders)).digest()
        hit = self._seen.get(key)
        if hit is None:
            hit = _parse(ders)
            if len(self._seen) >= self._limit:  # chains rotate; old ones must not pile up
                self._seen.clear()
            self._seen[key] = hit
        return hit


def _presented_chain(ssl_object: Any) -> list[Any]:
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    return list(getter() or []) if getter is not None else []


def _parse(ders: list[bytes]) -> TlsInfo:
    from cryptography import x509

    certs = [x509.load_der_x509_certificate(d) for d in ders]
    leaf = certs[0]
    return TlsInfo(not_after=min(c.not_valid_after_utc.timestamp() for c in certs),
                   subject=leaf.subject.rfc4514_string(), issuer=leaf.issuer.rfc4514_string(),
                   serial=format(leaf.serial_number, "x"))
