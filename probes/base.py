"""The probe-kind contract: what a kind implements, and what the agent may call.

A kind is one package under ``probes/`` and one line in ``probes/registry.py``.
It owns, behind ``ProbeKind``:

* its configuration: the per-target block (``settings_key``), shared named
  profiles (``profiles_key``) and the tier keys it reads (``tier_keys``), each
  validated by the kind with the same ``Validator`` (so errors keep FILE:LINE);
* its runtime: ``open()`` returns a ``Probe`` that runs one cycle for one
  target and returns a ``ProbeResult``; expected network failures are results
  with a reason, never exceptions;
* its per-target state: ``new_state()``, ``record()`` of each result into it;
* its metrics: ``families`` (per-target, in exposition order), ``fragments()``
  (this target's lines of each, as bytes, formatted once per result and joined
  at scrape), ``render_tiers()`` and ``Probe.collect()`` for series that are
  not per target.

The agent knows kinds only through this module and the registry. Probes never
touch Prometheus objects; they hand results to the agent, which asks the kind
to record and render them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from common.model import Target, Tier
from common.resolver import Resolver
from common.textfmt import Family, labels
from common.validate import Validator
from common.yamlsrc import Path

# Failure reasons shared by all kinds; a kind may add its own (e.g. "auth").
# They become the `reason` label of lifeline_probe_failures_total, so keep the
# set small and stable.
REASON_TIMEOUT = "timeout"
REASON_UNREACHABLE = "unreachable"
REASON_RESOLVE = "resolve"
REASON_SEND = "send_error"
REASON_INTERNAL = "internal"
REASON_REFUSED = "refused"
REASON_AUTH = "auth"  # credentials refused
REASON_MALFORMED = "malformed"  # a reply we could not parse
REASON_TLS = "tls"  # handshake failed or the chain did not verify
REASON_CERT_EXPIRED = "cert_expired"  # a certificate in the chain is past its not-after
REASON_STATUS = "status"  # an answer arrived with a status the config does not count as up
REASON_BODY_MISMATCH = "body_mismatch"  # an answer arrived but its body is not what the check expects
REASON_TTL_EXCEEDED = "ttl_exceeded"
REASON_FRAG_NEEDED = "frag_needed"  # a don't-fragment packet larger than the path MTU


def target_where(target: Target) -> bytes:
    """``,category="...",site="..."``: added to the label set of the per-target series an alert rule
    reads, so the rule has what a page is routed by without joining lifeline_target_info (at 30,000
    targets each such join read 30,000 info series, ~200-250 ms, bench/bench_scaleout.py)."""
    return ("," + labels((("category", target.category), ("site", target.site)))).encode()


# A tier key's check: (validator, path, raw value) -> the parsed value, or None after recording an error.
TierCheck = Callable[[Validator, Path, Any], Any]


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What a TLS handshake showed: the earliest expiry across every certificate sent, and the leaf."""

    not_after: float  # Unix time; the minimum over the whole presented chain, not just the leaf
    subject: str
    issuer: str
    serial: str  # hex


@dataclass(slots=True)
class ProbeResult:
    """Outcome of one probe cycle against one target.

    Every kind may fill ``phases`` (name, seconds: resolve, connect, tls, ...) and ``tls``;
    the agent exports them as lifeline_probe_duration_seconds{phase} and the lifeline_tls_*
    families, so no kind declares those families itself.
    """

    ok: bool
    reason: str | None = None  # None when ok
    duration: float = 0.0  # seconds the cycle took; exported as phase="total"
    detail: str = ""  # human-readable context for logs, never secrets
    phases: tuple[tuple[str, float], ...] = ()
    tls: TlsInfo | None = None


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """What the agent lends every kind's runtime: shared services, never the application itself."""

    resolver: Resolver


