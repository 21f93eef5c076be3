"""Parent dependencies and anchors: which targets explain other targets' failures.

The config says it in three places::

    anchors: [site-gateway, resolver-1, remote-anchor-a]   # the probe site's own upstreams
    sites:
      shenjiamen: {depends_on: [agg-router-7]}             # default for the site's targets
    targets:
      - {name: fever-clinic-b, ..., depends_on: [putuo-pe-1]}

A target's parents are its own ``depends_on`` plus its site's default. A target the
site default itself names does not take that default: the two PEs of a site listed
together would otherwise depend on each other, a cycle nobody wrote. Names that are no
target, anchors listed twice and dependency cycles are errors with FILE:LINE; a file
whose targets are partly fetched (``targets_http``) cannot judge names at load, so
there they are warnings and the missing edges are left out at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.model import TARGET_NAME_RE, Target
from common.validate import ConfigError, Validator
from common.yamlsrc import Path, format_path

SITE_KEYS = ("depends_on",)
MAX_PARENTS = 32  # a target with more parents than this is a config mistake, not a topology


@dataclass(frozen=True, slots=True)
class Named:
    """A target name as written, with where it was written."""

    name: str
    file: str
    line: int
    path: str


@dataclass(frozen=True)
class Declared:
    """The dependency keys as the files wrote them; ``resolve`` turns them into a graph."""

    own: Mapping[str, tuple[Named, ...]] = field(default_factory=dict)  # target -> its depends_on
    sites: Mapping[str, tuple[Named, ...]] = field(default_factory=dict)  # site -> its default
    anchors: tuple[Named, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.own or self.sites or self.anchors)


@dataclass(frozen=True)
class Graph:
    """Effective parents and children of each target, and the anchors, over one target list."""

    parents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    children: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    anchors: tuple[str, ...] = ()


def parse_names(v: Validator, path: Path, raw: Any) -> tuple[Named, ...]:
    """A list of target names (``depends_on``, ``anchors``); duplicates are errors."""
    items = v.seq(path, raw)
    out: list[Named] = []
    for i, item in enumerate(items or []):
        at = path + (i,)
        name = v.string(at, item, pattern=TARGET_NAME_RE, max_len=128,
                        what="target names start with a letter or digit and use letters, digits and ._:@/-")
        if name is None:
            continue
        if any(n.name == name for n in out):
            v.error(at, f"{name!r} is listed twice")
            continue
        out.append(Named(name, v.doc.file, v.doc.line(at), format_path(at)))
    if len(out) > MAX_PARENTS:
        v.error(path, f"lists {len(out)} names; at most {MAX_PARENTS}")
    return tuple(out)


def parse_sites(v: Validator, raw: Any) -> dict[str, tuple[Named, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        v.error(("sites",), "must be a mapping of site name to its settings, e.g. {shenjiamen: {depends_on: [r7]}}")
        return {}
    out: dict[str, tuple[Named, ...]] = {}
    for site, body in raw.items():
        path = ("sites", site)
        if v.label_value(path, site) is None:
            continue
        fields = v.mapping(path, body, SITE_KEYS)
        if fields and "depends_on" in fields:
            out[str(site)] = parse_names(v, path + ("depends_on",), fields["depends_on"])
    return out


def parents_of(target: Target, declared: Declared) -> tuple[Named, ...]:
    """``target``'s own depends_on, then its site's default (unless the default names it), deduplicated."""
    own = declared.own.get(target.name, ())
    site = declared.sites.get(target.site, ())
    if any(n.name == target.name for n in site):
        site = ()
    seen = {target.name}
    out = []
    for named in (*own, *site):
        if named.name not in seen:
            seen.add(named.name)
            out.append(named)
    return tuple(out)


def resolve(declared: Declared, targets: Iterable[Target]) -> tuple[Graph, list[ConfigError]]:
    """The graph over ``targets`` and the problems found: unknown names and cycles.

    Edges to unknown names and the edge closing each cycle are left out of the graph, so a
    caller that only warns still gets a graph the run-time logic can walk.
    """
    targets = tuple(targets)
    names = {t.name for t in targets}
    problems: list[ConfigError] = []
    reported: set[tuple[str, int, str]] = set()

    def unknown(named: Named) -> None:
        key = (named.file, named.line, named.name)
        if key not in reported:  # a site default's bad name is one problem, not one per target
            reported.add(key)
            problems.append(ConfigError(named.file, named.line, named.path, f"unknown target {named.name!r}"))

    anchors = []
    for named in declared.anchors:
        if named.name in names:
            anchors.append(named.name)
        else:
            unknown(named)
    edges: dict[str, list[Named]] = {}
    for target in targets:
        for named in declared.own.get(target.name, ()):
            if named.name == target.name:
                problems.append(ConfigError(named.file, named.line, named.path, "a target cannot depend on itself"))
        good = []
        for named in parents_of(target, declared):
            if named.name in names:
                good.append(named)
            else:
                unknown(named)
        if good:
            edges[target.name] = good
    for (child, named), cycle in _cycles(edges):
        problems.append(ConfigError(named.file, named.line, named.path,
                                    "dependency cycle: " + " -> ".join(cycle)))
        edges[child] = [n for n in edges[child] if n is not named]
    parents = {child: tuple(n.name for n in ns) for child, ns in edges.items() if ns}
    children: dict[str, list[str]] = {}
    for child, ps in parents.items():
        for parent in ps:
            children.setdefault(parent, []).append(child)
    return Graph(parents=parents, children={p: tuple(c) for p, c in children.items()},
                 anchors=tuple(anchors)), problems


def _cycles(edges: Mapping[str, list[Named]]) -> list[tuple[tuple[str, Named], list[str]]]:
    """Each cycle once, as the edge that closes it and the names along it (depth-first, iterative:
    a chain of thousands of targets must not hit the recursion limit)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    found: list[tuple[tuple[str, Named], list[str]]] = []
    for root in edges:
        if root in state:
            continue
        path: list[str] = [root]
        stack = [(root, iter(edges.get(root, ())))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            named = next(it, None)
            if named is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            nxt = named.name
            if state.get(nxt) == 1:
                found.append(((node, named), path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(edges.get(nxt, ()))))
    return found
