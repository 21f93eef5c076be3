"""ICMP echo probe: one tier-shaped cycle of echoes per call, over the shared engine."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable

import structlog

from common.model import Target, Tier
from common.resolver import Resolver
from probes.base import REASON_RESOLVE, REASON_TIMEOUT, Probe
from probes.icmp.engine import EchoStats, IcmpEngine
from probes.icmp.options import IcmpOptions
from probes.icmp.result import IcmpResult

log = structlog.get_logger("lifeline.icmp")


class IcmpProbe(Probe):
    """Owns the engine (one socket per family); addresses come from the agent's resolver."""

    def __init__(self, engine: IcmpEngine | None = None, resolver: Resolver | None = None) -> None:
        self.engine = engine or IcmpEngine()
        self.resolver = resolver or Resolver()

    async def start(self) -> None:
        # Fail at start-up, with the remedy in the message, if ICMP sockets are not allowed.
        self.engine.open(socket.AF_INET)
        try:
            self.engine.open(socket.AF_INET6)
        except Exception:  # noqa: BLE001 - IPv6 may be disabled on the host; v4 still works
            pass
        log.info("icmp_sockets", **self.engine.socket_modes())

    async def close(self) -> None:
        await self.engine.close()

    async def run(self, target: Target, tier: Tier, state: object = None) -> IcmpResult:
        started = time.monotonic()
        resolved = await self.resolver.resolve(target.address)
        if resolved is None:
            return IcmpResult(ok=False, reason=REASON_RESOLVE, duration=time.monotonic() - started,
                              detail=f"cannot resolve {target.address}", sent=0)
        family, ip = resolved
        part = tier.parts["icmp"]
        stats = await self.engine.ping(ip, family, part.packets, part.packet_interval, tier.timeout,
                                       _options(target))
        return self._result(stats, ip, started)

    def submit(self, target: Target, tier: Tier, state: object,
               done: Callable[[IcmpResult], None]) -> bool:
        """Start a cycle on callbacks, without a task; False when the address needs DNS (use ``run``)."""
        resolved = self.resolver.literal(target.address)
        if resolved is None:
            return False
        family, ip = resolved
        started = time.monotonic()
        part = tier.parts["icmp"]
        self.engine.begin(ip, family, part.packets, part.packet_interval, tier.timeout,
                          lambda stats: done(self._result(stats, ip, started)), _options(target))
        return True

    def collect(self) -> Iterable[str]:
        yield "# HELP lifeline_icmp_replies_ignored_total ICMP packets received that matched no outstanding echo, by reason."
        yield "# TYPE lifeline_icmp_replies_ignored_total counter"
        for reason, n in sorted(self.engine.ignored.items()):
            yield f'lifeline_icmp_replies_ignored_total{{reason="{reason}"}} {n}'

    @staticmethod
    def _result(stats: EchoStats, ip: str, started: float) -> IcmpResult:
        rtts = tuple(r for r in stats.rtts if r is not None)
        reason = None
        if not rtts:
            # The most specific reason wins: an ICMP error or a send error says more than silence.
            counts = Counter(stats.errors)
            reason = next((r for r in counts if r != REASON_TIMEOUT), REASON_TIMEOUT)
        return IcmpResult(ok=bool(rtts), reason=reason, duration=time.monotonic() - started, ip=ip,
                          sent=stats.sent, rtts=rtts, detail=stats.detail if reason else "")


def _options(target: Target) -> IcmpOptions | None:
    """The target's ICMP options; None (nearly always) keeps its echoes on the shared sockets."""
    settings = getattr(target, "settings", ())  # tests' stand-ins for Target carry only address and name
    return target.setting("icmp") if settings else None
