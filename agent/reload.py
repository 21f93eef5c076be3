"""Reloading: validate first, refuse dangerous changes, apply as one plan, watch files.

A reload never interrupts monitoring. The new files are parsed off the event
loop; any error keeps the running configuration. A reload that would take
more than ``reload.max_p0_drop_ratio`` of the most urgent tier's targets out
of that tier is refused unless the new file sets ``reload.p0_drop_intended``:
an admin's truncated save at 2 a.m. must not silence the hospitals.

What a new configuration changes is worked out here once, as a ``Plan``, and
handed to the metrics store (whose state to keep), the scheduler (which jobs
keep their phase) and, through the store, each probe kind (``new_state``).
"""

from __future__ import annotations

import asyncio
import glob
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent import config as config_mod
from common.errors import ConfigInvalid
from common.model import Target

JobKey = tuple[str, str]  # (target name, probe kind)

log = structlog.get_logger("lifeline.reload")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    status: str = ""  # applied, unchanged, invalid or refused
    plan: Plan | None = None
    errors: tuple[Any, ...] = ()  # ConfigError of an invalid configuration


@dataclass(frozen=True)
class Plan:
    """The difference between the running configuration and ``new``, per target and per probe.

    * ``kept``: same name, same identity, same tier: the target's state stays as it is,
      unless it is also ``retiered`` (its tier's settings changed, which may reshape a
      kind's state, e.g. ICMP's rtt_histogram): then it is carried like a changed one;
    * ``changed``: same name and tier, something else differs (address, labels, a kind's
      block): the target's counters stay, each kind decides what of its own state to keep;
    * ``added``: a new name, or a target that moved tier (its series' labels change,
      so it starts afresh); ``removed``: names that are gone.

    A job (target, kind) keeps its schedule only if its target and its tier's settings
    are unchanged; every other job of the new configuration starts anew.
    """

    new: config_mod.Config
    kept: dict[str, Target] = field(default_factory=dict)
    retiered: frozenset[str] = frozenset()  # kept targets whose tier's settings changed
    changed: dict[str, tuple[Target, Target]] = field(default_factory=dict)  # name -> (old, new)
    added: dict[str, Target] = field(default_factory=dict)
    removed: dict[str, Target] = field(default_factory=dict)
    jobs_kept: frozenset[JobKey] = frozenset()
    jobs_added: frozenset[JobKey] = frozenset()
    jobs_removed: frozenset[JobKey] = frozenset()

    @classmethod
    def between(cls, old: config_mod.Config | None, new: config_mod.Config) -> Plan:
        before = {t.name: t for t in old.targets} if old is not None else {}
        old_tiers = old.tiers if old is not None else {}
        kept: dict[str, Target] = {}
        changed: dict[str, tuple[Target, Target]] = {}
        added: dict[str, Target] = {}
        retiered: set[str] = set()
        jobs_kept: set[JobKey] = set()
        jobs_added: set[JobKey] = set()
        for target in new.targets:
            was = before.get(target.name)
            same = was is not None and was.identity() == target.identity()
            if was is None or was.tier != target.tier:
                added[target.name] = target
            elif same:
                kept[target.name] = target
            else:
                changed[target.name] = (was, target)
            same_job = same and old_tiers.get(target.tier) == new.tiers[target.tier]
            if same and not same_job:
                retiered.add(target.name)
            for kind in target.probes:
                (jobs_kept if same_job else jobs_added).add((target.name, kind))
        names = {t.name for t in new.targets}
        removed = {name: t for name, t in before.items() if name not in names}
        old_jobs = {(t.name, k) for t in before.values() for k in t.probes}
        return cls(new=new, kept=kept, retiered=frozenset(retiered), changed=changed, added=added, removed=removed,
                   jobs_kept=frozenset(jobs_kept), jobs_added=frozenset(jobs_added),
                   jobs_removed=frozenset(old_jobs - jobs_kept))


def urgent_targets(cfg: config_mod.Config) -> set[str]:
    """Names of targets in the most urgent tier(s): priority 0, i.e. P0 unless redefined."""
    urgent = {name for name, tier in cfg.tiers.items() if tier.priority == 0}
    return {t.name for t in cfg.targets if t.tier in urgent}


