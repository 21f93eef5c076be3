"""Every metric the agent exports is defined here, and rendered here.

Probe results land in plain per-target state objects on the event loop. Each
result also re-formats its own target's lines (one text fragment per family,
a few microseconds), so the exposition, assembled on the HTTP thread at most
once per ``min_age`` seconds and cached, only joins and compresses fragments:
at 10k targets that is tens of milliseconds with the GIL held for a few, where
formatting 300k lines per scrape took ~0.6 s and stalled the probe loop.
Per-target families are written directly as text because prometheus_client's
renderer costs ~1 s per scrape at 10k targets (LIBRARIES.md); process metrics
still come from prometheus_client's own collectors.
"""

from __future__ import annotations

import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from bisect import bisect_left
from itertools import accumulate
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from agent import pgzip
from agent.config import Config, Target, Tier
from probes.base import ProbeResult
from probes.icmp import IcmpResult
from probes.registry import KINDS
from probes.snmp import SnmpResult

# smokeping_prober's buckets: 50 µs doubling, up to ~1.6 s.
RTT_BUCKETS = tuple(0.00005 * 2**n for n in range(16))
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


def fmt(value: float) -> str:
    if value.__class__ is float and value == value and not value.is_integer():
        return repr(value)  # the common case first: this runs for every gauge of every result
    if value != value:
        return "NaN"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Histogram:
    """Bucket counts kept non-cumulative (one increment per observation), summed at render."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def text(self, template: bytes, label: bytes) -> bytes:
        """This histogram's lines, from its family's ``histogram_template`` and one target's label set."""
        cumulative = list(accumulate(self.counts))  # a copy: the loop may observe meanwhile
        n = len(cumulative)
        args: list[object] = [label] * (2 * n + 4)
        args[1:2 * n:2] = cumulative
        args[2 * n + 1] = fmt(self.total).encode()
        args[2 * n + 3] = cumulative[-1]
        return template % tuple(args)

    def lines(self, name: str, label_str: str, out: list[str]) -> None:
        sep = "," if label_str else ""
        running = 0
        counts = list(self.counts)  # copy: the loop thread may observe while we render
        for bound, n in zip(self.bounds, counts):
            running += n
            out.append(f'{name}_bucket{{{label_str}{sep}le="{bound:g}"}} {running}')
        running += counts[-1]
        out.append(f'{name}_bucket{{{label_str}{sep}le="+Inf"}} {running}')
        out.append(f"{name}_sum{{{label_str}}} {fmt(self.total)}")
        out.append(f"{name}_count{{{label_str}}} {running}")


def histogram_template(name: str, bounds: tuple[float, ...]) -> bytes:
    """A %-template of a histogram's lines with the label set left open (one per family, shared by all targets)."""
    lines = [f'{name}_bucket{{%s,le="{b:g}"}} %d\n' for b in bounds]
    lines += [f'{name}_bucket{{%s,le="+Inf"}} %d\n', f"{name}_sum{{%s}} %s\n", f"{name}_count{{%s}} %d\n"]
    return "".join(lines).encode()


RTT_TEMPLATE = histogram_template("lifeline_icmp_rtt_seconds", RTT_BUCKETS)


@dataclass(slots=True)
class IcmpState:
    requests: int = 0
    responses: int = 0
    rtt: Histogram = field(default_factory=lambda: Histogram(RTT_BUCKETS))
    last: IcmpResult | None = None

    def record(self, result: IcmpResult) -> None:
        self.requests += result.sent
        self.responses += result.received
        for rtt in result.rtts:
            self.rtt.observe(rtt)
        self.last = result


@dataclass(slots=True)
class SnmpState:
    reboots: int = 0
    last: ProbeResult | None = None
    # Label strings per interface, built once rather than on every render.
    if_keys: dict[tuple[int, str], str] = field(default_factory=dict)
    info_keys: dict[tuple[int, str, str, str], str] = field(default_factory=dict)

    def record(self, result: ProbeResult) -> None:
        # Counted here, not taken from the probe, so it survives the probe resetting
        # its per-target state (settings changed on reload).
        if isinstance(result, SnmpResult) and result.rebooted:
            self.reboots += 1
        self.last = result


