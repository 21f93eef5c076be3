"""The ``http:`` block of a target, checked completely at load.

    http:
      url: https://portal.gov.example/health   # its host is the Host header and the TLS name
      valid_status_codes: [200]                # default: any 2xx
      body_regex: '"status":\\s*"ok"'
      headers: {X-Probe: lifeline}
      follow_redirects: true                   # default; at most 10 hops
      ip_protocol: ip4                         # preference when the name has both families
      body_limit: 1MiB
      tls: {ca_file: /etc/lifeline/ca.pem}    # also used by a redirect from http:// to https://

The connection goes to the target's ``address``; a redirect to another host
resolves that host.
"""

from __future__ import annotations

import re
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from common.model import Tier
from common.validate import Validator, address_problem
from common.yamlsrc import Path
from probes.service import TIMING_KEYS, Timing, parse_regex, parse_status_codes, parse_timing
from probes.tls import TlsOptions, parse_tls

KEYS = ("url", "method", "valid_status_codes", "body_regex", "headers", "follow_redirects", "tls", "ip_protocol",
        "body_limit", *TIMING_KEYS)
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")
IP_PROTOCOLS = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}
MAX_REDIRECTS = 10  # what Go's client (so blackbox_exporter) and browsers allow
DEFAULT_BODY_LIMIT = 1 << 20
MAX_BODY_LIMIT = 64 << 20
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
_SIZE_RE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB)?")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2}
_MANAGED = {"host", "content-length", "transfer-encoding", "connection"}  # the client writes these itself


@dataclass(frozen=True, slots=True)
class Header:
    """A request header; its value may be a credential (Authorization), so it never shows in a repr."""

    name: str
    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    url: str
    scheme: str  # "http" or "https"
    host: str  # the URL's host, without brackets
    port: int
    target: str  # path and query, as sent on the request line
    method: str = "GET"
    valid_status: frozenset[int] | None = None  # None: any 2xx
    body_regex: re.Pattern[str] | None = None
    headers: tuple[Header, ...] = ()
    follow_redirects: bool = True
    tls: TlsOptions | None = None  # None: the system trust store, no client certificate
    family: int = 0  # address-family preference; 0: the resolver's first answer
    body_limit: int = DEFAULT_BODY_LIMIT
    timing: Timing = Timing()

    def status_ok(self, status: int) -> bool:
        return status in self.valid_status if self.valid_status is not None else 200 <= status <= 299


@dataclass(frozen=True, slots=True)
class Url:
    scheme: str
    host: str
    port: int
    target: str


def split_url(text: str) -> Url | str:
    """The parts of an absolute http(s) URL, or why it is not one."""
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    host = parts.hostname
    if not host:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials; send them with headers: {Authorization: ...}"
    if any(c in text for c in " \r\n\t"):
        return "must not contain spaces or line breaks (percent-encode them)"
    if address_problem(host):
        return f"host {host!r} is not a valid IP address or host name"
    if port == 0:
        return "port 0 is not a port"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Url(parts.scheme, host, port if port is not None else (443 if parts.scheme == "https" else 80), target)


def parse_size(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    match = _SIZE_RE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)] if match else None


def parse_settings(v: Validator, raw: Any, path: Path, tier: Tier | None) -> HttpSettings | None:
    if raw is None:
        v.error(path, "the http probe needs a block with at least 'url', e.g. http: {url: \"https://host/health\"}")
        return None
    f = v.mapping(path, raw, KEYS, required=("url",))
    if f is None:
        return None
    before = len(v.errors)
    url = None
    if "url" in f:
        text = v.string(path + ("url",), f["url"], max_len=2048)
        if text is not None:
            url = split_url(text)
            if isinstance(url, str):
                v.error(path + ("url",), f"{url} (got {text!r})")
                url = None
    out: dict[str, Any] = {"timing": parse_timing(v, path, f, tier)}
    if "method" in f:
        out["method"] = v.choice(path + ("method",), f["method"], METHODS)
    if "valid_status_codes" in f:
        codes = parse_status_codes(v, path + ("valid_status_codes",), f["valid_status_codes"])
        out["valid_status"] = frozenset(codes) if codes is not None else None
    if "body_regex" in f:
        out["body_regex"] = parse_regex(v, path + ("body_regex",), f["body_regex"])
    if "headers" in f:
        out["headers"] = parse_headers(v, path + ("headers",), f["headers"])
    if "follow_redirects" in f:
        follow = v.boolean(path + ("follow_redirects",), f["follow_redirects"])
        if follow is not None:
            out["follow_redirects"] = follow
    if "ip_protocol" in f:
        choice = v.choice(path + ("ip_protocol",), f["ip_protocol"], IP_PROTOCOLS)
        out["family"] = IP_PROTOCOLS.get(choice, 0)
    if "body_limit" in f:
        size = parse_size(f["body_limit"])
        if size is None or not 1 <= size <= MAX_BODY_LIMIT:
            v.error(path + ("body_limit",), f'must be a size from 1 byte to 64MiB such as 65536, "64KiB" or "1MiB" '
                                            f"(got {f['body_limit']!r})")
        out["body_limit"] = size
    if "tls" in f:  # on an http:// URL it serves a redirect to https
        out["tls"] = parse_tls(v, path + ("tls",), f["tls"])
    if len(v.errors) != before or url is None:
        return None
    return HttpSettings(f["url"], url.scheme, url.host, url.port, url.target, **out)


def parse_headers(v: Validator, path: Path, raw: Any) -> tuple[Header, ...]:
    if not isinstance(raw, dict):
        v.error(path, "must be a mapping of header name to value")
        return ()
    out = []
    for name, value in raw.items():
        hpath = path + (name,)
        if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
            v.error(hpath, "not a valid header name")
        elif name.lower() in _MANAGED:
            v.error(hpath, "set by the probe itself (Host comes from the URL)")
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            v.error(hpath, "must be a string")
        elif any(c in str(value) for c in "\r\n\0") or len(str(value)) > 4096:
            v.error(hpath, "must be one line of at most 4096 characters")  # the value itself is never shown
        else:
            out.append(Header(name, str(value)))
    return tuple(out)
