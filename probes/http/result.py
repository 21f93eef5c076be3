"""What one http cycle returns, beyond the core fields (status, redirects, body figures)."""

from __future__ import annotations

from dataclasses import dataclass

from probes.base import ProbeResult


@dataclass(slots=True)
class HttpResult(ProbeResult):
    status: int = 0  # of the last response; 0 when none arrived
    redirects: int = 0
    body_bytes: int = 0  # read, at most body_limit
    content_length: int | None = None  # as the last response declared it
    body: bytes = b""  # kept only when body_regex needs it; never recorded in state