# (metric name, IfRow attribute, type, help) for the per-interface SNMP families.
SNMP_IF_FAMILIES = (
    ("lifeline_snmp_if_oper_status", "oper", "gauge", "ifOperStatus (1 up, 2 down, ... as in IF-MIB)."),
    ("lifeline_snmp_if_admin_status", "admin", "gauge", "ifAdminStatus (1 up, 2 down, 3 testing)."),
    ("lifeline_snmp_if_in_octets_total", "in_octets", "counter",
     "Octets received (ifHCInOctets, or ifInOctets where the device has no 64-bit counter)."),
    ("lifeline_snmp_if_out_octets_total", "out_octets", "counter",
     "Octets sent (ifHCOutOctets, or ifOutOctets where the device has no 64-bit counter)."),
    ("lifeline_snmp_if_in_unicast_packets_total", "in_ucast_pkts", "counter", "Unicast packets received."),
    ("lifeline_snmp_if_out_unicast_packets_total", "out_ucast_pkts", "counter", "Unicast packets sent."),
    ("lifeline_snmp_if_in_errors_total", "in_errors", "counter", "ifInErrors."),
    ("lifeline_snmp_if_out_errors_total", "out_errors", "counter", "ifOutErrors."),
    ("lifeline_snmp_if_in_discards_total", "in_discards", "counter", "ifInDiscards."),
    ("lifeline_snmp_if_out_discards_total", "out_discards", "counter", "ifOutDiscards."),
    ("lifeline_snmp_if_speed_bits_per_second", "speed", "gauge", "ifHighSpeed x 10^6, or ifSpeed."),
)


@dataclass(slots=True)
class TargetState:
    target: Target
    key: str  # 'target="..",tier=".."', the label set of per-target series
    up_key: str  # key plus category and site
    info_key: str
    up: int | None = None
    failing: int = 0  # consecutive failed cycles of the probe that decides `up`
    icmp: IcmpState | None = None
    success: dict[str, int] = field(default_factory=dict)
    last_run: dict[str, float] = field(default_factory=dict)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)  # per-kind state of other probes
    # This target's text in each of TARGET_FAMILIES, replaced whole (never mutated) on each result.
    fragments: tuple[bytes, ...] = ()
    index: int = -1  # position in the store's per-family rows
    encoded: tuple[bytes, bytes, bytes] = (b"", b"", b"")  # key, up_key and the info line, as bytes

    def refresh(self) -> None:
        """Re-format this target's lines; called on the loop after each result and on creation.

        Bytes %-formatting with the label sets encoded once: ~15 µs per result
        at 3 echoes, where f-strings per line cost twice that.
        """
        if not self.encoded[0]:
            self.encoded = (self.key.encode(), self.up_key.encode(),
                            b"lifeline_target_info{%s} 1\n" % self.info_key.encode())
        key, up_key, info = self.encoded
        frags = [b""] * len(TARGET_FAMILIES)
        if self.up is not None:
            frags[0] = b"lifeline_target_up{%s} %d\n" % (up_key, self.up)
            frags[1] = b"lifeline_target_consecutive_failures{%s} %d\n" % (key, self.failing)
        frags[2] = info
        if self.success:
            frags[3] = b"".join([b'lifeline_probe_success{%s,probe="%s"} %d\n' % (key, k.encode(), v)
                                 for k, v in self.success.items()])
        if self.last_run:
            frags[4] = b"".join([b'lifeline_probe_last_run_timestamp_seconds{%s,probe="%s"} %.3f\n'
                                 % (key, k.encode(), v) for k, v in self.last_run.items()])
        if self.failures:
            frags[5] = b"".join([b'lifeline_probe_failures_total{%s,probe="%s",reason="%s"} %d\n'
                                 % (key, k.encode(), r.encode(), n) for (k, r), n in self.failures.items()])
        icmp = self.icmp
        if icmp is not None:
            frags[6] = b"lifeline_icmp_requests_total{%s} %d\n" % (key, icmp.requests)
            frags[7] = b"lifeline_icmp_responses_total{%s} %d\n" % (key, icmp.responses)
            frags[8] = icmp.rtt.text(RTT_TEMPLATE, key)
            r = icmp.last
            if r is not None and r.sent:
                frags[9] = b"lifeline_icmp_loss_ratio{%s} %s\n" % (key, fmt(r.loss).encode())
                rtts = r.rtts
                if rtts:
                    frags[10] = b"lifeline_icmp_jitter_seconds{%s} %s\n" % (key, fmt(r.jitter).encode())
                    frags[11] = b"lifeline_icmp_rtt_min_seconds{%s} %s\n" % (key, fmt(min(rtts)).encode())
                    frags[12] = b"lifeline_icmp_rtt_avg_seconds{%s} %s\n" % (key, fmt(sum(rtts) / len(rtts)).encode())
                    frags[13] = b"lifeline_icmp_rtt_max_seconds{%s} %s\n" % (key, fmt(max(rtts)).encode())
        self.fragments = tuple(frags)


