"""Interface discovery by GETBULK walk, and the reboot test on sysUpTime.

Walks always terminate, whatever the device sends: every round each column
either moves strictly forward inside its subtree or is finished, rows per
column are capped, and so is the number of rounds (pysnmp's own bulk walk
does not stop on timeouts; lextudio/pysnmp#66).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from probes.snmp.caller import Batch, Caller
from probes.snmp.codec import END_OF_MIB_VIEW, ERROR_NO_SUCH_NAME, GETBULK, MISSING, oid_content, suffix_arcs
from probes.snmp.config import SnmpSettings
from probes.snmp.transport import REASON_AGENT_ERROR, SnmpFailure

IF_DESCR = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
IF_ALIAS = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18)
MAX_REPETITIONS = 25
MAX_ROWS = 20_000
MAX_ROUNDS = 2_000
TICKS_WRAP = 2**32
MAX_LABEL = 256  # characters kept of a name, description or alias


async def walk(call: Caller, columns: Sequence[tuple[int, ...]],
               max_repetitions: int = MAX_REPETITIONS) -> list[dict[tuple[int, ...], Any]]:
    """Walk several table columns side by side; returns {index arcs: value} per column."""
    prefixes = [oid_content(c) for c in columns]
    positions = list(prefixes)
    last: list[tuple[int, ...] | None] = [None] * len(columns)
    done = [False] * len(columns)
    out: list[dict[tuple[int, ...], Any]] = [{} for _ in columns]
    for _ in range(MAX_ROUNDS):
        active = [k for k, d in enumerate(done) if not d]
        if not active:
            break
        response = await call.call(GETBULK, Batch([positions[k] for k in active]), max_repetitions)
        if response.error_status == ERROR_NO_SUCH_NAME and 1 <= response.error_index <= len(active):
            done[active[response.error_index - 1]] = True  # v1 end of view for that column
            continue
        if response.error_status:
            raise SnmpFailure(REASON_AGENT_ERROR, f"error-status {response.error_status} during walk")
        moved = set()
        n = len(active)
        for j, (oid, value) in enumerate(response.varbinds):
            k = active[j % n]
            if done[k]:
                continue
            prefix = prefixes[k]
            if value is END_OF_MIB_VIEW or len(oid) <= len(prefix) or not oid.startswith(prefix):
                done[k] = True
                continue
            arcs = suffix_arcs(oid, prefix)
            previous = last[k]
            if previous is not None and arcs <= previous:
                done[k] = True  # OID not increasing: a broken agent would loop us forever
                continue
            if value not in MISSING:
                out[k][arcs] = value
            last[k], positions[k] = arcs, oid
            moved.add(k)
            if len(out[k]) >= MAX_ROWS:
                done[k] = True
        for k in active:
            if k not in moved:
                done[k] = True
    return out


async def discover(call: Caller, settings: SnmpSettings) -> dict[int, tuple[str, str, str]]:
    """Selected interfaces: {ifIndex: (ifName, ifDescr, ifAlias)}."""
    descr, name, alias = await walk(call, (IF_DESCR, IF_NAME, IF_ALIAS))
    found: dict[int, tuple[str, str, str]] = {}
    for arcs in sorted(set(descr) | set(name)):
        if len(arcs) != 1 or not 0 < arcs[0] < 2**31:
            continue
        i = arcs[0]
        row = (text(name.get(arcs)), text(descr.get(arcs)), text(alias.get(arcs)))
        if settings.selects(i, *row):
            found[i] = row
    return found


def wrap_aware_reboot(previous: int, current: int, elapsed: float) -> bool:
    """True if sysUpTime went backwards for a reason other than its 497-day wrap."""
    if current >= previous:
        return False
    expected = previous + elapsed * 100
    if expected >= TICKS_WRAP - 500:
        wrapped = expected - TICKS_WRAP
        # Allow the same 10% clock slack either side of where the wrapped value should be.
        if current <= wrapped + 500 + elapsed * 10:
            return False
    return True


def text(value: object, limit: int = MAX_LABEL) -> str:
    """An OCTET STRING as label text: UTF-8 (replacing what is not), NULs dropped, bounded."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").replace("\x00", "").strip()[:limit]
    return ""
