"""http's per-target state and families: the last cycle's status, redirects and body figures."""

from __future__ import annotations

from dataclasses import dataclass

from common.textfmt import Family
from probes.base import ProbeResult
from probes.http.result import HttpResult

FAMILIES = (
    Family("lifeline_http_status_code", "gauge", "Status code of the last response of the last cycle; 0 when none "
                                                 "arrived."),
    Family("lifeline_http_redirects", "gauge", "Redirects followed in the last cycle."),
    Family("lifeline_http_content_length_bytes", "gauge", "Content-Length the last response declared."),
    Family("lifeline_http_body_bytes", "gauge", "Body bytes read in the last cycle, at most body_limit."),
)


@dataclass(slots=True)
class HttpState:
    status: int | None = None  # None until a cycle has run
    redirects: int = 0
    content_length: int | None = None
    body_bytes: int = 0


def record(state: HttpState, result: ProbeResult) -> None:
    if not isinstance(result, HttpResult):  # a crashed cycle (reason "internal"): no response seen
        state.status, state.redirects, state.content_length, state.body_bytes = 0, 0, None, 0
        return
    state.status, state.redirects = result.status, result.redirects
    state.content_length, state.body_bytes = result.content_length, result.body_bytes


def fragments(state: HttpState, key: bytes) -> list[bytes]:
    if state.status is None:
        return [b"", b"", b"", b""]
    return [b"lifeline_http_status_code{%s} %d\n" % (key, state.status),
            b"lifeline_http_redirects{%s} %d\n" % (key, state.redirects),
            b"" if state.content_length is None else
            b"lifeline_http_content_length_bytes{%s} %d\n" % (key, state.content_length),
            b"lifeline_http_body_bytes{%s} %d\n" % (key, state.body_bytes)]
