"""Prometheus text-format pieces: escaping, number formatting, family headers, histograms.

Per-target families are written as bytes by hand rather than through
prometheus_client: its renderer took ~1.0 s per scrape for 10k targets x 5
labelled series on a 2-core machine (1.4 s for 60k series), holding the GIL
and stalling the probe loop; formatting each target's lines once per result
and joining them at scrape costs tens of milliseconds.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


def fmt(value: float) -> str:
    if value.__class__ is float and value == value and not value.is_integer():
        return repr(value)  # the common case first: this runs for every gauge of every result
    if value != value:
        return "NaN"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family's name, type and help; ``header`` is its HELP and TYPE lines."""

    name: str
    type: str
    help: str

    @property
    def header(self) -> bytes:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type}\n".encode()

    def lines(self, out: list[str]) -> None:
        """Append the HELP and TYPE lines to a list of text lines."""
        out.append(f"# HELP {self.name} {self.help}")
        out.append(f"# TYPE {self.name} {self.type}")


class Histogram:
    """Bucket counts kept non-cumulative (one increment per observation), summed at render."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def text(self, template: bytes, label: bytes) -> bytes:
        """This histogram's lines, from its family's ``histogram_template`` and one target's label set."""
        values: list[object] = list(accumulate(self.counts))  # a copy: the loop may observe meanwhile
        values.append(self.total)
        values.append(values[-2])  # _count: the +Inf bucket
        args: list[object] = [label] * (2 * len(values))
        args[1::2] = values
        return template % tuple(args)

    def lines(self, name: str, label_str: str, out: list[str]) -> None:
        sep = "," if label_str else ""
        running = 0
        counts = list(self.counts)  # copy: the loop thread may observe while we render
        for bound, n in zip(self.bounds, counts):
            running += n
            out.append(f'{name}_bucket{{{label_str}{sep}le="{bound:g}"}} {running}')
        running += counts[-1]
        out.append(f'{name}_bucket{{{label_str}{sep}le="+Inf"}} {running}')
        out.append(f"{name}_sum{{{label_str}}} {fmt(self.total)}")
        out.append(f"{name}_count{{{label_str}}} {running}")


def histogram_template(name: str, bounds: tuple[float, ...]) -> bytes:
    """A %-template of a histogram's lines with the label set left open (one per family, shared by all targets)."""
    lines = [f'{name}_bucket{{%s,le="{b:g}"}} %d\n' for b in bounds]
    # %a is repr() for the sum, a finite float (no fmt() call and encode() per render).
    lines += [f'{name}_bucket{{%s,le="+Inf"}} %d\n', f"{name}_sum{{%s}} %a\n", f"{name}_count{{%s}} %d\n"]
    return "".join(lines).encode()
