"""ICMP's per-target state and its families: counters, the RTT histogram, the last cycle's figures."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.textfmt import Family, Histogram, histogram_template
from probes.base import ProbeResult
from probes.icmp.result import IcmpResult, jitter, loss

# smokeping_prober's buckets: 50 µs doubling, up to ~1.6 s.
RTT_BUCKETS = tuple(0.00005 * 2**n for n in range(16))
RTT_TEMPLATE = histogram_template("lifeline_icmp_rtt_seconds", RTT_BUCKETS)

FAMILIES = (
    Family("lifeline_icmp_requests_total", "counter", "ICMP echo requests sent."),
    Family("lifeline_icmp_responses_total", "counter", "ICMP echo replies received within the timeout."),
    Family("lifeline_icmp_rtt_seconds", "histogram", "Round-trip time of ICMP echo replies."),
    Family("lifeline_icmp_loss_ratio", "gauge", "Share of echoes lost in the last cycle. Labelled like lifeline_target_up."),
    Family("lifeline_icmp_jitter_seconds", "gauge", "Mean absolute difference of consecutive RTTs in the last cycle."),
    Family("lifeline_icmp_rtt_min_seconds", "gauge", "Min RTT of the last cycle's replies."),
    Family("lifeline_icmp_rtt_avg_seconds", "gauge",
           "Avg RTT of the last cycle's replies; absent after a cycle without one. Labelled like lifeline_target_up."),
    Family("lifeline_icmp_rtt_max_seconds", "gauge", "Max RTT of the last cycle's replies."),
)


def rtt_histogram() -> Histogram:
    return Histogram(RTT_BUCKETS)


# The status page's loss and RTT are moving averages over about 12 cycles (1 min of P0), as the alert
# rules look over 5m rather than at one noisy 5-echo cycle. Two floats per target rather than a
# window of counters: a 13-entry deque per target cost ~20 MB at 10,000 targets (bench_icmp RSS).
ALPHA = 2 / (12 + 1)


@dataclass(slots=True)
class IcmpState:
    requests: int = 0
    responses: int = 0
    # None while the tier's rtt_histogram is off (see IcmpTier).
    rtt: Histogram | None = field(default_factory=rtt_histogram)
    # The last cycle's echoes, for its gauges: its two figures rather than the whole IcmpResult,
    # which (with its duration and address) cost ~1.3 MB more at 10,000 targets.
    last_sent: int = 0
    last_rtts: tuple[float, ...] = ()
    avg_loss: float | None = None  # moving averages over ~12 cycles, for the status page
    avg_rtt: float | None = None
    # ',category="...",site="..."' for the counters, loss and avg RTT (see fragments), set by IcmpKind.new_state.
    where: bytes = b""


def window_figures(state: IcmpState) -> tuple[float, float | None] | None:
    """(loss ratio, mean RTT or None) averaged over the last ~12 cycles, or None before a cycle."""
    return None if state.avg_loss is None else (state.avg_loss, state.avg_rtt)


def record(state: IcmpState, result: ProbeResult) -> None:
    if not isinstance(result, IcmpResult):
        return  # a cycle that crashed (reason "internal") sent nothing we know of
    state.requests += result.sent
    state.responses += result.received
    hist = state.rtt
    if hist is not None:
        observe = hist.observe
        for rtt in result.rtts:
            observe(rtt)
    state.last_sent, state.last_rtts = result.sent, result.rtts
    if result.sent:
        lost = result.loss
        state.avg_loss = lost if state.avg_loss is None else state.avg_loss + ALPHA * (lost - state.avg_loss)
        rtts = result.rtts
        if rtts:
            rtt = sum(rtts) / len(rtts)
            state.avg_rtt = rtt if state.avg_rtt is None else state.avg_rtt + ALPHA * (rtt - state.avg_rtt)


def fragments(state: IcmpState, key: bytes) -> list[bytes]:
    """Bytes %-formatting with the label set encoded once: ~15 µs per result at 3 echoes.

    The two counters, the loss and the avg RTT also carry the target's category and site, as
    lifeline_target_up does: the 5m windows and the SLA buckets, averaged from the two gauges by
    the rules, keep them without a join on lifeline_target_info, which cost ~250 ms per rule at
    30,000 targets (selecting 30,000 info series with all their labels).
    """
    frags = [b"lifeline_icmp_requests_total{%s%s} %d\n" % (key, state.where, state.requests),
             b"lifeline_icmp_responses_total{%s%s} %d\n" % (key, state.where, state.responses),
             b"" if state.rtt is None else state.rtt.text(RTT_TEMPLATE, key), b"", b"", b"", b"", b""]
    sent, rtts = state.last_sent, state.last_rtts
    if sent:
        # %a is repr() for these finite floats, without a call to fmt() and an encode() each.
        frags[3] = b"lifeline_icmp_loss_ratio{%s%s} %a\n" % (key, state.where, loss(sent, rtts))
        if rtts:
            frags[4] = b"lifeline_icmp_jitter_seconds{%s} %a\n" % (key, jitter(rtts))
            frags[5] = b"lifeline_icmp_rtt_min_seconds{%s} %a\n" % (key, min(rtts))
            frags[6] = b"lifeline_icmp_rtt_avg_seconds{%s%s} %a\n" % (key, state.where, sum(rtts) / len(rtts))
            frags[7] = b"lifeline_icmp_rtt_max_seconds{%s} %a\n" % (key, max(rtts))
    return frags