# Per-target families, in exposition order; TargetState.refresh writes one fragment for each.
TARGET_FAMILIES = (
    ("lifeline_target_up", "gauge", "1 if the target answered its last probe cycle, else 0."),
    ("lifeline_target_consecutive_failures", "gauge",
     "Failed cycles in a row of the probe that decides lifeline_target_up; 0 when it last succeeded."),
    ("lifeline_target_info", "gauge", "Target metadata; value is always 1."),
    ("lifeline_probe_success", "gauge", "1 if the last cycle of this probe succeeded."),
    ("lifeline_probe_last_run_timestamp_seconds", "gauge", "Unix time the last cycle of this probe ended."),
    ("lifeline_probe_failures_total", "counter", "Failed probe cycles by reason."),
    ("lifeline_icmp_requests_total", "counter", "ICMP echo requests sent."),
    ("lifeline_icmp_responses_total", "counter", "ICMP echo replies received within the timeout."),
    ("lifeline_icmp_rtt_seconds", "histogram", "Round-trip time of ICMP echo replies."),
    ("lifeline_icmp_loss_ratio", "gauge", "Share of echoes lost in the last cycle."),
    ("lifeline_icmp_jitter_seconds", "gauge", "Mean absolute difference of consecutive RTTs in the last cycle."),
    ("lifeline_icmp_rtt_min_seconds", "gauge", "Min RTT of the last cycle's replies."),
    ("lifeline_icmp_rtt_avg_seconds", "gauge", "Avg RTT of the last cycle's replies."),
    ("lifeline_icmp_rtt_max_seconds", "gauge", "Max RTT of the last cycle's replies."),
)
_FAMILY_HEADERS = tuple(f"# HELP {n} {h}\n# TYPE {n} {k}\n".encode() for n, k, h in TARGET_FAMILIES)
_CHUNK_TARGETS = 1000  # targets per rendered piece: fewer GIL round trips than 250 (scrape p50 80-94 vs 88-110 ms)


def _target_state(target: Target) -> TargetState:
    key = labels((("target", target.name), ("tier", target.tier)))
    up_key = labels((("target", target.name), ("tier", target.tier), ("category", target.category),
                     ("site", target.site)))
    info_key = labels((("target", target.name), ("tier", target.tier), ("category", target.category),
                       ("site", target.site), ("address", target.address), *target.labels))
    state = TargetState(target=target, key=key, up_key=up_key, info_key=info_key,
                        icmp=IcmpState() if "icmp" in target.probes else None)
    state.refresh()
    return state


@dataclass
class AgentStatus:
    """Lifecycle facts for self-metrics; written by the agent, read at render."""

    version: str = "0.0.0"
    config_digest: str = ""
    reload_ok: bool = True
    reload_success_time: float = 0.0
    icmp_ignored: dict[str, int] = field(default_factory=dict)
    scheduler_stats: Callable[[], dict[str, Any]] | None = None
    tasks: int = 0  # asyncio tasks, sampled on the loop (all_tasks() is not safe from this thread)


