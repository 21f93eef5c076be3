"""The ``tcp:`` block of a target, checked completely at load.

    tcp: {port: 25, expect: "^220 ", send: "QUIT\\r\\n", tls: false, timeout: 2s}

``tls`` is false (default), true (system trust store, SNI = the target's address)
or a mapping of the shared TLS options (ca_file, server_name, cert_file, key_file,
insecure_skip_verify).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.model import Tier
from common.validate import Validator
from common.yamlsrc import Path
from probes.service import TIMING_KEYS, Timing, parse_port, parse_regex, parse_timing
from probes.tls import TlsOptions, parse_tls

KEYS = ("port", "tls", "send", "expect", *TIMING_KEYS)
MAX_SEND = 4096


@dataclass(frozen=True, slots=True)
class TcpSettings:
    port: int
    timing: Timing = Timing()
    tls: TlsOptions | None = None  # None: plain TCP
    send: bytes = b""
    expect: re.Pattern[str] | None = None  # matched against what the server sends (first 4 KiB)


def parse_settings(v: Validator, raw: Any, path: Path, tier: Tier | None) -> TcpSettings | None:
    if raw is None:
        v.error(path, "the tcp probe needs a block with at least 'port', e.g. tcp: {port: 443}")
        return None
    f = v.mapping(path, raw, KEYS, required=("port",))
    if f is None:
        return None
    before = len(v.errors)
    port = parse_port(v, path + ("port",), f["port"]) if "port" in f else None
    timing = parse_timing(v, path, f, tier)
    tls = None
    if "tls" in f:
        raw_tls = f["tls"]
        if raw_tls is True:
            tls = TlsOptions()
        elif raw_tls is not False:
            tls = parse_tls(v, path + ("tls",), raw_tls) if isinstance(raw_tls, dict) else None
            if not isinstance(raw_tls, dict):
                v.error(path + ("tls",), f"must be true, false or a mapping of TLS options (got {raw_tls!r})")
    send = b""
    if "send" in f:
        text = v.string(path + ("send",), f["send"], max_len=MAX_SEND)
        send = text.encode() if text else b""
    expect = parse_regex(v, path + ("expect",), f["expect"]) if "expect" in f else None
    if len(v.errors) != before or port is None:
        return None
    return TcpSettings(port, timing, tls, send, expect)
