"""The SNMP probe: system uptime and identity, interface status and counters, extra scalars.

One poll is a GET of the scalars (sysUpTime, sysName, sysDescr, ifNumber,
ifTableLastChange and the configured extra OIDs) followed by GETs of the
selected interfaces' columns at their known indexes, packed into few PDUs.
Interface indexes come from a GETBULK walk of ifDescr/ifName/ifAlias, redone
when the device reboots, when ifNumber or ifTableLastChange move, when an
interface vanishes, and every ``REDISCOVER_EVERY`` polls (aliases change).

v1/v2c go through our own codec and one shared socket (``snmp_transport``);
v3 through pysnmp's engine (``snmp_v3``). Per-target state (last uptime, reboot
count, interface plan) lives in the probe; ``SnmpResult`` carries what the
metrics layer needs, including ``rebooted`` and the running ``reboots`` count.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog

from probes.base import REASON_INTERNAL, REASON_RESOLVE, REASON_TIMEOUT, ProbeResult
from probes.snmp_codec import (ERROR_NO_SUCH_NAME, ERROR_TOO_BIG, GET, GETBULK, GETNEXT, MISSING,
                               NO_SUCH_OBJECT, VERSION_CODES, Response, oid_content)
from probes.snmp_config import SnmpSettings
from probes.snmp_transport import SnmpFailure, SnmpUdpClient
from probes.snmp_walk import Batch, discover, wrap_aware_reboot

log = structlog.get_logger()

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
MAX_VARBINDS = 48  # per GET; small enough for a 1500-byte reply from most CPEs
PARALLEL_PDUS = 4  # per device, so a big switch is not hit with 100 PDUs at once
REDISCOVER_EVERY = 20
MAX_LABEL = 256
PRUNE_EVERY = 1000  # runs between sweeps of forgotten targets' state
STATE_TTL = 3 * 3600.0  # longer than any sane snmp_interval


@dataclass(slots=True)
class IfRow:
    ifindex: int
    ifname: str
    ifdescr: str
    ifalias: str
    admin: int | None = None
    oper: int | None = None
    in_octets: int | None = None
    out_octets: int | None = None
    in_ucast_pkts: int | None = None
    out_ucast_pkts: int | None = None
    in_discards: int | None = None
    in_errors: int | None = None
    out_discards: int | None = None
    out_errors: int | None = None
    speed: int | None = None  # bit/s


@dataclass(slots=True)
class SnmpResult(ProbeResult):
    kind: ClassVar[str] = "snmp"
    sys_uptime: float | None = None  # seconds
    sys_name: str = ""
    sys_descr: str = ""
    interfaces: tuple[IfRow, ...] = ()
    oids: dict[str, float] = field(default_factory=dict)
    missing_oids: dict[str, str] = field(default_factory=dict)  # name -> why (noSuchObject, ...)
    rebooted: bool = False
    reboots: int = 0  # since the agent started; the metrics layer exports it as a counter


@dataclass
class TargetState:
    """What one target's polls remember between cycles."""

    settings: SnmpSettings
    scalars: Batch
    uptime: int | None = None  # ticks
    uptime_at: float = 0.0
    reboots: int = 0
    if_number: Any = None
    if_last_change: Any = None
    interfaces: dict[int, tuple[str, str, str]] | None = None  # ifindex -> (name, descr, alias)
    polls_since_discovery: int = 0
    fallback: set[tuple[int, str]] = field(default_factory=set)
    plan: list[tuple[Batch, list[tuple[int, str, int]]]] | None = None
    max_varbinds: int = MAX_VARBINDS
    last_reason: str | None = None
    last_missing: frozenset[str] = frozenset()
    address: tuple[str, float] | None = None  # resolved host, when resolved
    polled_at: float = 0.0