class MetricsStore:
    """Per-target state plus self-metrics; the scheduler calls ``record`` for each result."""

    def __init__(self, status: AgentStatus | None = None, clock: Callable[[], float] = time.time) -> None:
        self.status = status or AgentStatus()
        self.targets: dict[str, TargetState] = {}
        self.tiers: dict[str, Tier] = {}
        self.lag: dict[str, Histogram] = {}
        self.cycle: dict[tuple[str, str], Histogram] = {}
        self.in_use: list[tuple[str, str]] = []
        self._rows: tuple[list[bytes], ...] = tuple([] for _ in TARGET_FAMILIES)
        self._clock = clock

    def apply_config(self, config: Config) -> None:
        """Keep state (counters, histograms) of targets whose name and labels are unchanged."""
        fresh: dict[str, TargetState] = {}
        for target in config.targets:
            old = self.targets.get(target.name)
            if old is not None and old.target.tier == target.tier and old.target.identity() == target.identity():
                fresh[target.name] = old
            elif old is not None and old.target.tier == target.tier:
                state = _target_state(target)
                state.icmp = old.icmp if state.icmp is not None else None
                state.up, state.success, state.failures = old.up, old.success, old.failures
                state.failing = old.failing
                state.last_run, state.extra = old.last_run, old.extra
                state.refresh()
                fresh[target.name] = state
            else:
                fresh[target.name] = _target_state(target)
        # Per family, every target's fragment in config order: a scrape joins these lists
        # in C without visiting targets; each result replaces its own entries.
        rows: tuple[list[bytes], ...] = tuple([] for _ in TARGET_FAMILIES)
        for index, state in enumerate(fresh.values()):
            state.index = index
            for row, fragment in zip(rows, state.fragments):
                row.append(fragment)
        self._rows = rows
        self.targets = fresh  # one assignment: the render thread sees old or new, never half
        self.tiers = dict(config.tiers)
        # (tier, probe) pairs in use: their skip counters are exported from zero, so increase() sees the first.
        self.in_use = sorted({(t.tier, k) for t in config.targets for k in t.probes})
        for tier in config.tiers:
            self.lag.setdefault(tier, Histogram(LAG_BUCKETS))

    def record(self, target: Target, kind: str, result: ProbeResult, lag: float) -> None:
        state = self.targets.get(target.name)
        if state is None or state.target is not target and state.target.identity() != target.identity():
            return  # result of a target removed or changed by a reload while it was probing
        now = self._clock()
        state.last_run[kind] = now
        state.success[kind] = int(result.ok)
        if not result.ok:
            state.failures[(kind, result.reason or "unknown")] += 1
        if kind == "icmp" and state.icmp is not None:
            state.icmp.record(result)  # type: ignore[arg-type]
        elif kind == "snmp":
            snmp = state.extra.get("snmp")
            if snmp is None:
                snmp = state.extra["snmp"] = SnmpState()
            snmp.record(result)
        if kind == ("icmp" if state.icmp is not None else target.probes[0]):
            state.up = int(result.ok)
            state.failing = 0 if result.ok else state.failing + 1
        state.refresh()
        index = state.index
        for row, fragment in zip(self._rows, state.fragments):
            row[index] = fragment
        lag_hist = self.lag.get(target.tier)
        if lag_hist is None:  # not setdefault(): that built a throw-away Histogram per result
            lag_hist = self.lag[target.tier] = Histogram(LAG_BUCKETS)
        lag_hist.observe(max(lag, 0.0))
        key = (target.tier, kind)
        hist = self.cycle.get(key)
        if hist is None:
            hist = self.cycle[key] = Histogram(CYCLE_BUCKETS)
        hist.observe(result.duration)

    # --- rendering -------------------------------------------------------

    def render(self) -> bytes:
        return b"".join(self.render_chunks())

    def render_chunks(self) -> Iterator[bytes]:
        """The exposition in pieces of a few MB at most, joined in C from the per-family rows.

        No per-target Python work at scrape time; bounded pieces keep each GIL-holding
        join short (the loop waits behind it) and let gzip stream without the whole
        25 MB text of 10k targets ever being held at once.
        """
        states = list(self.targets.values())
        for header, row in zip(_FAMILY_HEADERS, self._rows):
            yield header
            for start in range(0, len(row), _CHUNK_TARGETS):
                yield b"".join(row[start:start + _CHUNK_TARGETS])
        out: list[str] = []
        self._render_snmp([(s, s.extra["snmp"]) for s in states if "snmp" in s.extra], out)
        self._render_tiers(states, out)
        self._render_self(out)
        yield ("\n".join(out) + "\n").encode()

    @staticmethod
    def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    def _render_snmp(self, states: list[tuple[TargetState, SnmpState]], out: list[str]) -> None:
        if not states:
            return
        f = self._family
        f(out, "lifeline_snmp_up", "gauge", "1 if the last SNMP poll of the target succeeded.")
        out.extend(f"lifeline_snmp_up{{{s.key}}} {int(bool(st.last and st.last.ok))}" for s, st in states)
        f(out, "lifeline_snmp_poll_duration_seconds", "gauge", "Duration of the last SNMP poll.")
        out.extend(f"lifeline_snmp_poll_duration_seconds{{{s.key}}} {fmt(st.last.duration)}"
                   for s, st in states if st.last is not None)
        f(out, "lifeline_snmp_reboots_total", "counter",
          "Times sysUpTime went backwards (device or agent restarted) since Lifeline started.")
        out.extend(f"lifeline_snmp_reboots_total{{{s.key}}} {st.reboots}" for s, st in states)
        # Values of a failed poll are not shown: stale numbers would look current.
        ok = [(s, st, st.last) for s, st in states if isinstance(st.last, SnmpResult) and st.last.ok]
        f(out, "lifeline_snmp_sys_uptime_seconds", "gauge", "sysUpTime of the SNMP agent.")
        out.extend(f"lifeline_snmp_sys_uptime_seconds{{{s.key}}} {fmt(r.sys_uptime)}"
                   for s, _, r in ok if r.sys_uptime is not None)
        f(out, "lifeline_snmp_info", "gauge", "sysName and sysDescr; value is always 1.")
        out.extend(f'lifeline_snmp_info{{{s.key},sysname="{escape(r.sys_name)}",sysdescr="{escape(r.sys_descr)}"}} 1'
                   for s, _, r in ok)
        f(out, "lifeline_snmp_oid_value", "gauge", "Extra scalar OIDs configured for the target, by name.")
        for s, _, r in ok:
            out.extend(f'lifeline_snmp_oid_value{{{s.key},name="{n}"}} {fmt(v)}' for n, v in r.oids.items())
        rows = []
        for s, st, r in ok:
            if len(st.if_keys) > 4 * len(r.interfaces) + 16:
                st.if_keys.clear()
                st.info_keys.clear()
            for row in r.interfaces:
                key = st.if_keys.get((row.ifindex, row.ifname))
                if key is None:
                    key = st.if_keys[(row.ifindex, row.ifname)] = (
                        f'{s.key},ifindex="{row.ifindex}",ifname="{escape(row.ifname)}"')
                rows.append((key, row))
        for name, attr, kind, help_text in SNMP_IF_FAMILIES:
            f(out, name, kind, help_text)
            for key, row in rows:
                v = getattr(row, attr)
                if v is not None:
                    out.append(f"{name}{{{key}}} {v}")
        f(out, "lifeline_snmp_if_info", "gauge", "Interface names and alias; value is always 1.")
        for s, st, r in ok:
            for row in r.interfaces:
                ikey = (row.ifindex, row.ifname, row.ifalias, row.ifdescr)
                line = st.info_keys.get(ikey)
                if line is None:
                    line = st.info_keys[ikey] = (
                        f'lifeline_snmp_if_info{{{s.key},ifindex="{row.ifindex}",ifname="{escape(row.ifname)}",'
                        f'ifalias="{escape(row.ifalias)}",ifdescr="{escape(row.ifdescr)}"}} 1')
                out.append(line)

    def _render_tiers(self, states: list[TargetState], out: list[str]) -> None:
        f = self._family
        counts = Counter(s.target.tier for s in states)
        tiers = sorted(self.tiers.values(), key=lambda t: (t.priority, t.name))
        f(out, "lifeline_tier_targets", "gauge", "Targets configured per tier.")
        out.extend(f'lifeline_tier_targets{{tier="{escape(t.name)}"}} {counts.get(t.name, 0)}' for t in tiers)
        f(out, "lifeline_tier_info", "gauge", "Tier metadata; value is always 1.")
        out.extend(f'lifeline_tier_info{{tier="{escape(t.name)}",severity="{t.severity}"}} 1' for t in tiers)
        for attr, name, help_text in (
            ("priority", "lifeline_tier_priority", "Tier priority; 0 is the most urgent."),
            ("interval", "lifeline_tier_interval_seconds", "Probe interval of the tier."),
            ("timeout", "lifeline_tier_timeout_seconds", "Per-echo timeout of the tier."),
            ("packets", "lifeline_tier_packets", "Echoes sent per cycle in the tier."),
            ("loss_warn", "lifeline_tier_loss_warn_ratio", "Loss ratio above which the tier warns."),
            ("loss_crit", "lifeline_tier_loss_crit_ratio", "Loss ratio above which the tier is critical."),
            ("rtt_warn", "lifeline_tier_rtt_warn_seconds", "RTT above which the tier warns."),
            ("rtt_crit", "lifeline_tier_rtt_crit_seconds", "RTT above which the tier is critical."),
        ):
            f(out, name, "gauge", help_text)
            out.extend(f'{name}{{tier="{escape(t.name)}"}} {fmt(getattr(t, attr))}' for t in tiers)
        f(out, "lifeline_tier_probe_interval_seconds", "gauge", "How often each probe kind runs in the tier.")
        out.extend(f'lifeline_tier_probe_interval_seconds{{tier="{escape(t.name)}",probe="{k}"}} '
                   f"{fmt(KINDS[k].interval(t))}" for t in tiers for k in sorted(KINDS))

    def _render_self(self, out: list[str]) -> None:
        f, st = self._family, self.status
        f(out, "lifeline_scheduler_lag_seconds", "histogram", "Delay between a cycle's due time and its start.")
        for tier, hist in sorted(self.lag.items()):
            hist.lines("lifeline_scheduler_lag_seconds", f'tier="{escape(tier)}"', out)
        f(out, "lifeline_probe_cycle_duration_seconds", "histogram", "Duration of probe cycles.")
        for (tier, kind), hist in sorted(self.cycle.items()):
            hist.lines("lifeline_probe_cycle_duration_seconds", f'tier="{escape(tier)}",probe="{kind}"', out)
        sched = st.scheduler_stats() if st.scheduler_stats else {}
        f(out, "lifeline_scheduler_skipped_cycles_total", "counter",
          "Cycles not run because the agent fell behind or the previous cycle was still running.")
        skipped = {**dict.fromkeys(self.in_use, 0), **sched.get("skipped", {})}
        out.extend(f'lifeline_scheduler_skipped_cycles_total{{tier="{escape(t)}",probe="{k}"}} {n}'
                   for (t, k), n in sorted(skipped.items()))
        f(out, "lifeline_scheduler_in_flight", "gauge", "Probe cycles running now.")
        out.append(f"lifeline_scheduler_in_flight {sched.get('in_flight', 0)}")
        f(out, "lifeline_scheduler_queued", "gauge", "Due cycles waiting for a free slot.")
        out.append(f"lifeline_scheduler_queued {sched.get('queued', 0)}")
        f(out, "lifeline_asyncio_tasks", "gauge", "asyncio tasks alive in the agent (leak watch).")
        out.append(f"lifeline_asyncio_tasks {st.tasks}")
        f(out, "lifeline_icmp_replies_ignored_total", "counter",
          "ICMP packets received that matched no outstanding echo, by reason.")
        out.extend(f'lifeline_icmp_replies_ignored_total{{reason="{r}"}} {n}'
                   for r, n in sorted(st.icmp_ignored.items()))
        f(out, "lifeline_build_info", "gauge", "Build information; value is always 1.")
        out.append(f'lifeline_build_info{{version="{escape(st.version)}",'
                   f'python_version="{platform.python_version()}"}} 1')
        f(out, "lifeline_config_info", "gauge", "SHA-256 of the loaded configuration files.")
        out.append(f'lifeline_config_info{{digest="{st.config_digest}"}} 1')
        f(out, "lifeline_config_last_reload_successful", "gauge", "1 if the last configuration load succeeded.")
        out.append(f"lifeline_config_last_reload_successful {int(st.reload_ok)}")
        f(out, "lifeline_config_last_reload_success_timestamp_seconds", "gauge",
          "Unix time of the last successful configuration load.")
        out.append(f"lifeline_config_last_reload_success_timestamp_seconds {st.reload_success_time:.3f}")