def guard(old: config_mod.Config, new: config_mod.Config) -> str | None:
    """Why ``new`` must not replace ``old``, or None."""
    before = urgent_targets(old)
    if not before or new.reload.p0_drop_intended:
        return None
    dropped = before - urgent_targets(new)
    ratio = len(dropped) / len(before)
    if ratio > new.reload.max_p0_drop_ratio:
        sample = ", ".join(sorted(dropped)[:5]) + (" ..." if len(dropped) > 5 else "")
        return (f"refused: {len(dropped)} of {len(before)} P0 targets ({ratio:.0%}) would leave P0, above "
                f"reload.max_p0_drop_ratio ({new.reload.max_p0_drop_ratio:.0%}): {sample}. If this is intended, "
                f"set reload.p0_drop_intended: true in the new file and reload again")
    return None


class Reloader:
    """Serialises reloads and owns the optional file watcher."""

    def __init__(self, path: str, current: Callable[[], config_mod.Config],
                 apply: Callable[[config_mod.Config], Awaitable[Plan]],
                 failed: Callable[[], None], load: Callable[[str], config_mod.Config] = config_mod.load) -> None:
        self.path = path
        self._current = current
        self._apply = apply
        self._failed = failed
        self._load = load
        self._lock = asyncio.Lock()
        # Parsing 10k targets takes a while: do it off the loop, one file set at a time.
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="config")

    async def reload(self, trigger: str) -> Outcome:
        outcome = await self.replace(lambda: self._load(self.path))
        if outcome.status == "invalid":
            self._failed()
            for err in outcome.errors:
                log.error("config_error", file=err.file, line=err.line, path=err.path, message=err.message)
            log.error("reload_failed", trigger=trigger, errors=len(outcome.errors))
        elif outcome.status == "unchanged":
            log.info("reload_unchanged", trigger=trigger)
        elif outcome.status == "refused":
            self._failed()
            log.error("reload_refused", trigger=trigger, reason=outcome.message)
        elif outcome.plan is not None:
            plan = outcome.plan
            log.info("reload_applied", trigger=trigger, added=len(plan.jobs_added), removed=len(plan.jobs_removed),
                     kept=len(plan.jobs_kept), targets=len(plan.new.targets))
        return outcome

    async def replace(self, build: Callable[[], config_mod.Config]) -> Outcome:
        """Build a configuration off the loop and apply it unless invalid, unchanged or refused by the guard.

        ``build`` runs under the reload lock, so it sees the configuration that is running
        (a file reload and a fetched inventory list never undo each other).
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(self._parser, build)
            except ConfigInvalid as exc:
                return Outcome(False, f"reload failed, old configuration kept:\n{exc}", "invalid",
                               errors=tuple(exc.errors))
            old = self._current()
            if new.digest == old.digest:
                return Outcome(True, "configuration unchanged", "unchanged")
            refusal = guard(old, new)
            if refusal:
                return Outcome(False, refusal, "refused")
            plan = await self._apply(new)
            added, removed, kept = len(plan.jobs_added), len(plan.jobs_removed), len(plan.jobs_kept)
            return Outcome(True, f"reloaded: {added} jobs added, {removed} removed, {kept} kept", "applied", plan)

    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        cfg = self._current()
        paths = {self.path, *cfg.files}
        for pattern in cfg.include_patterns:
            paths.update(glob.glob(pattern))
        out = []
        for p in sorted(paths):
            try:
                st = os.stat(p)
                out.append((p, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((p, -1, -1))
        return tuple(out)

    async def watch(self, interval: float) -> None:
        """Reload when any config file, or the set of files the globs match, changes."""
        loop = asyncio.get_running_loop()
        seen = await loop.run_in_executor(self._parser, self._signature)
        while True:
            await asyncio.sleep(interval)
            now = await loop.run_in_executor(self._parser, self._signature)
            if now != seen:
                # Whatever the outcome, wait for the next change rather than retrying a broken file.
                seen = now
                await self.reload("file_change")

    def close(self) -> None:
        self._parser.shutdown(wait=False)
