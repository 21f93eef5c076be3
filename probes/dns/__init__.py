"""DNS: one query per cycle to the target's server; rcode, answer count and content checks."""

from probes.dns.kind import DnsKind

__all__ = ["DnsKind"]