class Exposition:
    """Renders a store at most every ``min_age`` seconds, from whatever thread scrapes, and caches it."""

    def __init__(self, store: MetricsStore, min_age: float = 1.0) -> None:
        self.store = store
        self.min_age = min_age
        self._lock = threading.Lock()
        self._rendered_at = float("-inf")
        self._plain = b""
        self._gzipped = b""
        self._pool: ThreadPoolExecutor | None = None
        self._process = CollectorRegistry()
        ProcessCollector(registry=self._process)

    def invalidate(self) -> None:
        """Make the next scrape render afresh (after a reload, so removed targets vanish at once)."""
        self._rendered_at = float("-inf")

    def get(self, gzipped: bool = False) -> bytes:
        with self._lock:
            now = time.monotonic()
            if now - self._rendered_at >= self.min_age:
                self._plain = b""
                self._gzipped = b""
                self._rendered_at = now
            if gzipped:
                if not self._gzipped:
                    # Compressed piece by piece in two threads (agent/pgzip.py); zlib releases
                    # the GIL, so the probe loop runs meanwhile. The plain text is built only if
                    # a client asks for it (Prometheus asks for gzip).
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gzip",
                                                        initializer=pgzip.lower_priority)
                    self._gzipped = pgzip.compress(self._chunks(), self._pool)
                return self._gzipped
            if not self._plain:
                self._plain = b"".join(self._chunks())
            return self._plain

    def _chunks(self) -> Iterator[bytes]:
        yield from self.store.render_chunks()
        yield generate_latest(self._process)
