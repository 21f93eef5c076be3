"""Answers to RTSP 401 challenges: Basic, and Digest as cameras send it (RFC 2617, RFC 7616).

Cameras mostly send ``Digest realm=..., nonce=...`` without qop (RFC 2069 style,
as gst-rtsp-server does); some add ``qop="auth"``, ``opaque`` or ``algorithm``.
Digest is preferred over Basic when both are offered, since Basic sends the
password in clear over plain RTSP.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_SKIP = re.compile(r"[\s,]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PARAM = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*(\"(?:[^\"\\]|\\.)*\"|[^,\s]*)")
_ESCAPE = re.compile(r"\\(.)")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")  # what a server's value may hold to be echoed in our request
_HASHES = {"MD5": "md5", "MD5-SESS": "md5", "SHA-256": "sha256", "SHA-256-SESS": "sha256"}


@dataclass(slots=True)
class Challenge:
    scheme: str  # lower-cased: "basic", "digest", ...
    params: dict[str, str] = field(default_factory=dict)  # names lower-cased, values unquoted


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Every challenge of the WWW-Authenticate values; garbage ends a value's parse, never raises."""
    out: list[Challenge] = []
    for value in values:
        pos, current = 0, None
        while True:
            pos = _SKIP.match(value, pos).end()  # type: ignore[union-attr]
            if pos >= len(value):
                break
            param = _PARAM.match(value, pos) if current is not None else None
            if param is not None:
                raw = param.group(2)
                current.params[param.group(1).lower()] = (_ESCAPE.sub(r"\1", raw[1:-1])  # type: ignore[union-attr]
                                                          if raw[:1] == '"' else raw)
                pos = param.end()
                continue
            token = _TOKEN.match(value, pos)
            if token is None:
                break
            current = Challenge(token.group(0).lower())
            out.append(current)
            pos = token.end()
    return out


class Basic:
    scheme = "Basic"

    def __init__(self, username: str, password: str) -> None:
        self._value = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def header(self, method: str, uri: str) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Basic(<redacted>)"


class Digest:
    scheme = "Digest"

    def __init__(self, challenge: Challenge, username: str, password: str, algorithm: str,
                 qop: str | None, cnonce: str | None = None) -> None:
        p = challenge.params
        self._user, self._password = username, password
        self._realm, self._nonce, self._opaque = p.get("realm", ""), p["nonce"], p.get("opaque")
        self._algorithm_param = p.get("algorithm")
        self._hash = _HASHES[algorithm]
        self._sess = algorithm.endswith("-SESS")
        self._qop = qop
        self._nc = 0  # requests sent with this nonce, for qop's nc
        self._cnonce = cnonce or os.urandom(8).hex()

    def _h(self, text: str) -> str:
        return hashlib.new(self._hash, text.encode()).hexdigest()

    def header(self, method: str, uri: str) -> str:
        h = self._h
        ha1 = h(f"{self._user}:{self._realm}:{self._password}")
        if self._sess:
            ha1 = h(f"{ha1}:{self._nonce}:{self._cnonce}")
        ha2 = h(f"{method}:{uri}:{h('')}") if self._qop == "auth-int" else h(f"{method}:{uri}")  # bodies are empty
        parts = [f'username="{_quote(self._user)}"', f'realm="{_quote(self._realm)}"',
                 f'nonce="{_quote(self._nonce)}"', f'uri="{_quote(uri)}"']
        if self._qop:
            self._nc += 1
            nc = f"{self._nc:08x}"
            parts.append(f'response="{h(f"{ha1}:{self._nonce}:{nc}:{self._cnonce}:{self._qop}:{ha2}")}"')
            parts += [f"qop={self._qop}", f"nc={nc}", f'cnonce="{self._cnonce}"']
        else:
            parts.append(f'response="{h(f"{ha1}:{self._nonce}:{ha2}")}"')
        if self._algorithm_param:
            parts.append(f"algorithm={self._algorithm_param}")
        if self._opaque is not None:
            parts.append(f'opaque="{_quote(self._opaque)}"')
        return "Digest " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"Digest({self._hash}, qop={self._qop}, <redacted>)"


def answer(challenges: list[Challenge], username: str, password: str) -> tuple[Basic | Digest | None, str]:
    """What to answer with, or None and why not (the why never holds a secret)."""
    why = "no Basic or Digest challenge"
    for c in challenges:
        if c.scheme != "digest":
            continue
        p = c.params
        if "nonce" not in p:
            why = "Digest challenge without a nonce"
            continue
        if not all(_PRINTABLE.fullmatch(x) for x in p.values()):
            why = "Digest challenge with control or non-ASCII characters"
            continue
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm not in _HASHES:
            why = f"Digest algorithm {algorithm[:20]!r} not supported"
            continue
        offered = [q.strip().lower() for q in p.get("qop", "").split(",") if q.strip()]
        qop = next((q for q in ("auth", "auth-int") if q in offered), None)
        if offered and qop is None:
            why = "Digest qop not supported"
            continue
        return Digest(c, username, password, algorithm, qop), ""
    if any(c.scheme == "basic" for c in challenges):
        return Basic(username, password), ""
    return None, why


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
