"""What one dns cycle found; the kind records it without importing dnspython's message code."""

from __future__ import annotations

from dataclasses import dataclass

from probes.base import ProbeResult


@dataclass(slots=True)
class DnsResult(ProbeResult):
    rcode: int | None = None  # None: no reply of ours arrived
    answers: int = 0  # records in each section of the reply
    authority: int = 0
    additional: int = 0
    tcp: bool = False  # the reply came over TCP (configured, or a truncated UDP reply)
