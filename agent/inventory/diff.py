"""What a reload from OLD to NEW would do, per tier, and whether the P0 guard would refuse it.

The same ``Plan.between`` and ``guard`` the agent runs on reload do the work,
so the answer is the agent's own. Per-tier counts treat a target that moved
tier as removed from its old tier and added to its new one (the Plan counts
it as added, since its series start afresh).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agent.config import Config
from agent.reload import Plan, guard, urgent_targets
from common.model import Target

SAMPLE = 5


@dataclass
class Report:
    old_name: str
    new_name: str
    old_count: int
    new_count: int
    tiers: list[str]
    old_per_tier: Counter[str]
    new_per_tier: Counter[str]
    added: dict[str, list[str]] = field(default_factory=dict)  # tier -> names (moves included)
    removed: dict[str, list[str]] = field(default_factory=dict)
    changed: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)  # tier -> (name, fields)
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # (name, old tier, new tier)
    unchanged: Counter[str] = field(default_factory=Counter)
    refusal: str | None = None
    urgent_before: int = 0
    urgent_after: int = 0

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def _fields(old: Target, new: Target) -> list[str]:
    names = ("address", "category", "site", "labels", "probes", "settings")
    return [n for n in names if getattr(old, n) != getattr(new, n)]


def compare(old: Config, new: Config, old_name: str = "OLD", new_name: str = "NEW") -> Report:
    plan = Plan.between(old, new)
    before = {t.name: t for t in old.targets}
    report = Report(old_name, new_name, len(old.targets), len(new.targets),
                    tiers=sorted(set(old.tiers) | set(new.tiers),
                                 key=lambda n: (new.tiers.get(n) or old.tiers[n]).priority),
                    old_per_tier=Counter(t.tier for t in old.targets),
                    new_per_tier=Counter(t.tier for t in new.targets))
    for target in new.targets:  # in file order, so the samples are the first names in the file
        name = target.name
        if name in plan.added:
            report.added.setdefault(target.tier, []).append(name)
            was = before.get(name)
            if was is not None:
                report.removed.setdefault(was.tier, []).append(name)
                report.moved.append((name, was.tier, target.tier))
        elif name in plan.changed:
            report.changed.setdefault(target.tier, []).append((name, _fields(*plan.changed[name])))
        else:
            report.unchanged[target.tier] += 1
    for target in old.targets:
        if target.name in plan.removed:
            report.removed.setdefault(target.tier, []).append(target.name)
    report.refusal = guard(old, new)
    report.urgent_before = len(urgent_targets(old))
    report.urgent_after = len(urgent_targets(new))
    return report


def _sample(names: list[str]) -> str:
    return ", ".join(names[:SAMPLE]) + (f" ... (+{len(names) - SAMPLE})" if len(names) > SAMPLE else "")


def format_report(r: Report) -> str:
    lines = [f"{r.old_name}: {r.old_count} targets -> {r.new_name}: {r.new_count} targets", ""]
    head = f"{'tier':<8}{'old':>7}{'new':>7}{'added':>8}{'removed':>9}{'changed':>9}{'unchanged':>11}"
    lines.append(head)
    totals = Counter()
    for tier in r.tiers:
        row = (r.old_per_tier[tier], r.new_per_tier[tier], len(r.added.get(tier, ())),
               len(r.removed.get(tier, ())), len(r.changed.get(tier, ())), r.unchanged[tier])
        if any(row):
            lines.append(f"{tier:<8}" + "".join(f"{v:>{w}}" for v, w in zip(row, (7, 7, 8, 9, 9, 11))))
        for i, v in enumerate(row):
            totals[i] += v
    lines.append(f"{'total':<8}" + "".join(f"{totals[i]:>{w}}" for i, w in enumerate((7, 7, 8, 9, 9, 11))))
    details = []
    for tier in r.tiers:
        if tier in r.added:
            details.append(f"added {tier} ({len(r.added[tier])}): {_sample(r.added[tier])}")
        if tier in r.removed:
            details.append(f"removed {tier} ({len(r.removed[tier])}): {_sample(r.removed[tier])}")
        if tier in r.changed:
            items = [f"{n} ({', '.join(f)})" for n, f in r.changed[tier]]
            details.append(f"changed {tier} ({len(items)}): {_sample(items)}")
    if r.moved:
        details.append(f"moved tier ({len(r.moved)}): " + _sample([f"{n} {a}->{b}" for n, a, b in r.moved]))
    if details:
        lines += [""] + details
    lines.append("")
    if r.refusal:
        lines.append(f"P0 guard: would be refused. {r.refusal}")
    else:
        change = "would be applied" if r.differs else "no change to apply"
        lines.append(f"P0 guard: {change} (P0 targets {r.urgent_before} -> {r.urgent_after})")
    return "\n".join(lines) + "\n"
