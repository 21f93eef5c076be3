r"""The ``dns:`` target block: what to ask the server at the target's address, and what counts as up.

    targets:
      - name: resolver-1
        address: 198.51.100.53
        probes: [dns]
        dns: {query_name: portal.gov.example, query_type: A, answer_regex: '\sA\s192\.0\.2\.10$'}

Names, types and rcodes are checked with dnspython's own tables, so anything
it can put on the wire is accepted and nothing else gets past ``lifeline check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from common.model import Tier
from common.validate import Validator
from common.yamlsrc import Path
from probes.service import TIMING_KEYS, Timing, parse_port, parse_timing

if TYPE_CHECKING:
    import dns.name

# dnspython is imported by the functions that check a `dns:` block, not here: an agent without DNS
# targets never loads it (0.7 MB of heap, tracemalloc, for dns.name, rcode, rdatatype and exception).

KEYS = ("query_name", "query_type", "port", "transport", "valid_rcodes", "answer_regex",
        "recursion_desired", *TIMING_KEYS)
TRANSPORTS = ("udp", "tcp")
NOERROR = 0  # dns.rcode.NOERROR
TYPE_A = 1  # dns.rdatatype.A


@cache
def _rcode_names() -> tuple[str, ...]:
    import dns.rcode

    return tuple(dns.rcode.Rcode.__members__)


@cache
def _unaskable() -> frozenset[str]:
    """Meta types other than ANY cannot be asked as a plain query (zone transfers, OPT, TSIG ...)."""
    import dns.rdatatype

    return frozenset({t.name for t in dns.rdatatype.RdataType if dns.rdatatype.is_metatype(t)} - {"ANY"})


@dataclass(frozen=True, slots=True)
class DnsSettings:
    query_name: dns.name.Name
    query_type: int = TYPE_A
    port: int = 53
    transport: str = "udp"  # udp falls back to TCP when the reply is truncated
    valid_rcodes: frozenset[int] = frozenset({NOERROR})
    answer_regex: re.Pattern[str] | None = None  # searched in each answer RR's text
    recursion_desired: bool = True
    timing: Timing = Timing()


def parse_settings(v: Validator, raw: Any, path: Path, tier: Tier | None) -> DnsSettings | None:
    """A target's ``dns:`` block; None after recording errors."""
    if raw is None:
        v.error(path, "'dns' is listed in probes but the target has no 'dns' settings (query_name is required)")
        return None
    f = v.mapping(path, raw, KEYS, required=("query_name",))
    if f is None:
        return None
    before = len(v.errors)
    name = _query_name(v, path + ("query_name",), f["query_name"]) if "query_name" in f else None
    rdtype = _query_type(v, path + ("query_type",), f.get("query_type", "A"))
    port = parse_port(v, path + ("port",), f["port"]) if "port" in f else 53
    transport = v.choice(path + ("transport",), f.get("transport", "udp"), TRANSPORTS)
    rcodes = _rcodes(v, path + ("valid_rcodes",), f["valid_rcodes"]) if "valid_rcodes" in f \
        else frozenset({NOERROR})
    regex = _regex(v, path + ("answer_regex",), f["answer_regex"]) if "answer_regex" in f else None
    recursion = v.boolean(path + ("recursion_desired",), f.get("recursion_desired", True))
    timing = parse_timing(v, path, f, tier)
    if len(v.errors) != before or name is None:
        return None
    return DnsSettings(name, rdtype, port, transport, rcodes, regex, recursion, timing)


def _query_name(v: Validator, path: Path, raw: Any) -> dns.name.Name | None:
    import dns.exception
    import dns.name

    text = v.string(path, raw, max_len=1024)
    if text is None:
        return None
    try:
        return dns.name.from_text(text)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        v.error(path, f"not a valid DNS name: {_name_problem(exc)} (got {text!r})")
        return None


def _name_problem(exc: Exception) -> str:
    import dns.name

    if isinstance(exc, dns.name.EmptyLabel):
        return "empty label (two dots in a row, or a leading dot)"
    if isinstance(exc, dns.name.LabelTooLong):
        return "a label is longer than 63 octets"
    if isinstance(exc, dns.name.NameTooLong):
        return "longer than 255 octets"
    return str(exc) or type(exc).__name__


def _query_type(v: Validator, path: Path, raw: Any) -> int | None:
    if not isinstance(raw, str) or not raw:
        v.error(path, f"must be a record type name such as A, AAAA, MX, TXT (got {raw!r})")
        return None
    import dns.exception
    import dns.rdatatype

    try:
        rdtype = dns.rdatatype.from_text(raw.upper())
    except dns.exception.DNSException:
        v.error(path, f"unknown record type {raw!r} (use a name such as A, AAAA, CNAME, MX, NS, SOA, SRV, TXT, "
                      "or TYPEnnn)")
        return None
    if dns.rdatatype.to_text(rdtype) in _unaskable():
        v.error(path, f"{raw!r} cannot be asked as a plain query")
        return None
    return rdtype


def _rcodes(v: Validator, path: Path, raw: Any) -> frozenset[int] | None:
    items = v.seq(path, raw)
    if items is None:
        return None
    if not items:
        v.error(path, "must list at least one rcode")
        return None
    import dns.rcode

    out = set()
    for i, item in enumerate(items):
        name = item.upper() if isinstance(item, str) else item
        if name not in _rcode_names():
            v.error(path + (i,), f"unknown rcode {item!r}; known: {', '.join(_rcode_names())}")
        else:
            out.add(dns.rcode.Rcode[name].value)
    return frozenset(out)


def _regex(v: Validator, path: Path, raw: Any) -> re.Pattern[str] | None:
    text = v.string(path, raw, max_len=1024)
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        v.error(path, f"not a valid regular expression: {exc}")
        return None
