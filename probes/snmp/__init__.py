"""SNMP v1/v2c/v3: uptime and reboots, IF-MIB status and counters, extra scalars."""

from probes.snmp.kind import SnmpKind

__all__ = ["SnmpKind"]
