"""What one SIP cycle returns besides the common fields."""

from __future__ import annotations

from dataclasses import dataclass

from probes.base import ProbeResult


@dataclass(slots=True)
class SipResult(ProbeResult):
    status_code: int = 0  # of the final response; 0 when none arrived
    requests: int = 0  # OPTIONS sent, retransmissions included
