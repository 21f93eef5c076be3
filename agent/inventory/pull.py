"""Target lists pulled from Prometheus http_sd sources: fetch, validate, guard, apply, cache.

Each ``targets_http`` source is polled every ``refresh_interval`` in a thread
(urllib, no proxies, a deadline, a bounded body). A list that fetches and
validates joins the file's targets through ``Reloader.replace``, so the P0
guard and the Plan apply exactly as for a file reload. Anything else (HTTP
error, timeout, refused connection, body over ``max_body_bytes``, invalid
JSON or targets, a refusal by the guard) keeps the list in use, counts in
``lifeline_sd_fetch_failures_total{source,reason}`` and is logged.

The list in use travels with the running ``Config`` (``sd_lists``), so a file
reload keeps it, and is written to ``sd_cache_dir``, so a restart during an
inventory outage probes the last good list.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import structlog

from agent import config as config_mod
from agent.reload import Outcome
from common.errors import ConfigInvalid
from common.model import Tier
from common.textfmt import Family, escape
from common.validate import ConfigError, Validator
from common.yamlsrc import Document
from probes.base import ProbeKind
from probes.tls import client_context

log = structlog.get_logger("lifeline.sd")

REASONS = ("status", "timeout", "refused", "connection", "tls", "too_large", "invalid", "p0_guard")


class FetchError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def fetch(source: config_mod.HttpSdSource) -> bytes:
    """The body of one GET of ``source`` (blocking); FetchError with a reason otherwise."""
    headers = {"Accept": "application/json", "User-Agent": "lifeline",
               "X-Prometheus-Refresh-Interval-Seconds": f"{source.refresh_interval:g}"}
    if source.username is not None:
        pair = f"{source.username}:{source.password.value if source.password else ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    elif source.bearer_token is not None:
        headers["Authorization"] = "Bearer " + source.bearer_token.value
    handlers: list[Any] = [urllib.request.ProxyHandler({})]  # never through an environment proxy
    if source.url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=client_context(source.tls)))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(source.url, headers=headers), timeout=source.timeout) as resp:
            ctype = resp.headers.get("Content-Type", "")
            if not ctype.split(";")[0].strip().lower().endswith("json"):
                raise FetchError("invalid", f"Content-Type {ctype!r}, expected application/json")
            body = resp.read(source.max_body_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise FetchError("status", f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise _os_failure(exc.reason) from None
    except (OSError, ValueError) as exc:
        raise _os_failure(exc) from None
    if len(body) > source.max_body_bytes:
        raise FetchError("too_large", f"body larger than max_body_bytes ({source.max_body_bytes})")
    return body


def _os_failure(exc: Any) -> FetchError:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return FetchError("timeout", "timed out")
    if isinstance(exc, ConnectionRefusedError):
        return FetchError("refused", "connection refused")
    if isinstance(exc, ssl.SSLError):
        return FetchError("tls", str(exc))
    return FetchError("connection", str(exc) or type(exc).__name__)


def parse_list(source: config_mod.HttpSdSource, body: bytes, tiers: Mapping[str, Tier],
               kinds: Mapping[str, ProbeKind]) -> list[tuple[Any, str, str]]:
    """Targets of a fetched body; ConfigInvalid naming the URL and the group/target index."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigInvalid([ConfigError(source.url, 1, "(document)", f"not JSON: {exc}")]) from None
    v = Validator(Document(source.url, data, {}))
    targets = config_mod.sd_targets(v, data, tiers, {}, kinds, source.default_tier)
    if v.errors:
        raise ConfigInvalid(v.errors)
    return targets


def merge(base: config_mod.Config, lists: Mapping[str, bytes], kinds: Mapping[str, ProbeKind]) -> config_mod.Config:
    """``base`` (the files' configuration) with the targets of each configured source's list joined."""
    targets = list(base.targets)
    seen = {t.name: t.source for t in targets}
    pulled: set[str] = set()
    used: list[tuple[str, bytes]] = []
    errors: list[ConfigError] = []
    digest = hashlib.sha256(base.digest.encode())
    for source in base.targets_http:
        body = lists.get(source.url)
        if body is None:
            continue
        try:
            found = parse_list(source, body, base.tiers, kinds)
        except ConfigInvalid as exc:
            errors.extend(exc.errors)
            continue
        for target, where, path in found:
            if target.name in seen:
                errors.append(ConfigError(source.url, 1, path, f"duplicate target name {target.name!r} "
                                                               f"(first defined at {seen[target.name]})"))
            else:
                seen[target.name] = where
                pulled.add(target.name)
                targets.append(target)
        used.append((source.url, body))
        digest.update(source.url.encode() + b"\0" + hashlib.sha256(body).digest())
    if errors:
        raise ConfigInvalid(errors)
    return replace(base, targets=tuple(targets), sd_lists=tuple(used), pulled=frozenset(pulled),
                   file_digest=base.digest, digest=digest.hexdigest() if used else base.digest)


