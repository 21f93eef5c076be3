"""HTTP/1.1 GET (or another method) with per-phase timings, status and body checks, redirects."""

from probes.http.kind import HttpKind

__all__ = ["HttpKind"]
