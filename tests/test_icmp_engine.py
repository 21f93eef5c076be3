"""The engine's callback-driven cycles, kernel-side reply filter and clean-up, with real loopback packets."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from probes.icmp.engine import EXACT_SPACING_BELOW, IcmpEngine, _ident_filter
from tests.helpers import cyclic_garbage

pytestmark = pytest.mark.usefixtures("needs_root")


def test_begin_reports_once_through_the_callback():
    async def main():
        engine = IcmpEngine(mode="raw")
        reports = []
        done = asyncio.Event()

        def on_done(stats):
            reports.append(stats)
            done.set()

        # Spacing above the exact-timer threshold: the echoes go through the coalescing ticker.
        engine.begin("127.0.0.1", socket.AF_INET, 3, EXACT_SPACING_BELOW, 1.0, on_done)
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0)  # nothing more may arrive
        await engine.close()
        return reports
    reports = asyncio.run(main())
    assert len(reports) == 1
    assert reports[0].sent == 3 and reports[0].received == 3 and reports[0].errors == []


def test_cancelled_and_closed_cycles_never_report():
    async def main():
        engine = IcmpEngine(mode="raw")
        reports = []
        cycle = engine.begin("127.0.0.2", socket.AF_INET, 3, 0.1, 1.0, reports.append)
        cycle.cancel()
        cancelled_left = [k for k in engine._families[socket.AF_INET].pending if k[0] == "127.0.0.2"]
        engine.begin("127.0.0.3", socket.AF_INET, 3, 0.1, 1.0, reports.append)
        await asyncio.sleep(0.01)
        await engine.close()
        await asyncio.sleep(0.3)  # past the next echoes' ticks: they must find the cycle closed
        return reports, cancelled_left, len(engine._cycles)
    reports, cancelled_left, running = asyncio.run(main())
    assert reports == [] and cancelled_left == [] and running == 0


class _UnreachableSocket:
    """A real raw socket whose sends fail as if the route were gone."""

    def __init__(self, family, kind, proto):
        self._sock = socket.socket(family, kind, proto)

    def sendto(self, data, address):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_send_errors_settle_the_cycle_without_waiting_for_the_timeout():
    async def main():
        engine = IcmpEngine(mode="raw", socket_factory=_UnreachableSocket)
        stats = await asyncio.wait_for(engine.ping("127.0.0.1", socket.AF_INET, 3, 0.001, 30.0), 10)
        await engine.close()
        return stats
    stats = asyncio.run(main())
    assert stats.sent == 3 and stats.received == 0 and stats.errors == ["unreachable"] * 3


def test_other_pingers_replies_are_dropped_in_the_kernel():
    """A second engine (another pinger on the host) never reads the first one's replies."""
    async def main():
        pinger, bystander = IcmpEngine(mode="raw"), IcmpEngine(mode="raw")
        bystander.open(socket.AF_INET)
        await asyncio.sleep(0.05)  # drain whatever was queued before the filter was attached
        before = dict(bystander.ignored)
        addrs = [f"127.4.0.{i}" for i in range(1, 101)]
        results = await asyncio.gather(*(pinger.ping(a, socket.AF_INET, 2, 0.001, 2.0) for a in addrs))
        await asyncio.sleep(0.05)
        after = dict(bystander.ignored)
        await pinger.close()
        await bystander.close()
        return results, before, after
    results, before, after = asyncio.run(main())
    assert sum(r.received for r in results) == 200
    assert after == before  # without the filter: 200 more "foreign"


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_ident_filter_jumps_stay_inside_the_program(family):
    program = _ident_filter(family, 0xBEEF)
    for i, (code, jt, jf, _k) in enumerate(program):
        if code == 0x15:  # JEQ
            assert i + 1 + jt < len(program) and i + 1 + jf < len(program)
    assert program[-1] == (0x06, 0, 0, 0) and program[-2][0] == 0x06  # drop, accept
    assert (0x15, 2, 3, 0xBEEF) in program


def test_cycles_leave_no_cyclic_garbage():
    """Cycles are freed by reference counting: cyclic garbage made long gen-2 GC pauses at 10k targets."""
    async def main():
        engine = IcmpEngine(mode="raw")
        await asyncio.gather(*(engine.ping(f"127.5.0.{i}", socket.AF_INET, 2, 0.06, 0.5) for i in range(1, 21)))
        await engine.close()
    assert cyclic_garbage(main, ("_Cycle", "TickerCall", "EchoStats")) == []


def test_probe_submit_runs_literal_addresses_on_callbacks_and_declines_names():
    from agent.config import DEFAULT_TIERS
    from probes.icmp.probe import IcmpProbe
    from tests.kit import retier

    class _Target:
        def __init__(self, address):
            self.address, self.name, self.tier = address, address, "P0"

    async def main():
        probe = IcmpProbe(engine=IcmpEngine(mode="raw"))
        await probe.start()
        tier = retier(DEFAULT_TIERS["P0"], packets=2, packet_interval=0.01)
        got = asyncio.get_running_loop().create_future()
        accepted = probe.submit(_Target("127.0.0.1"), tier, None, got.set_result)
        declined = probe.submit(_Target("checkpoint.example.invalid"), tier, None, got.set_result)
        result = await asyncio.wait_for(got, 10)
        await probe.close()
        return accepted, declined, result, probe.resolver
    accepted, declined, result, resolver = asyncio.run(main())
    assert accepted and not declined
    assert result.ok and result.sent == 2 and result.received == 2 and result.ip == "127.0.0.1"
    assert resolver.literal("::0001") == (socket.AF_INET6, "::1") and resolver.literal("a.example") is None