class Probe(ABC):
    """A kind's runtime, one per agent: sockets, engines, caches shared by all its targets."""

    async def start(self) -> None:
        """Open what the kind needs; raise ``common.errors.ProbeUnavailable`` with a remedy if it cannot."""

    async def close(self) -> None:
        """Release sockets and engines."""

    @abstractmethod
    async def run(self, target: Target, tier: Tier, state: Any) -> ProbeResult:
        """One cycle for one target; ``state`` is what the kind's ``new_state`` made for it."""

    def submit(self, target: Target, tier: Tier, state: Any, done: Callable[[ProbeResult], None]) -> bool:
        """Run a cycle on callbacks instead of a task, calling ``done`` at the end; False if it cannot.

        At 1,000 cycles/s a task and its coroutine chain per cycle cost ~10 % of
        the agent's CPU; kinds whose cycle is a few I/O callbacks (ICMP) use this.
        """
        return False

    def collect(self) -> Iterable[str]:
        """Text lines (with HELP and TYPE) of the kind's series that belong to no target."""
        return ()


class ProbeKind(ABC):
    """One kind of probe: configuration, runtime, per-target state and metrics."""

    name: ClassVar[str]
    settings_key: ClassVar[str | None] = None  # the target key of its own block, e.g. "snmp"
    profiles_key: ClassVar[str | None] = None  # a top-level key of shared named profiles
    tier_keys: ClassVar[Mapping[str, TierCheck]] = {}  # tier keys this kind reads, with their checks
    families: ClassVar[tuple[Family, ...]] = ()  # per-target families, in exposition order

    # --- configuration (cheap: `lifeline check` calls only these) ------------

    def default_tier(self, tier: str) -> Any:
        """This kind's part of built-in tier ``tier`` (and of new tiers, given an unknown name)."""
        return None

    def parse_tier(self, v: Validator, path: Path, checked: dict[str, Any], fields: Mapping[str, Any],
                   tier: Tier, base: Any) -> Any:
        """This kind's tier part from its ``checked`` keys over ``base``; cross-field checks go here.

        ``fields`` is the whole raw tier block, so a message can name the key the
        user actually wrote; ``tier`` carries the core keys, already parsed.
        """
        return base

    def parse_profiles(self, v: Validator, raw: Any, path: Path) -> Any:
        return {}

    def parse_settings(self, v: Validator, raw: Any, path: Path, profiles: Any, tier: Tier | None,
                       address: str | None) -> Any:
        """The target's own block (``raw`` is None when absent); None records nothing.

        ``tier`` is the target's tier (None when the tier itself is invalid), for checks
        such as a block's own timeout against the tier's interval; ``address`` the
        target's address as validated (None when invalid), e.g. for a source of its family.
        """
        return None

    def interval(self, tier: Tier, settings: Any = None) -> float:
        """How often a target with ``settings`` in ``tier`` is probed (``settings`` None: the tier's own)."""
        return tier.interval

    # --- runtime -------------------------------------------------------------

    @abstractmethod
    def open(self, ctx: ProbeContext) -> Probe:
        """Build the runtime; heavy imports belong here, so `lifeline check` never pays for them."""

    # --- state and metrics ---------------------------------------------------

    @abstractmethod
    def new_state(self, target: Target, old: Any = None, tier: Tier | None = None) -> Any:
        """Per-target state; ``old`` is the state of the same target before a reload changed it
        (or its tier), ``tier`` the target's tier in the config being applied."""

    @abstractmethod
    def record(self, state: Any, result: ProbeResult) -> None:
        """Fold one result into the target's state (on the event loop)."""

    @abstractmethod
    def fragments(self, state: Any, key: bytes) -> Sequence[bytes]:
        """This target's lines of each of ``families`` (b"" for none); ``key`` is its label set."""

    def render_tiers(self, tiers: Sequence[Tier], out: list[str]) -> None:
        """Append per-tier families of this kind (its thresholds) as text lines."""

    def degraded(self, state: Any, tier: Tier) -> str | None:
        """Why a target that answers is nonetheless degraded (e.g. loss over the tier's threshold), or None.

        Read by the status page from the HTTP thread: keep it a cheap look at the state.
        """
        return None