class SnmpProbe:
    kind = "snmp"

    def __init__(self, udp: SnmpUdpClient | None = None, v3_factory: Any = None,
                 clock: Any = time.monotonic, budget_ratio: float = 0.8) -> None:
        self._udp = udp or SnmpUdpClient()
        self._v3_factory = v3_factory
        self._v3: Any = None
        self._clock = clock
        self._budget_ratio = budget_ratio
        self._states: dict[str, TargetState] = {}
        self._runs = 0

    async def start(self) -> None:
        """Sockets and the v3 engine are created on first use, on the running loop."""

    async def close(self) -> None:
        await self._udp.close()
        if self._v3 is not None:
            await self._v3.close()

    def state(self, name: str) -> TargetState | None:
        return self._states.get(name)

    def retain(self, names: set[str]) -> None:
        """Drop state of targets no longer configured (call after a reload)."""
        for name in list(self._states):
            if name not in names:
                del self._states[name]

    async def run(self, target: Any, tier: Any) -> SnmpResult:
        settings: SnmpSettings = target.setting("snmp")
        start = self._clock()
        self._runs += 1
        if self._runs % PRUNE_EVERY == 0:
            self._prune(start)
        state = self._states.get(target.name)
        if state is None or state.settings != settings:
            state = self._states[target.name] = TargetState(settings, _scalars_batch(settings))
        result = SnmpResult(ok=False, reboots=state.reboots)
        try:
            async with asyncio.timeout(tier.snmp_interval * self._budget_ratio):
                await self._poll(target, tier, state, result)
            result.ok = True
        except SnmpFailure as exc:
            result.reason, result.detail = exc.reason, exc.detail
        except TimeoutError:
            result.reason, result.detail = REASON_TIMEOUT, "poll exceeded its budget"
        except Exception as exc:  # noqa: BLE001 - one device's odd data must not stop polling
            log.exception("snmp_poll_crashed", target=target.name, tier=target.tier)
            result.reason, result.detail = REASON_INTERNAL, type(exc).__name__
        result.duration = self._clock() - start
        result.reboots = state.reboots
        state.polled_at = start
        self._log_change(target, state, result)
        return result

    def _prune(self, now: float) -> None:
        # Targets removed by a reload stop being polled; forget them after a while
        # so that reloading many times with different names cannot grow memory.
        for name, state in list(self._states.items()):
            if now - state.polled_at > STATE_TTL:
                del self._states[name]

    # --- one poll ------------------------------------------------------------

    async def _poll(self, target: Any, tier: Any, state: TargetState, result: SnmpResult) -> None:
        host = await self._host(target.address, state)
        call = _Caller(self, state.settings, host, tier)
        values = await call.get(state.scalars)
        uptime, name, descr, if_number, last_change = values[:5]
        if not isinstance(uptime, int):
            raise SnmpFailure("no_such_object", "sysUpTime.0 is missing")
        now = self._clock()
        if state.uptime is not None and wrap_aware_reboot(state.uptime, uptime, now - state.uptime_at):
            state.reboots += 1
            result.rebooted = True
            state.interfaces = None
        state.uptime, state.uptime_at = uptime, now
        result.sys_uptime = uptime / 100.0
        result.sys_name, result.sys_descr = _text(name), _text(descr, 1024)
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

    async def _interfaces(self, call: _Caller, state: TargetState) -> tuple[IfRow, ...]:
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

    async def _host(self, address: str, state: TargetState) -> str:
        try:
            return ipaddress.ip_address(address).compressed
        except ValueError:
            pass
        now = self._clock()
        if state.address is not None and now - state.address[1] < 300:
            return state.address[0]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(address, None, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise SnmpFailure(REASON_RESOLVE, str(exc)) from None
        host = infos[0][4][0]
        state.address = (host, now)
        return host

    def v3(self) -> Any:
        if self._v3 is None:
            from probes.snmp_v3 import V3Client

            self._v3 = (self._v3_factory or V3Client)()
        return self._v3

    def _log_change(self, target: Any, state: TargetState, result: SnmpResult) -> None:
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


class _Caller:
    """Requests for one target in one poll, hiding the v1/v2c vs v3 transport."""

    __slots__ = ("probe", "settings", "host", "timeout", "retries", "v1", "_community", "_code")

    def __init__(self, probe: SnmpProbe, settings: SnmpSettings, host: str, tier: Any) -> None:
        self.probe, self.settings, self.host = probe, settings, host
        self.timeout, self.retries = tier.snmp_timeout, tier.snmp_retries
        self.v1 = settings.version == "1"
        self._code = VERSION_CODES.get(settings.version)
        self._community = settings.community.value.encode() if settings.community else b""

    async def call(self, pdu_type: int, batch: Batch, max_repetitions: int = 0) -> Response:
        s = self.settings
        if self._code is None:
            return await self.probe.v3().request(s, self.host, s.port, pdu_type, batch.contents,
                                                 self.timeout, self.retries, max_repetitions)
        if pdu_type == GETBULK and self.v1:
            pdu_type, max_repetitions = GETNEXT, 0
        return await self.probe._udp.request(self.host, s.port, self._code, self._community, pdu_type,
                                             batch.encoded, self.timeout, self.retries, 0, max_repetitions)

    async def get(self, batch: Batch) -> list[object]:
        """Values in request order; splits on tooBig, and maps v1 noSuchName to NO_SUCH_OBJECT."""
        response = await self.call(GET, batch)
        status, index = response.error_status, response.error_index
        n = len(batch.contents)
        if status == ERROR_TOO_BIG and n > 1:
            half = n // 2
            return (await self.get(Batch(batch.contents[:half]))) + \
                (await self.get(Batch(batch.contents[half:])))
        if status == ERROR_NO_SUCH_NAME and 1 <= index <= n:
            rest = batch.contents[:index - 1] + batch.contents[index:]
            values = await self.get(Batch(rest)) if rest else []
            values.insert(index - 1, NO_SUCH_OBJECT)
            return values
        if status:
            raise SnmpFailure("agent_error", f"error-status {status} at index {index}")
        varbinds = response.varbinds
        if len(varbinds) != n or any(oid != want for (oid, _), want in zip(varbinds, batch.contents)):
            raise SnmpFailure("malformed", "reply varbinds do not match the request")
        return [value for _, value in varbinds]


def _scalars_batch(settings: SnmpSettings) -> Batch:
    return Batch([oid_content(o) for o in SCALARS] + [oid_content(x.oid) for x in settings.oids])


def _fallback_of(metric: str) -> tuple[str, tuple[int, ...], int] | None:
    for name, _, fallback, _, scale in COLUMNS:
        if name == metric:
            return (name, fallback, scale) if fallback else None
    return None


def _plan(state: TargetState, v1: bool) -> list[tuple[Batch, list[tuple[int, str, int]]]]:
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


def _text(value: object, limit: int = MAX_LABEL) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").replace("\x00", "").strip()[:limit]
    return ""


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

