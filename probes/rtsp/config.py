"""The ``rtsp:`` target block, checked whole at load (URL, credentials, statuses, timing).

    targets:
      - name: cam-lobby
        address: 192.0.2.101
        probes: [rtsp]
        rtsp: {url: "rtsp://192.0.2.101:554/stream1", username: viewer, password_env: CAM_PASSWORD}

The connection goes to the target's ``address`` on the URL's port (554 when the
URL has none); the URL, host included, is what the request line carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from common.model import Tier
from common.secrets import Secret, load_secret
from common.validate import Validator, address_problem
from common.yamlsrc import Path
from probes.service import TIMING_KEYS, Timing, parse_port, parse_status_codes, parse_timing

DEFAULT_PORT = 554
KEYS = ("url", "username", "password_env", "password_file", "valid_status_codes", *TIMING_KEYS)
MAX_URL = 2048
# Anything at or below space, DEL and non-ASCII would break or inject into the request line.
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")
_UNSAFE_USER = re.compile(r"[\x00-\x1f\x7f:\"\\]")


@dataclass(frozen=True, slots=True)
class RtspSettings:
    url: str  # as written: it goes in the request line
    port: int  # from the URL, else 554
    username: str | None = None
    password: Secret | None = None
    valid_status_codes: tuple[int, ...] = (200,)
    timing: Timing = Timing()


def parse_settings(v: Validator, raw: Any, path: Path, tier: Tier | None) -> RtspSettings | None:
    """A target's ``rtsp:`` block; None after recording errors."""
    if raw is None:
        v.error(path, "'rtsp' is listed in probes but the target has no 'rtsp' settings (url is required)")
        return None
    before = len(v.errors)
    f = v.mapping(path, raw, KEYS, required=("url",))
    if f is None:
        return None
    url, port = _url(v, path + ("url",), f["url"]) if "url" in f else (None, None)
    username = None
    if "username" in f:
        username = v.string(path + ("username",), f["username"], max_len=128)
        if username is not None and _UNSAFE_USER.search(username):
            v.error(path + ("username",), "must not contain ':', quotes, backslashes or control characters")
    given = [k for k in ("password_env", "password_file") if k in f]
    password = None
    if len(given) > 1:
        v.error(path + (given[1],), "set only one of password_env, password_file")
    elif given:
        password = load_secret(v, path + (given[0],), given[0], f[given[0]])
        if "username" not in f:
            v.error(path + (given[0],), "a password needs a username")
    elif "username" in f:
        v.error(path + ("username",), "a username needs password_env or password_file")
    codes = parse_status_codes(v, path + ("valid_status_codes",), f["valid_status_codes"]) \
        if "valid_status_codes" in f else (200,)
    timing = parse_timing(v, path, f, tier)
    if len(v.errors) != before or url is None or port is None or codes is None:
        return None
    return RtspSettings(url, port, username, password, codes, timing)


def _url(v: Validator, path: Path, raw: Any) -> tuple[str | None, int | None]:
    # Messages never echo the whole URL: a mistaken rtsp://user:pass@host would show the password.
    text = v.string(path, raw, max_len=MAX_URL)
    if text is None:
        return None, None
    if _UNSAFE_URL.search(text):
        v.error(path, "must not contain spaces, control or non-ASCII characters (percent-encode them)")
        return None, None
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed [IPv6 literal
        v.error(path, "is not a valid URL (expected rtsp://HOST[:PORT]/PATH)")
        return None, None
    if parts.scheme.lower() != "rtsp":
        shown = f"{parts.scheme}://" if parts.scheme else text[:20]
        v.error(path, f"must be an rtsp:// URL (got {shown!r})")
        return None, None
    if "@" in parts.netloc:
        v.error(path, "must not carry credentials; use username and password_env or password_file")
        return None, None
    if parts.fragment or text.endswith("#"):
        v.error(path, "must not have a #fragment")
        return None, None
    host = parts.hostname
    if not host:
        v.error(path, "has no host (expected rtsp://HOST[:PORT]/PATH)")
        return None, None
    problem = address_problem(host)
    if problem:
        v.error(path, f"host: {problem} (got {host!r})")
        return None, None
    try:
        port = parts.port
    except ValueError:  # out of range or not a number
        port_text = parts.netloc.rpartition(":")[2]
        if port_text.isdigit():
            return None, parse_port(v, path, int(port_text))  # the range message
        v.error(path, f"port must be a number (got {port_text[:10]!r})")
        return None, None
    if port is None:
        if parts.netloc.endswith(":"):
            v.error(path, "has an empty port after ':'")
            return None, None
        return text, DEFAULT_PORT
    return text, parse_port(v, path, port)
