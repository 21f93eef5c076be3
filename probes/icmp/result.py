"""What one ICMP cycle returns: the echoes sent and the RTTs of those answered in time."""

from __future__ import annotations

from dataclasses import dataclass

from probes.base import ProbeResult


@dataclass(slots=True)
class IcmpResult(ProbeResult):
    ip: str = ""
    sent: int = 0
    rtts: tuple[float, ...] = ()  # replies that arrived in time, in send order

    @property
    def received(self) -> int:
        return len(self.rtts)

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 1.0

    @property
    def jitter(self) -> float | None:
        """Mean absolute difference of consecutive RTTs (RFC 3550 style, without smoothing)."""
        if not self.rtts:
            return None
        if len(self.rtts) == 1:
            return 0.0
        return sum(abs(b - a) for a, b in zip(self.rtts, self.rtts[1:])) / (len(self.rtts) - 1)
