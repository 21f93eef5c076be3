"""A DNS cycle: resolve the server, ask once (UDP with TCP fallback, or TCP), judge the reply.

Reasons tell a dead resolver from a missing record: ``timeout`` (no reply),
``refused`` (port unreachable, TCP refused or closed), ``malformed`` (only
replies we could not use arrived), then, for a real reply, ``nxdomain``,
``rcode`` (any other rcode outside ``valid_rcodes``), ``no_answer`` (NOERROR
but no record of the asked type) and ``answer_mismatch`` (``answer_regex``
matched no answer record).
"""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from common.model import Target, Tier
from common.resolver import Resolver
from probes.base import REASON_MALFORMED, REASON_TIMEOUT, Probe
from probes.dns import exchange
from probes.dns.config import DnsSettings
from probes.dns.result import DnsResult
from probes.service import Phases, ProbeFailure, resolve, timeout_of

REASON_RCODE = "rcode"
REASON_NXDOMAIN = "nxdomain"
REASON_NO_ANSWER = "no_answer"
REASON_ANSWER_MISMATCH = "answer_mismatch"
# RFC 8467 / DNS flag day 2020: a payload that avoids IP fragmentation on any path.
EDNS_PAYLOAD = 1232


class DnsProbe(Probe):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def run(self, target: Target, tier: Tier, state: object) -> DnsResult:
        settings: DnsSettings = target.setting("dns")
        phases = Phases.start()
        result = DnsResult(ok=False)
        query = dns.message.make_query(settings.query_name, settings.query_type, use_edns=0,
                                       payload=EDNS_PAYLOAD,
                                       flags=dns.flags.RD if settings.recursion_desired else 0)
        ex = exchange.Exchange(query)
        try:
            async with asyncio.timeout(timeout_of(tier, settings)):
                family, ip = await resolve(self.resolver, target.address, phases)
                reply = await _ask(ex, settings, family, ip, phases, result)
        except ProbeFailure as failure:
            result.reason, result.detail = failure.reason, failure.detail
        except TimeoutError:
            if ex.unusable:
                result.reason = REASON_MALFORMED
                result.detail = (f"tcp reply of {ex.partial} bytes announced, incomplete at the deadline"
                                 if ex.partial else f"{ex.ignored} unusable replies, last: {ex.last_problem}")
            else:
                result.reason, result.detail = REASON_TIMEOUT, f"no reply from {target.address}"
        else:
            judge(reply, settings, result)
        result.phases = tuple(phases.done)
        result.duration = phases.total()
        return result


async def _ask(ex: exchange.Exchange, settings: DnsSettings, family: int, ip: str, phases: Phases,
               result: DnsResult) -> dns.message.Message:
    wire = ex.query.to_wire()
    if settings.transport == "udp":
        reply = await exchange.udp(ex, family, ip, settings.port, wire)
        phases.end("request")
        if not reply.flags & dns.flags.TC:
            return reply
        # Truncated: the answer did not fit; ask the same question over TCP (RFC 7766).
        result.tcp = True
        reply = await exchange.tcp(ex, ip, settings.port, wire, phases)
        phases.end("tcp_request")
        return reply
    result.tcp = True
    reply = await exchange.tcp(ex, ip, settings.port, wire, phases)
    phases.end("request")
    return reply


def judge(reply: dns.message.Message, settings: DnsSettings, result: DnsResult) -> None:
    """Fill ``result`` from the reply that answered our query."""
    rcode = reply.rcode()
    result.rcode = rcode
    result.answers = sum(len(rrset) for rrset in reply.answer)
    result.authority = sum(len(rrset) for rrset in reply.authority)
    result.additional = sum(len(rrset) for rrset in reply.additional)
    if rcode not in settings.valid_rcodes:
        result.reason = REASON_NXDOMAIN if rcode == dns.rcode.NXDOMAIN else REASON_RCODE
        result.detail = f"rcode {dns.rcode.to_text(rcode)}"
        return
    wanted = settings.query_type
    # A CNAME alone is not an answer to an A query: the name it points to is missing.
    if rcode == dns.rcode.NOERROR and not any(
            rrset.rdtype == wanted or wanted == dns.rdatatype.ANY for rrset in reply.answer):
        result.reason = REASON_NO_ANSWER
        result.detail = f"no {dns.rdatatype.to_text(wanted)} record in the answer ({result.answers} records)"
        return
    regex = settings.answer_regex
    if regex is not None:
        texts = [line for rrset in reply.answer for line in rrset.to_text().splitlines()]
        if not any(regex.search(text) for text in texts):
            result.reason = REASON_ANSWER_MISMATCH
            result.detail = f"answer_regex matched none of {len(texts)} records"
            return
    result.ok = True
