"""The dns kind's per-target families: the last reply's rcode and section sizes."""

from __future__ import annotations

from dataclasses import dataclass

from common.textfmt import Family
from probes.base import ProbeResult
from probes.dns.result import DnsResult

# The rcode is one gauge with its number rather than a label per rcode name: the label
# set stays {target, tier}, and `lifeline_dns_rcode != 0` is the whole alert.
FAMILIES = (
    Family("lifeline_dns_rcode", "gauge",
           "Response code of the last reply (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED; absent without a reply)."),
    Family("lifeline_dns_answers", "gauge", "Records in the answer section of the last reply."),
    Family("lifeline_dns_authority_records", "gauge", "Records in the authority section of the last reply."),
    Family("lifeline_dns_additional_records", "gauge", "Records in the additional section of the last reply (no OPT)."),
    Family("lifeline_dns_tcp", "gauge", "1 if the last reply came over TCP (configured, or UDP reply truncated)."),
)


@dataclass(slots=True)
class DnsState:
    last: DnsResult | None = None  # the last cycle that got a reply of ours; None after one that did not


def record(state: DnsState, result: ProbeResult) -> None:
    state.last = result if isinstance(result, DnsResult) and result.rcode is not None else None


def fragments(state: DnsState, key: bytes) -> list[bytes]:
    r = state.last
    if r is None:
        return [b"", b"", b"", b"", b""]
    return [b"lifeline_dns_rcode{%s} %d\n" % (key, r.rcode),
            b"lifeline_dns_answers{%s} %d\n" % (key, r.answers),
            b"lifeline_dns_authority_records{%s} %d\n" % (key, r.authority),
            b"lifeline_dns_additional_records{%s} %d\n" % (key, r.additional),
            b"lifeline_dns_tcp{%s} %d\n" % (key, r.tcp)]
