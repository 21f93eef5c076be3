"""The SNMP probe: system uptime and identity, interface status and counters, extra scalars.

One poll is a GET of the scalars (sysUpTime, sysName, sysDescr, ifNumber,
ifTableLastChange and the configured extra OIDs) followed by GETs of the
selected interfaces' columns at their known indexes, packed into few PDUs.
Interface indexes come from a GETBULK walk of ifDescr/ifName/ifAlias, redone
when the device reboots, when ifNumber or ifTableLastChange move, when an
interface vanishes, and every ``REDISCOVER_EVERY`` polls (aliases change).

Every version goes through our own codec and one shared socket
(``transport``); v3 adds the user-based security model (``v3``, ``usm``). What a target's polls remember (last uptime,
interface plan) is its ``SnmpState``, owned by the agent with the target.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from common.model import Target, Tier
from common.resolver import Resolver
from probes.base import REASON_INTERNAL, REASON_RESOLVE, REASON_TIMEOUT, Probe
from probes.snmp.caller import Batch, Caller
from probes.snmp.codec import MISSING, oid_content
from probes.snmp.config import SnmpSettings
from probes.snmp.result import IfRow, SnmpResult
from probes.snmp.state import SnmpState
from probes.snmp.transport import REASON_NO_SUCH_OBJECT, SnmpFailure, SnmpUdpClient
from probes.snmp.walk import discover, text, wrap_aware_reboot

log = structlog.get_logger("lifeline.snmp")

_SYS = (1, 3, 6, 1, 2, 1, 1)
_IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
SCALARS = (_SYS + (3, 0), _SYS + (5, 0), _SYS + (1, 0), (1, 3, 6, 1, 2, 1, 2, 1, 0),
           (1, 3, 6, 1, 2, 1, 31, 1, 5, 0))  # sysUpTime, sysName, sysDescr, ifNumber, ifTableLastChange
# (metric, primary column, fallback column, primary scale, fallback scale). The primary is the
# 64-bit (ifXTable) column where one exists; the fallback is used per interface once the
# device has answered noSuch* for the primary.
COLUMNS = (
    ("admin", _IF + (7,), None, 1, 1),
    ("oper", _IF + (8,), None, 1, 1),
    ("in_octets", _IFX + (6,), _IF + (10,), 1, 1),
    ("out_octets", _IFX + (10,), _IF + (16,), 1, 1),
    ("in_ucast_pkts", _IFX + (7,), _IF + (11,), 1, 1),
    ("out_ucast_pkts", _IFX + (11,), _IF + (17,), 1, 1),
    ("in_discards", _IF + (13,), None, 1, 1),
    ("in_errors", _IF + (14,), None, 1, 1),
    ("out_discards", _IF + (19,), None, 1, 1),
    ("out_errors", _IF + (20,), None, 1, 1),
    ("speed", _IFX + (15,), _IF + (5,), 1_000_000, 1),  # ifHighSpeed is Mbit/s, ifSpeed bit/s
)
PARALLEL_PDUS = 4  # per device, so a big switch is not hit with 100 PDUs at once
REDISCOVER_EVERY = 20


def new_state(settings: SnmpSettings) -> SnmpState:
    return SnmpState(settings, Batch([oid_content(o) for o in SCALARS] + [oid_content(x.oid) for x in settings.oids]))


class SnmpProbe(Probe):
    def __init__(self, udp: SnmpUdpClient | None = None, v3_factory: Any = None, resolver: Resolver | None = None,
                 clock: Any = time.monotonic, budget_ratio: float = 0.8) -> None:
        self._udp = udp or SnmpUdpClient()
        self._v3_factory = v3_factory
        self._v3: Any = None
        self._resolver = resolver or Resolver()
        self._clock = clock
        self._budget_ratio = budget_ratio

    async def start(self) -> None:
        """Sockets and the v3 client are created on first use, on the running loop."""

    async def close(self) -> None:
        await self._udp.close()
        if self._v3 is not None:
            await self._v3.close()

    async def run(self, target: Target, tier: Tier, state: SnmpState) -> SnmpResult:
        start = self._clock()
        part = tier.parts["snmp"]
        result = SnmpResult(ok=False)
        try:
            async with asyncio.timeout(part.interval * self._budget_ratio):
                await self._poll(target, part, state, result)
            result.ok = True
        except SnmpFailure as exc:
            result.reason, result.detail = exc.reason, exc.detail
        except TimeoutError:
            result.reason, result.detail = REASON_TIMEOUT, "poll exceeded its budget"
        except Exception as exc:  # noqa: BLE001 - one device's odd data must not stop polling
            log.exception("snmp_poll_crashed", target=target.name, tier=target.tier)
            result.reason, result.detail = REASON_INTERNAL, type(exc).__name__
        result.duration = self._clock() - start
        self._log_change(target, state, result)
        return result

    # --- one poll ------------------------------------------------------------

    async def _poll(self, target: Target, part: Any, state: SnmpState, result: SnmpResult) -> None:
        resolved = await self._resolver.resolve(target.address)
        if resolved is None:
            raise SnmpFailure(REASON_RESOLVE, f"cannot resolve {target.address}")
        call = Caller(self._udp, self.v3, state.settings, resolved[1], part.timeout, part.retries)
        values = await call.get(state.scalars)
        uptime, name, descr, if_number, last_change = values[:5]
        if not isinstance(uptime, int):
            raise SnmpFailure(REASON_NO_SUCH_OBJECT, "sysUpTime.0 is missing")
        now = self._clock()
        if state.uptime is not None and wrap_aware_reboot(state.uptime, uptime, now - state.uptime_at):
            result.rebooted = True
            state.interfaces = None
        state.uptime, state.uptime_at = uptime, now
        result.sys_uptime = uptime / 100.0
        result.sys_name, result.sys_descr = text(name), text(descr, 1024)
        for extra, value in zip(state.settings.oids, values[5:]):
            number = _number(value)
            if number is None:
                result.missing_oids[extra.name] = repr(value) if value in MISSING else "not numeric"
            else:
                result.oids[extra.name] = number
        if ((if_number, last_change) != (state.if_number, state.if_last_change)
                or state.polls_since_discovery >= REDISCOVER_EVERY):
            state.interfaces = None
        if state.interfaces is None:
            state.interfaces = await discover(call, state.settings)
            state.if_number, state.if_last_change = if_number, last_change
            state.polls_since_discovery, state.plan = 0, None
            state.fallback = {f for f in state.fallback if f[0] in state.interfaces}
        state.polls_since_discovery += 1
        result.interfaces = await self._interfaces(call, state)

    async def _interfaces(self, call: Caller, state: SnmpState) -> tuple[IfRow, ...]:
        assert state.interfaces is not None
        rows = {i: IfRow(i, *_labels(n, d, a)) for i, (n, d, a) in state.interfaces.items()}
        if not rows:
            return ()
        if state.plan is None:
            state.plan = _plan(state, call.v1)
        missing: list[tuple[int, str]] = []
        for group in range(0, len(state.plan), PARALLEL_PDUS):
            chunk = state.plan[group:group + PARALLEL_PDUS]
            answers = await asyncio.gather(*(call.get(batch) for batch, _ in chunk))
            for (_, slots), values in zip(chunk, answers):
                for (ifindex, metric, scale), value in zip(slots, values):
                    if isinstance(value, int):
                        setattr(rows[ifindex], metric, value * scale)
                    elif value in MISSING and (ifindex, metric) not in state.fallback and \
                            _fallback_of(metric) is not None:
                        missing.append((ifindex, metric))
        if missing:
            # The device lacks the 64-bit (or ifHighSpeed) column here: switch these
            # interfaces to the fallback column for good and fetch it now.
            state.fallback.update(missing)
            state.plan = None
            slots = [(i, m, _fallback_of(m)) for i, m in missing]
            batch = Batch([oid_content(col[1] + (i,)) for i, _, col in slots])
            values = await call.get(batch)
            for (ifindex, metric, col), value in zip(slots, values):
                if isinstance(value, int):
                    setattr(rows[ifindex], metric, value * col[2])
        for ifindex, row in list(rows.items()):
            if row.oper is None and row.admin is None:
                state.interfaces = None  # gone since discovery; look again next poll
                del rows[ifindex]
        return tuple(rows.values())

    # --- helpers -------------------------------------------------------------

    def v3(self) -> Any:
        if self._v3 is None:
            from probes.snmp.v3 import V3Client

            self._v3 = (self._v3_factory or V3Client)(self._udp)
        return self._v3

    def _log_change(self, target: Target, state: SnmpState, result: SnmpResult) -> None:
        # Once per state change, never per packet: a dead device polled every
        # 15 s must not write four lines a minute forever.
        if result.reason != state.last_reason:
            if result.ok:
                log.info("snmp_poll_recovered", target=target.name, tier=target.tier,
                         previous=state.last_reason)
            else:
                log.warning("snmp_poll_failed", target=target.name, tier=target.tier,
                            reason=result.reason, detail=result.detail)
            state.last_reason = result.reason
        missing = frozenset(result.missing_oids)
        if result.ok and missing != state.last_missing:
            if missing:
                log.warning("snmp_oids_missing", target=target.name, tier=target.tier,
                            oids=dict(sorted(result.missing_oids.items())))
            state.last_missing = missing
        if result.rebooted:
            log.warning("snmp_device_rebooted", target=target.name, tier=target.tier,
                        uptime_seconds=result.sys_uptime)


def _fallback_of(metric: str) -> tuple[str, tuple[int, ...], int] | None:
    for name, _, fallback, _, scale in COLUMNS:
        if name == metric:
            return (name, fallback, scale) if fallback else None
    return None


def _plan(state: SnmpState, v1: bool) -> list[tuple[Batch, list[tuple[int, str, int]]]]:
    """The poll's GET PDUs, built once per discovery and reused every cycle."""
    assert state.interfaces is not None
    slots: list[tuple[bytes, tuple[int, str, int]]] = []
    for ifindex in sorted(state.interfaces):
        for metric, primary, fallback, pscale, fscale in COLUMNS:
            # v1 cannot carry Counter64, so it always asks for the 32-bit columns.
            use_fallback = fallback is not None and (v1 or (ifindex, metric) in state.fallback)
            column, scale = (fallback, fscale) if use_fallback else (primary, pscale)
            slots.append((oid_content(column + (ifindex,)), (ifindex, metric, scale)))
    size = max(1, state.max_varbinds)
    return [(Batch([c for c, _ in slots[i:i + size]]), [s for _, s in slots[i:i + size]])
            for i in range(0, len(slots), size)]


def _labels(name: str, descr: str, alias: str) -> tuple[str, str, str]:
    return (name or descr, descr, alias)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None or value in MISSING:
        return None
    if isinstance(value, int):
        return float(value)
    if isinstance(value, bytes):  # some devices report gauges as strings ("12.5")
        try:
            return float(value.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return None
    return None

