"""The per-target ``sip:`` block.

    targets:
      - name: sbc-1
        address: sbc1.example.net
        probes: [sip]
        sip: {transport: tcp, to_user: ping, valid_status_codes: [200, 404]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.model import Tier
from common.validate import Validator
from common.yamlsrc import Path
from probes.service import TIMING_KEYS, Timing, parse_port, parse_timing
from probes.tls import TlsOptions, parse_tls

TRANSPORTS = ("udp", "tcp", "tls")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
KEYS = ("port", "transport", "valid_status_codes", "from_user", "to_user", "from_domain", "tls", *TIMING_KEYS)
# RFC 3261 user part: unreserved, escaped and user-unreserved characters; never '@', ':', '<', '>' or space,
# which would change the meaning of the URI once it is written into the request.
_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2}")


@dataclass(frozen=True, slots=True)
class SipSettings:
    port: int = 5060
    transport: str = "udp"
    valid_status_codes: tuple[int, ...] = ()  # empty: any 2xx
    from_user: str = "lifeline"
    to_user: str = ""  # empty: the request URI has no user part (sip:ADDRESS:PORT)
    from_domain: str = ""  # empty: the probe's own address
    tls: TlsOptions | None = None  # set when transport is tls
    timing: Timing = Timing()

    def accepts(self, status: int) -> bool:
        if self.valid_status_codes:
            return status in self.valid_status_codes
        return 200 <= status < 300


def parse_settings(v: Validator, raw: Any, path: Path, tier: Tier | None) -> SipSettings | None:
    f = v.mapping(path, {} if raw is None else raw, KEYS)
    if f is None:
        return None
    before = len(v.errors)
    out: dict[str, Any] = {"timing": parse_timing(v, path, f, tier)}
    transport = v.choice(path + ("transport",), f["transport"], TRANSPORTS) if "transport" in f else "udp"
    if transport is not None:
        out["transport"] = transport
        out["port"] = DEFAULT_PORTS[transport]
    if "port" in f:
        out["port"] = parse_port(v, path + ("port",), f["port"])
    if "valid_status_codes" in f:
        out["valid_status_codes"] = _status_codes(v, path + ("valid_status_codes",), f["valid_status_codes"])
    if "from_user" in f:
        out["from_user"] = _user(v, path + ("from_user",), f["from_user"])
    if "to_user" in f and f["to_user"] != "":  # "" spells the default out: no user part
        out["to_user"] = _user(v, path + ("to_user",), f["to_user"])
    if "from_domain" in f:
        out["from_domain"] = v.address(path + ("from_domain",), f["from_domain"])
    if "tls" in f:
        if transport == "tls":
            out["tls"] = parse_tls(v, path + ("tls",), f["tls"])
        elif transport is not None:
            v.error(path + ("tls",), f"applies only to transport: tls (got transport: {transport})")
    elif transport == "tls":
        out["tls"] = TlsOptions()
    if len(v.errors) != before:
        return None
    return SipSettings(**out)


def _status_codes(v: Validator, path: Path, raw: Any) -> tuple[int, ...] | None:
    items = v.seq(path, raw)
    if items is None:
        return None
    if not items:
        v.error(path, "must list at least one status code (leave the key out to accept any 2xx)")
        return None
    codes = []
    for i, item in enumerate(items):
        code = v.integer(path + (i,), item, lo=100, hi=699)
        if code is not None and code < 200:
            v.error(path + (i,), f"{code} is provisional: the probe waits for a final response (200 to 699)")
        elif code is not None:
            codes.append(code)
    return tuple(sorted(set(codes)))


def _user(v: Validator, path: Path, raw: Any) -> str | None:
    text = v.string(path, raw, max_len=64)
    if text is not None and _USER_RE.sub("", text):
        v.error(path, f"not a SIP user part: letters, digits and -_.!~*'()&=+$,;?/ or %XX (got {text!r})")
        return None
    return text