def files_only(cfg: config_mod.Config) -> config_mod.Config:
    """The running configuration without its fetched targets."""
    if not cfg.sd_lists:
        return cfg
    return replace(cfg, targets=tuple(t for t in cfg.targets if t.name not in cfg.pulled), sd_lists=(),
                   pulled=frozenset(), digest=cfg.file_digest or cfg.digest, file_digest="")


def cache_path(cache_dir: str, url: str) -> str:
    return os.path.join(cache_dir, hashlib.sha256(url.encode()).hexdigest()[:24] + ".json")


class Inventory:
    """Polls every http_sd source of the running configuration and exports what happened."""

    def __init__(self, kinds: Mapping[str, ProbeKind], current: Callable[[], config_mod.Config],
                 replace_config: Callable[[Callable[[], config_mod.Config]], Any]) -> None:
        self.kinds = kinds
        self._current = current
        self._replace = replace_config  # Reloader.replace
        self._tasks: dict[str, tuple[config_mod.HttpSdSource, asyncio.Task[None]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sd")
        self.last_success: dict[str, float] = {}
        self.failures: dict[tuple[str, str], int] = {}
        self.counts: dict[str, int] = {}
        self._last_problem: dict[str, str] = {}  # the same failure every second is logged once, then at debug

    # --- start-up and configuration -------------------------------------------

    def merge(self, base: config_mod.Config, lists: Mapping[str, bytes] | None = None) -> config_mod.Config:
        """``base`` joined with the lists in use (by default the running ones); for the reload's loader."""
        if lists is None:
            lists = dict(self._current().sd_lists)
        return merge(base, lists, self.kinds)

    def restore(self, base: config_mod.Config) -> config_mod.Config:
        """At start-up: ``base`` joined with each source's cached list; a cache that no longer validates is skipped."""
        lists: dict[str, bytes] = {}
        for source in base.targets_http:
            try:
                with open(cache_path(base.sd_cache_dir, source.url), "rb") as fh:
                    body = fh.read(source.max_body_bytes + 1)
            except OSError:
                continue
            try:
                parse_list(source, body, base.tiers, self.kinds)
                merge(base, {source.url: body}, self.kinds)
            except ConfigInvalid as exc:
                log.error("sd_cache_invalid", source=source.url, errors=[_text(e) for e in exc.errors[:5]])
                continue
            lists[source.url] = body
            log.info("sd_cache_loaded", source=source.url, targets=len(parse_list(source, body, base.tiers,
                                                                                    self.kinds)))
        return merge(base, lists, self.kinds)

    def sync(self, cfg: config_mod.Config) -> None:
        """Follow the sources of a newly applied configuration: start new ones, restart changed ones."""
        wanted = {s.url: s for s in cfg.targets_http}
        counts = self._count(cfg)
        for url, (source, task) in list(self._tasks.items()):
            if wanted.get(url) != source:
                task.cancel()
                del self._tasks[url]
        for url in list(self.counts):
            if url not in wanted:
                self.counts.pop(url, None)
                self.last_success.pop(url, None)
                for key in [k for k in self.failures if k[0] == url]:
                    del self.failures[key]
        for url, source in wanted.items():
            self.counts[url] = counts.get(url, 0)
            self.last_success.setdefault(url, 0.0)
            for reason in REASONS:
                self.failures.setdefault((url, reason), 0)
            if url not in self._tasks:
                self._tasks[url] = (source, asyncio.create_task(self._follow(source), name=f"sd {url}"))

    def _count(self, cfg: config_mod.Config) -> dict[str, int]:
        bodies = dict(cfg.sd_lists)
        out = {}
        for source in cfg.targets_http:
            if source.url in bodies:
                try:
                    out[source.url] = len(parse_list(source, bodies[source.url], cfg.tiers, self.kinds))
                except ConfigInvalid:
                    out[source.url] = 0
        return out

    async def close(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._pool.shutdown(wait=False)

    # --- polling --------------------------------------------------------------

    async def _follow(self, source: config_mod.HttpSdSource) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll(source)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad poll must not end the polling
                log.error("sd_poll_error", source=source.url, error=repr(exc))
            await asyncio.sleep(max(0.0, source.refresh_interval - (time.monotonic() - started)))

    async def poll(self, source: config_mod.HttpSdSource) -> None:
        loop = asyncio.get_running_loop()
        try:
            # The socket timeout bounds each read; this bounds the whole fetch.
            body = await asyncio.wait_for(loop.run_in_executor(self._pool, fetch, source), source.timeout + 1.0)
        except asyncio.TimeoutError:
            return self._failed(source, "timeout", "no complete answer within the timeout")
        except FetchError as exc:
            return self._failed(source, exc.reason, exc.detail)
        if dict(self._current().sd_lists).get(source.url) == body:
            self._last_problem.pop(source.url, None)
            self.last_success[source.url] = time.time()
            return None

        def build() -> config_mod.Config:
            running = self._current()
            return merge(files_only(running), {**dict(running.sd_lists), source.url: body}, self.kinds)

        outcome: Outcome = await self._replace(build)
        if outcome.status == "invalid":
            return self._failed(source, "invalid", "; ".join(_text(e) for e in outcome.errors[:5]),
                                errors=len(outcome.errors))
        if outcome.status == "refused":
            self.failures[(source.url, "p0_guard")] = self.failures.get((source.url, "p0_guard"), 0) + 1
            level = log.error if self._last_problem.get(source.url) != outcome.message else log.debug
            self._last_problem[source.url] = outcome.message
            level("sd_list_refused", source=source.url, reason=outcome.message,
                  kept_targets=self.counts.get(source.url, 0))
            return None
        self._last_problem.pop(source.url, None)
        self.last_success[source.url] = time.time()
        self.counts = {**self.counts, **self._count(self._current())}
        if outcome.plan is not None:
            plan = outcome.plan
            log.info("sd_list_applied", source=source.url, added=len(plan.added), removed=len(plan.removed),
                     changed=len(plan.changed), targets=self.counts.get(source.url, 0))
        await loop.run_in_executor(self._pool, self._save, self._current().sd_cache_dir, source.url, body)
        return None

    def _failed(self, source: config_mod.HttpSdSource, reason: str, detail: str, **extra: Any) -> None:
        self.failures[(source.url, reason)] = self.failures.get((source.url, reason), 0) + 1
        problem = f"{reason}: {detail}"
        level = log.warning if self._last_problem.get(source.url) != problem else log.debug
        self._last_problem[source.url] = problem
        level("sd_fetch_failed", source=source.url, reason=reason, detail=detail,
                    kept_targets=self.counts.get(source.url, 0), **extra)

    @staticmethod
    def _save(cache_dir: str, url: str, body: bytes) -> None:
        """Write the list in use atomically, so a restart never reads half a list."""
        path = cache_path(cache_dir, url)
        try:
            os.makedirs(cache_dir, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(body)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("sd_cache_write_failed", source=url, path=path, error=exc.strerror)

    # --- metrics --------------------------------------------------------------

    def lines(self, out: list[str]) -> None:
        """The sd families, for the agent's own series (from the scrape thread: read copies, made under the GIL)."""
        if not self.counts and not self.failures:
            return
        Family("lifeline_sd_last_success_timestamp_seconds", "gauge",
               "Unix time of the last fetch of an http_sd source that gave a usable list (0: none yet).").lines(out)
        out.extend(f'lifeline_sd_last_success_timestamp_seconds{{source="{escape(u)}"}} {t:.3f}'
                   for u, t in sorted(self.last_success.copy().items()))
        Family("lifeline_sd_fetch_failures_total", "counter",
               "Fetches of an http_sd source whose list was not used, by reason.").lines(out)
        out.extend(f'lifeline_sd_fetch_failures_total{{source="{escape(u)}",reason="{r}"}} {n}'
                   for (u, r), n in sorted(self.failures.copy().items()))
        Family("lifeline_sd_targets", "gauge", "Targets of the list in use from each http_sd source.").lines(out)
        out.extend(f'lifeline_sd_targets{{source="{escape(u)}"}} {n}' for u, n in sorted(self.counts.copy().items()))


def _text(err: ConfigError) -> str:
    return f"{err.file}: {err.path}: {err.message}"
