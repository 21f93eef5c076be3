"""Small pieces the benchmark scripts share."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check`` until it is truthy (connection errors count as "not yet"); exit with a message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
