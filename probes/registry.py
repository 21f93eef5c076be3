"""The one list of probe kinds. Adding a kind is a package under probes/ and a line here."""

from __future__ import annotations

from probes.base import ProbeKind
from probes.icmp import IcmpKind
from probes.snmp import SnmpKind

KINDS: dict[str, ProbeKind] = {kind.name: kind for kind in (
    IcmpKind(),
    SnmpKind(),
)}
