"""A small client for the Prometheus HTTP API: instant and range queries, nothing else."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from common.errors import LifelineError

# Prometheus refuses a range query of more than 11,000 points per series; stay clear of it.
MAX_POINTS = 10_000

Series = dict[str, Any]  # {"metric": {label: value}, "values": [(ts, value), ...]}


class ReportError(LifelineError):
    """The report cannot be produced; the message says why, for the operator."""


class PrometheusUnreachable(ReportError):
    """No HTTP answer from Prometheus (refused, timeout, DNS, TLS)."""


class PrometheusFailed(ReportError):
    """Prometheus answered, but with an error or something that is not its API."""


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal for ``value`` (label values can hold quotes)."""
    return json.dumps(value, ensure_ascii=False)


def promql_duration(seconds: float) -> str:
    """Milliseconds, the finest unit PromQL takes; at least 1ms."""
    return f"{max(1, int(round(seconds * 1000)))}ms"


class PromClient:
    """Queries ``base_url`` (``http://host:9090``, or with a path prefix); ``urlopen`` is injectable."""

    def __init__(self, base_url: str, timeout: float = 30.0,
                 urlopen: Callable[..., Any] = urllib.request.urlopen) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._urlopen = urlopen
        self.requests = 0  # for tests and the footer: how many API calls a report took

    def query(self, expr: str, at: float) -> list[Series]:
        """Instant query at ``at``; each sample becomes a one-point series."""
        data = self._call("query", {"query": expr, "time": _ts(at)})
        if data["resultType"] != "vector":
            raise PrometheusFailed(f"Prometheus returned a {data['resultType']} for {expr!r}, expected a vector")
        return [{"metric": r["metric"], "values": [_point(r["value"])]} for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Range query at start, start+step, ... <= end, split into requests under the point limit."""
        merged: dict[tuple[tuple[str, str], ...], Series] = {}
        count = int(math.floor((end - start) / step + 1e-9)) + 1
        for first in range(0, count, MAX_POINTS):
            last = min(count, first + MAX_POINTS) - 1
            data = self._call("query_range", {"query": expr, "start": _ts(start + first * step),
                                              "end": _ts(start + last * step), "step": _ts(step)})
            for r in data["result"]:
                key = tuple(sorted(r["metric"].items()))
                series = merged.setdefault(key, {"metric": r["metric"], "values": []})
                series["values"].extend(_point(v) for v in r["values"])
        return list(merged.values())

    def _call(self, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/{endpoint}"
        # POST: a report's queries name targets and can outgrow a URL.
        request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.requests += 1
        try:
            with self._urlopen(request, timeout=self.timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusUnreachable(f"cannot reach Prometheus at {self.base_url}: {reason}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusFailed(f"{url} answered HTTP {status} with something that is not the Prometheus API "
                                   f"(check --prometheus.url): {body[:120]!r}") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error", "no error message") if isinstance(answer, dict) else answer
            raise PrometheusFailed(f"Prometheus at {self.base_url} refused a query (HTTP {status}): {error}\n"
                                   f"  query: {params.get('query', '')}")
        return answer["data"]


def _ts(seconds: float) -> str:
    return f"{seconds:.3f}"


def _point(pair: list[Any]) -> tuple[float, float]:
    return float(pair[0]), float(pair[1])
