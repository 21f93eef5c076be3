"""What one SNMP poll returns: system scalars, the selected interfaces' rows, extra OIDs."""

from __future__ import annotations

from dataclasses import dataclass, field

from probes.base import ProbeResult


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
    sys_uptime: float | None = None  # seconds
    sys_name: str = ""
    sys_descr: str = ""
    interfaces: tuple[IfRow, ...] = ()
    oids: dict[str, float] = field(default_factory=dict)
    missing_oids: dict[str, str] = field(default_factory=dict)  # name -> why (noSuchObject, ...)
    rebooted: bool = False  # sysUpTime went back since the previous poll; the state counts them
