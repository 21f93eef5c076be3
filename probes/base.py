"""The probe contract: what every probe kind implements and returns.

Probes never touch Prometheus. They return a result value (success or a failure
with a reason); the scheduler hands results to ``agent.metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

# Failure reasons shared by all probes; a probe may add its own (e.g. "auth").
# They become the `reason` label of lifeline_probe_failures_total, so keep the
# set small and stable.
REASON_TIMEOUT = "timeout"
REASON_UNREACHABLE = "unreachable"
REASON_RESOLVE = "resolve"
REASON_SEND = "send_error"
REASON_INTERNAL = "internal"


@dataclass(slots=True)
class ProbeResult:
    """Outcome of one probe cycle against one target."""

    kind: ClassVar[str] = "generic"
    ok: bool
    reason: str | None = None  # None when ok
    duration: float = 0.0  # seconds the cycle took
    detail: str = ""  # human-readable context for logs, never secrets


@runtime_checkable
class Probe(Protocol):
    """One probe kind, shared by every target that uses it.

    ``start`` and ``close`` bracket the probe's life (sockets, engines);
    ``run`` performs one cycle for one target and must not raise for expected
    network failures: it returns a result with ``ok=False`` and a reason.
    """

    kind: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def run(self, target: Any, tier: Any) -> ProbeResult: ...
