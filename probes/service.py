"""What the service kinds (tcp, http, dns, sip, rtsp) share: timing keys, ports, timed connects.

A service block may set its own ``interval`` and ``timeout``; otherwise the
tier's apply. ``timeout`` bounds the whole cycle (resolve, connect, TLS, the
exchange): every phase runs under one deadline, so a slow or hostile server
can never hold a cycle past it or delay another target.
"""

from __future__ import annotations

import asyncio
import errno
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.model import Tier
from common.resolver import Resolver
from common.validate import Validator, format_duration
from common.yamlsrc import Path
from probes.base import (REASON_REFUSED, REASON_RESOLVE, REASON_SEND, REASON_TLS, REASON_UNREACHABLE, ProbeKind,
                         TlsInfo)
from probes.tls import ChainReader, failure_reason

TIMING_KEYS = ("interval", "timeout")
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


class ProbeFailure(Exception):
    """An expected failure inside a cycle; the kind turns it into a result with ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True, slots=True)
class Timing:
    interval: float | None = None  # None: the tier's
    timeout: float | None = None


def parse_timing(v: Validator, path: Path, f: Mapping[str, Any], tier: Tier | None) -> Timing:
    interval = v.duration(path + ("interval",), f["interval"], lo=0.05) if "interval" in f else None
    timeout = v.duration(path + ("timeout",), f["timeout"], lo=0.001, hi=600) if "timeout" in f else None
    effective_interval = interval or (tier.interval if tier else None)
    effective_timeout = timeout or (tier.timeout if tier else None)
    if effective_interval and effective_timeout and effective_timeout >= effective_interval:
        key = "timeout" if "timeout" in f else "interval"
        v.error(path + (key,), f"timeout ({format_duration(effective_timeout)}) must be below interval "
                               f"({format_duration(effective_interval)})")
    return Timing(interval, timeout)


def parse_port(v: Validator, path: Path, raw: Any) -> int | None:
    return v.integer(path, raw, lo=1, hi=65535)


def parse_status_codes(v: Validator, path: Path, raw: Any, *, hi: int = 599) -> tuple[int, ...] | None:
    """A non-empty list of status codes (100 to ``hi``), sorted and without repeats; None after errors."""
    items = v.seq(path, raw)
    if items is None:
        return None
    if not items:
        v.error(path, "must list at least one status code")
        return None
    codes = [v.integer(path + (i,), item, lo=100, hi=hi) for i, item in enumerate(items)]
    if any(c is None for c in codes):
        return None
    return tuple(sorted(set(codes)))  # type: ignore[arg-type]


def parse_regex(v: Validator, path: Path, raw: Any) -> re.Pattern[str] | None:
    """A regular expression compiled at load (MULTILINE, so ^ and $ match at each line)."""
    text = v.string(path, raw, max_len=1024)
    if text is None:
        return None
    try:
        return re.compile(text, re.MULTILINE)
    except re.error as exc:
        v.error(path, f"not a valid regular expression: {exc} (got {text!r})")
        return None


class ServiceKind(ProbeKind):
    """Base of kinds whose settings carry a ``timing`` (their block may override the tier's)."""

    def interval(self, tier: Tier, settings: Any = None) -> float:
        timing = getattr(settings, "timing", None)
        return (timing.interval if timing else None) or tier.interval


def timeout_of(tier: Tier, settings: Any) -> float:
    timing = getattr(settings, "timing", None)
    return (timing.timeout if timing else None) or tier.timeout


@dataclass(slots=True)
class Phases:
    """Per-phase durations of one cycle, measured on the loop clock."""

    loop: asyncio.AbstractEventLoop
    started: float = 0.0
    mark: float = 0.0
    done: list[tuple[str, float]] = field(default_factory=list)

    @classmethod
    def start(cls) -> Phases:
        loop = asyncio.get_running_loop()
        now = loop.time()
        return cls(loop, now, now)

    def end(self, name: str) -> None:
        now = self.loop.time()
        self.done.append((name, now - self.mark))
        self.mark = now

    def total(self) -> float:
        return self.loop.time() - self.started


async def resolve(resolver: Resolver, address: str, phases: Phases, family: int = 0) -> tuple[int, str]:
    resolved = await resolver.resolve(address, family)
    phases.end("resolve")
    if resolved is None:
        raise ProbeFailure(REASON_RESOLVE, f"cannot resolve {address}")
    return resolved


def connect_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return REASON_REFUSED
    if exc.errno in _UNREACHABLE:
        return REASON_UNREACHABLE
    return REASON_SEND


async def open_stream(ip: str, port: int, phases: Phases, *, tls: ssl.SSLContext | None = None,
                      server_name: str | None = None, chains: ChainReader | None = None,
                      limit: int = 65536) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, TlsInfo | None]:
    """Connect (phase "connect") and, given a context, do the TLS handshake (phase "tls").

    Run it under the cycle's deadline (``asyncio.timeout``); a TimeoutError is the caller's
    ``timeout``. Connection errors and TLS failures raise ProbeFailure with their reason.
    """
    try:
        reader, writer = await asyncio.open_connection(ip, port, limit=limit)
    except OSError as exc:
        raise ProbeFailure(connect_reason(exc), str(exc)) from None
    phases.end("connect")
    info = None
    if tls is not None:
        try:
            await writer.start_tls(tls, server_hostname=server_name or ip)
        except ssl.SSLError as exc:
            writer.transport.abort()
            raise ProbeFailure(failure_reason(exc), getattr(exc, "verify_message", "") or str(exc)) from None
        except (OSError, EOFError) as exc:  # the server hung up mid-handshake
            writer.transport.abort()
            raise ProbeFailure(REASON_TLS, f"handshake: {exc!r}") from None
        phases.end("tls")
        if chains is not None:
            info = chains.info(writer.get_extra_info("ssl_object"))
    return reader, writer, info


def close(writer: asyncio.StreamWriter | None) -> None:
    """Close without waiting: a peer that never acknowledges must not hold the cycle."""
    if writer is not None:
        writer.transport.abort()

