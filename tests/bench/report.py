"""Figures beside their targets, as a plain or a Markdown table."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Target:
    text: str  # e.g. "≤ 50 ms"
    met: Callable[[float], bool]


def at_most(limit: float, unit: str) -> Target:
    return Target(f"≤ {limit:g} {unit}".rstrip(), lambda value: value <= limit)


NONE = Target("0", lambda value: value == 0)


def at_least(limit: float, unit: str) -> Target:
    return Target(f"≥ {limit:g} {unit}".rstrip(), lambda value: value >= limit)


@dataclass(frozen=True)
class Row:
    figure: str
    value: float
    shown: str
    target: Target | None = None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "PASS" if not math.isnan(self.value) and self.target.met(self.value) else "FAIL"


def ms_row(figure: str, seconds: float, target: Target | None = None, *, decimals: int = 0) -> Row:
    """A duration shown, and checked, in milliseconds."""
    value = seconds * 1000
    return Row(figure, value, "n/a" if math.isnan(value) else f"{value:,.{decimals}f} ms", target)


def table(rows: Sequence[Row], *, markdown: bool = False) -> str:
    cells = [(r.figure, r.shown, r.target.text if r.target else "", r.verdict) for r in rows]
    header = ("figure", "value", "target", "result")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---:|---|---|"]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(4)]
    return "\n".join(
        f"{c[0]:<{widths[0]}}  {c[1]:>{widths[1]}}  {c[2]:<{widths[2]}}  {c[3]}".rstrip() for c in [header, *cells]
    )


def machine() -> str:
    """Where the figures were taken: the same code measured several times faster on one 2-core machine than on
    another."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = value.strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load}"
    )
