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
        return loss(self.sent, self.rtts)

    @property
    def jitter(self) -> float | None:
        return jitter(self.rtts)


def loss(sent: int, rtts: tuple[float, ...]) -> float:
    """Share of ``sent`` echoes without a reply in time."""
    return 1.0 - len(rtts) / sent if sent else 1.0


def jitter(rtts: tuple[float, ...]) -> float | None:
    """Mean absolute difference of consecutive RTTs (RFC 3550 style, without smoothing)."""
    if not rtts:
        return None
    if len(rtts) == 1:
        return 0.0
    return sum(abs(b - a) for a, b in zip(rtts, rtts[1:])) / (len(rtts) - 1)
