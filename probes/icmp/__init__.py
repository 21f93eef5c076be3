"""ICMP echo: loss, RTT histogram, jitter; one raw or datagram socket per address family."""

from probes.icmp.kind import IcmpKind

__all__ = ["IcmpKind"]
