"""Wires config, probe kinds, scheduler, store, exposition, reload and HTTP into one running agent."""

from __future__ import annotations

import asyncio
import pickle
import signal
import sys
import time
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import structlog

from agent import config as config_mod
from agent import webconfig
from agent.child import run_in_child
from agent.inventory.pull import Inventory
from agent.inventory.render import ConfigPage
from agent.maintenance.calendar import Calendar
from agent.exposition import AgentStatus, Exposition, Renderer
from agent.reload import Plan, Reloader
from agent.scheduler import Scheduler
from agent.server import HttpServer, Routes
from agent.shard import Shard
from agent.status import StatusBoard
from agent.status import page as status_page
from agent.store import MetricsStore, TargetState
from agent.suppression import Suppressor
from agent.webconfig import WebConfig
from common.errors import ConfigInvalid
from common.resolver import Resolver
from probes.base import Probe, ProbeContext, ProbeKind, ProbeResult
from probes.registry import KINDS

log = structlog.get_logger("lifeline.agent")


def agent_version() -> str:
    try:
        return version("lifeline")
    except PackageNotFoundError:
        return "0.0.0+unknown"


class Agent:
    def __init__(self, config_path: str, config: config_mod.Config, listen: str,
                 web: WebConfig | None = None, watch_interval: float = 0.0, shard: Shard | None = None,
                 web_path: str = "", kinds: Mapping[str, ProbeKind] = KINDS, vantage: str = "") -> None:
        self.shard = shard or Shard()
        self.kinds = kinds
        self.config = config
        self._running: config_mod.Config | None = None  # the applied (sharded) configuration
        self.resolver = Resolver()  # one for every kind, so the dns: section applies to all
        self.status = AgentStatus(version=agent_version())
        # --vantage: the label every target series carries, so agents at several sites watching one
        # list can be told apart and counted by the consensus rules.
        self.store = MetricsStore(kinds, extra=(("vantage", vantage),) if vantage else ())
        self.probes: dict[str, Probe] = {}
        self.maintenance = Calendar()
        self._warned: tuple[str, tuple[object, ...]] = ("", ())  # what _log_warnings last logged
        self.scheduler = Scheduler(kinds, self.probes, self._record, config.scheduler.max_in_flight)
        self.suppressor = Suppressor(self.scheduler.run_now)
        self.exposition = Exposition(Renderer(self.store, kinds, self.status, self.probes, self.maintenance,
                                              self.suppressor))
        self.board = StatusBoard(self.store, kinds, self.status, maintenance=self.maintenance,
                                 suppressor=self.suppressor)
        self.status.scheduler_stats = self.scheduler.stats
        # Lists fetched from http_sd sources join the files' targets on every load (inventory/pull.py).
        self.inventory = Inventory(kinds, lambda: self.config,
                                   lambda build: self.reloader.replace(lambda: self._own(build, in_child=True)))
        self.status.extra_lines = self.inventory.lines
        self.reloader = Reloader(
            config_path, lambda: self.config, self._apply_new, self._reload_failed,
            load=lambda path: self._own(lambda: self.inventory.merge(config_mod.load(path, kinds)), in_child=True))
        self.listen = listen
        self.web = web
        self.web_path = web_path  # re-read on every reload, so passwords and certificates rotate without a restart
        self.watch_interval = watch_interval
        self.server: HttpServer | None = None
        self._ready = False
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _open_probes(self) -> None:
        """Open every kind's runtime once; raises ProbeUnavailable with a remedy (e.g. no ICMP sockets)."""
        ctx = ProbeContext(resolver=self.resolver)
        for name, kind in self.kinds.items():
            probe = kind.open(ctx)
            await probe.start()
            self.probes[name] = probe

    def _own(self, build: Callable[[], config_mod.Config], in_child: bool = False) -> config_mod.Config:
        """Build the whole configuration, log its warnings, and keep this agent's shard of it in fresh memory.

        Runs in the parser thread; on reloads ``in_child``, in a forked process (agent/child.py).
        The whole file is validated, then dropped before the kept part is rebuilt from a pickle:
        objects that outlive a parse sit among the freed YAML tree and, with a shard, the other
        shards' targets, and pin nearly every 256 KB pymalloc arena. A shard of 3 x 10,000 targets
        kept 102 MB of a 30,000-target load for 15 MB of live objects; after the round trip, 35 MB
        (~100 ms for 10,000 targets; the same holds without shards).
        """
        def made() -> bytes:
            return self._shard_pickled(build())  # build()'s result is freed when this returns

        warned, digest, shard = pickle.loads(run_in_child(made) if in_child else made())
        self._log_warnings(warned)
        running = self.config
        if running is not None and digest == running.digest:
            return running  # unchanged (the reload says so): not even rebuilt, so it leaves no garbage
        return pickle.loads(shard)

    def _shard_pickled(self, config: config_mod.Config) -> bytes:
        """The whole configuration's warnings (with what identifies them), its digest and this agent's
        shard, pickled (the shard on its own, so an unchanged file is never unpickled)."""
        warned = (config.file_digest or config.digest, tuple(config_mod.warnings(config)))
        shard = pickle.dumps(self.shard.select(config), protocol=pickle.HIGHEST_PROTOCOL)
        return pickle.dumps((warned, config.digest, shard), protocol=pickle.HIGHEST_PROTOCOL)

    def _start_config(self) -> config_mod.Config:
        """The configuration given at start, joined with the cached fetched lists; dropped from self
        so that its memory can go (see _own)."""
        base, self.config = self.config, None  # type: ignore[assignment] - set again by _apply
        return self.inventory.restore(base)

    def _apply(self, config: config_mod.Config) -> Plan:
        """Apply ``config``, already this agent's shard (from _own)."""
        plan = Plan.between(self._running, config)
        self.resolver.configure(config.dns)
        self.store.apply(plan)
        self.maintenance.apply(config.maintenance, config.targets, self.store.extra)  # this agent's targets only
        self.suppressor.apply(config.graph(), self.store.targets)
        self.status.consensus_quorum = config.consensus.quorum
        self.scheduler.apply(plan, self.store.targets)
        self._running = self.config = config
        self.status.config_digest = config.digest
        self.status.reload_ok = True
        self.status.reload_success_time = time.time()
        self.exposition.invalidate()  # removed targets leave /metrics at once
        self.board.invalidate()
        self.inventory.sync(config)
        return plan

    def _record(self, state: TargetState, kind: str, result: ProbeResult, lag: float) -> None:
        """The scheduler's sink: store the result, then let suppression react to it."""
        self.store.record(state, kind, result, lag)
        self.suppressor.observe(state, kind, result)

    def _log_warnings(self, key: tuple[str, tuple[Any, ...]]) -> None:
        """Warnings of the whole configuration (before sharding; ``key``: its file digest and them),
        logged at load and at each reload of the files; not again on every refresh of fetched lists
        that leaves them as they were."""
        if key == self._warned:
            return
        for w in key[1]:
            log.warning("config_warning", file=w.file, line=w.line, path=w.path, message=w.message)
        self._warned = key

    async def _apply_new(self, config: config_mod.Config) -> Plan:
        return self._apply(config)

    def _reload_failed(self) -> None:
        self.status.reload_ok = False
        self.exposition.invalidate()  # the next scrape must show the failure at once
        self.board.invalidate()

    async def reload(self, trigger: str = "api") -> tuple[bool, str]:
        web = None
        if self.web_path:
            try:
                web = await asyncio.get_running_loop().run_in_executor(None, webconfig.load, self.web_path)
            except ConfigInvalid as exc:
                for err in exc.errors:
                    log.error("web_config_error", file=err.file, line=err.line, path=err.path, message=err.message)
                self._reload_failed()
                return False, f"reload failed, old configuration kept:\n{exc}"
        outcome = await self.reloader.reload(trigger)
        if outcome.ok and web is not None and self.server is not None:
            self.web = web
            self.server.set_web(web)  # applies to the next connection and request
        return outcome.ok, outcome.message

    def _reload_from_thread(self) -> tuple[bool, str]:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self.reload("http"), self._loop)
        return future.result(timeout=120)

    def stop(self) -> None:
        self._stop.set()

    def _on_background_exit(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_died", task=task.get_name(), error=repr(task.exception()))
            self.stop()

    async def _sample_tasks(self) -> None:
        """Keep the asyncio task count fresh for the self-metric (all_tasks is not thread-safe)."""
        while True:
            self.status.tasks = len(asyncio.all_tasks())
            await asyncio.sleep(1.0)

    async def run(self) -> int:
        # Config parsing and /metrics rendering run in threads. With CPython's default 5 ms GIL
        # switch interval, each wake-up of the event loop can wait 5 ms for the GIL behind them,
        # and at hundreds of wake-ups a second P0 lag piled up past its interval: measured at
        # 3,000 targets with a reload every 3 s, 17 skipped P0 cycles in 30 s at 5 ms, 0 at 0.5 ms
        # (cycles started >50 ms late: 156 -> 13 of ~630).
        sys.setswitchinterval(0.0005)
        self._loop = asyncio.get_running_loop()
        await self._open_probes()
        self._apply(self._own(self._start_config))  # a restart in an inventory outage probes the cache
        routes = Routes(metrics=self.exposition.get, ready=lambda: self._ready,
                        reload=self._reload_from_thread, version=self.status.version,
                        status_json=self.board.json, status_page=lambda: status_page(self.board.json(True)),
                        config=ConfigPage(lambda: self.config, {"index": self.shard.index, "count": self.shard.count}))
        self.server = HttpServer(self.listen, routes, web=self.web)
        self.server.start()
        host, port = self.server.address
        log.info("listening", address=f"{host}:{port}", tls=bool(self.web and self.web.tls),
                 basic_auth=bool(self.web and self.web.users), targets=len(self.config.targets),
                 tiers=sorted(self.config.tiers))
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, lambda: asyncio.ensure_future(self.reload("sighup")))):
            try:
                self._loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):
                pass
        background = [asyncio.create_task(self.scheduler.run(), name="scheduler"),
                      asyncio.create_task(self._sample_tasks(), name="task-sampler")]
        if self.watch_interval > 0:
            background.append(asyncio.create_task(self.reloader.watch(self.watch_interval), name="watcher"))
        for task in background:
            task.add_done_callback(self._on_background_exit)
        self._ready = True
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            self._ready = False
            await self.scheduler.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self.server.stop()
            for probe in self.probes.values():
                await probe.close()
            await self.inventory.close()
            self.reloader.close()
        return 0
