"""Wires config, probes, scheduler, metrics and HTTP into one running agent."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version

import structlog

from agent import config as config_mod
from agent.errors import ConfigInvalid
from agent.metrics import AgentStatus, Exposition, MetricsStore
from agent.scheduler import Scheduler
from agent.server import HttpServer, Routes
from probes.base import Probe
from probes.registry import KINDS

log = structlog.get_logger("lifeline.agent")


def agent_version() -> str:
    try:
        return version("lifeline")
    except PackageNotFoundError:
        return "0.0.0+unknown"


class Agent:
    def __init__(self, config_path: str, config: config_mod.Config, listen: str) -> None:
        self.config_path = config_path
        self.config = config
        self.status = AgentStatus(version=agent_version())
        self.store = MetricsStore(self.status)
        self.exposition = Exposition(self.store)
        self.probes: dict[str, Probe] = {}
        self.scheduler = Scheduler(self.probes, self.store.record, config.scheduler.max_in_flight)
        self.status.scheduler_stats = self.scheduler.stats
        self.listen = listen
        self.server: HttpServer | None = None
        self._ready = False
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock = asyncio.Lock()
        # Config parsing runs off the loop; one worker is enough and bounds memory.
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="config")

    async def _ensure_probes(self, config: config_mod.Config) -> None:
        """Start every probe kind the config uses (once); raises ProbeUnavailable with a remedy."""
        for kind in sorted({k for t in config.targets for k in t.probes} | {"icmp"}):
            if kind not in self.probes:
                probe = KINDS[kind].factory()
                await probe.start()
                self.probes[kind] = probe
                engine = getattr(probe, "engine", None)
                if kind == "icmp" and engine is not None:
                    self.status.icmp_ignored = engine.ignored
                    log.info("icmp_sockets", **engine.socket_modes())

    def _apply(self, config: config_mod.Config) -> tuple[int, int, int]:
        self.store.apply_config(config)
        counts = self.scheduler.apply(config)
        self.exposition.invalidate()
        self.config = config
        self.status.config_digest = config.digest
        self.status.reload_ok = True
        self.status.reload_success_time = time.time()
        return counts

    async def reload(self) -> tuple[bool, str]:
        """Validate the config files again and apply the difference; keep the old config on error."""
        async with self._reload_lock:
            loop = asyncio.get_running_loop()
            try:
                config = await loop.run_in_executor(self._parser, config_mod.load, self.config_path)
            except ConfigInvalid as exc:
                self.status.reload_ok = False
                self.exposition.invalidate()  # the next scrape must show the failure at once
                for err in exc.errors:
                    log.error("config_error", file=err.file, line=err.line, path=err.path, message=err.message)
                log.error("reload_failed", errors=len(exc.errors), kept_digest=self.config.digest[:12])
                return False, f"reload failed, old configuration kept:\n{exc}"
            if config.digest == self.config.digest:
                self.status.reload_ok = True
                log.info("reload_unchanged")
                return True, "configuration unchanged"
            await self._ensure_probes(config)
            added, removed, kept = self._apply(config)
            log.info("reload_applied", added=added, removed=removed, kept=kept, targets=len(config.targets))
            return True, f"reloaded: {added} jobs added, {removed} removed, {kept} kept"

    def _reload_from_thread(self) -> tuple[bool, str]:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self.reload(), self._loop)
        return future.result(timeout=120)

    def stop(self) -> None:
        self._stop.set()

    def _on_scheduler_exit(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler_died", error=repr(task.exception()))
            self.stop()

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        await self._ensure_probes(self.config)
        self._apply(self.config)
        routes = Routes(metrics=self.exposition.get, ready=lambda: self._ready,
                        reload=self._reload_from_thread, version=self.status.version)
        self.server = HttpServer(self.listen, routes)
        self.server.start()
        host, port = self.server.address
        log.info("listening", address=f"{host}:{port}", targets=len(self.config.targets),
                 tiers=sorted(self.config.tiers))
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))):
            try:
                self._loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):
                pass
        runner = asyncio.create_task(self.scheduler.run())
        runner.add_done_callback(self._on_scheduler_exit)
        self._ready = True
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            self._ready = False
            await self.scheduler.stop()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            self.server.stop()
            for probe in self.probes.values():
                await probe.close()
            self._parser.shutdown(wait=False)
        return 0
