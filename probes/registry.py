"""The one list of probe kinds. Adding a kind is a package under probes/ and a line here."""

from __future__ import annotations

from probes.base import ProbeKind
from probes.dns import DnsKind
from probes.http import HttpKind
from probes.icmp import IcmpKind
from probes.rtsp import RtspKind
from probes.sip import SipKind
from probes.snmp import SnmpKind
from probes.tcp import TcpKind

KINDS: dict[str, ProbeKind] = {kind.name: kind for kind in (
    IcmpKind(),
    SnmpKind(),
    TcpKind(),
    HttpKind(),
    SipKind(),
    DnsKind(),
    RtspKind(),
)}
