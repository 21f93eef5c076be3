"""Per-target ICMP options (source address, payload size, don't-fragment, DSCP, TTL) and their checks.

A tier may set defaults in its own ``icmp:`` mapping; a target's ``icmp:`` block
overrides them key by key. Targets where neither sets anything carry no options
at all (``None``), so they keep the engine's shared sockets and its fast path.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from typing import Any

from common.validate import Validator
from common.yamlsrc import Path

DEFAULT_SIZE = 56  # like ping(8): a 64-byte ICMP message
MAX_SIZE = 65507  # 65535 - 20 (IPv4 header) - 8 (ICMP header)
KEYS = ("source", "size", "dont_fragment", "dscp", "ttl")


@dataclass(frozen=True, slots=True)
class IcmpOptions:
    """What a target asks of its echoes; None means "as the kernel does by default"."""

    source: str | None = None  # IP literal to send from (the socket is bound to it)
    size: int | None = None  # ICMP payload bytes, without the 8-byte ICMP and the IP header (as ping -s)
    dont_fragment: bool | None = None  # True: DF set, never fragmented locally; False: DF clear
    dscp: int | None = None  # 0..63, the upper six bits of the IPv4 TOS / IPv6 traffic class
    ttl: int | None = None  # IPv4 TTL / IPv6 hop limit

    def over(self, base: IcmpOptions | None) -> IcmpOptions:
        """These options with ``base``'s filling the keys left unset."""
        if base is None:
            return self
        return IcmpOptions(*(getattr(self, f.name) if getattr(self, f.name) is not None else getattr(base, f.name)
                             for f in fields(self)))

    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    @property
    def payload_size(self) -> int:
        return DEFAULT_SIZE if self.size is None else self.size


def parse_options(v: Validator, path: Path, raw: Any) -> IcmpOptions | None:
    """An ``icmp:`` mapping (a target's block or a tier's defaults); None after recording errors."""
    before = len(v.errors)
    f = v.mapping(path, raw, KEYS)
    if f is None:
        return None
    values: dict[str, Any] = {}
    if "source" in f:
        values["source"] = _source(v, path + ("source",), f["source"])
    if "size" in f:
        values["size"] = v.integer(path + ("size",), f["size"], lo=0, hi=MAX_SIZE)
    if "dscp" in f:
        values["dscp"] = v.integer(path + ("dscp",), f["dscp"], lo=0, hi=63)
    if "ttl" in f:
        values["ttl"] = v.integer(path + ("ttl",), f["ttl"], lo=1, hi=255)
    if "dont_fragment" in f:
        df = v.boolean(path + ("dont_fragment",), f["dont_fragment"])
        if df is not None:
            values["dont_fragment"] = df
    if len(v.errors) != before:
        return None
    return IcmpOptions(**values)


def _source(v: Validator, path: Path, value: Any) -> str | None:
    # Syntax only: whether the address is local is a fact of the running host, checked at send time.
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    v.error(path, f"must be an IPv4 or IPv6 address literal (got {value!r})")
    return None


def family_problem(source: str, address: str) -> str | None:
    """Why ``source`` cannot send to ``address`` (a literal of the other family), or None (also for names)."""
    try:
        dest = ipaddress.ip_address(address)
    except ValueError:
        return None  # a host name: its family is known only once resolved
    src = ipaddress.ip_address(source)
    if src.version == dest.version:
        return None
    return f"source {source} is IPv{src.version} but address {address} is IPv{dest.version}"
