"""The agent's exception tree, in one place.

Expected network failures are not exceptions (probes return results with a
reason); these are for the agent's own inputs and lifecycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.validate import ConfigError


class LifelineError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigInvalid(LifelineError):
    """The configuration failed validation; ``errors`` holds every problem found."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __reduce__(self) -> tuple[type, tuple[list[ConfigError]]]:
        return ConfigInvalid, (self.errors,)  # pickled by the reload's parser process (agent/child.py)


class ProbeUnavailable(LifelineError):
    """A probe cannot run on this host (e.g. no permission for ICMP sockets)."""
