"""Inline SVG charts drawn on the server (no front-end build): the numbers a template needs to draw lines of
usage per hour, one per tenant or limit key. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

PALETTE = ("#2457c5", "#c2410c", "#1b7f3b", "#9333ea", "#b3261e", "#0e7490", "#a16207", "#4b5563")
MAX_LINES = len(PALETTE)  # the busiest series each get a line; the rest are summed as "other"


def top_series(series: Mapping[str, Sequence[float]], most: int = MAX_LINES) -> dict[str, list[float]]:
    """The `most - 1` largest series by total, and the rest summed as "other" (all of them when they fit)."""
    ranked = sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    if len(ranked) <= most:
        return {name: list(values) for name, values in ranked}
    kept = {name: list(values) for name, values in ranked[: most - 1]}
    rest = [sum(col) for col in zip(*(values for _, values in ranked[most - 1 :]), strict=True)]
    return {**kept, "other": rest}


def line_chart(
    hours: Sequence[int], series: Mapping[str, Sequence[float]], width: int = 1100, height: int = 260
) -> dict[str, Any]:
    """Polylines of each series over the hours (oldest first), a y axis from 0 to the largest value, and a
    few hour labels along x (UTC)."""
    pad_left, pad_bottom, pad_top = 48, 18, 8
    lines_of = top_series(series)
    top = max((v for values in lines_of.values() for v in values), default=0.0) or 1.0
    span = max(1, len(hours) - 1)
    plot_w, plot_h = width - pad_left - 4, height - pad_bottom - pad_top

    def xy(i: int, v: float) -> str:
        return f"{pad_left + i / span * plot_w:.1f},{pad_top + plot_h - v / top * plot_h:.1f}"

    lines = [
        {
            "name": name,
            "color": PALETTE[n % len(PALETTE)],
            "points": " ".join(xy(i, v) for i, v in enumerate(values)),
            "total": round(sum(values), 6),
        }
        for n, (name, values) in enumerate(lines_of.items())
    ]
    step = max(1, len(hours) // 6)
    ticks = [
        {"x": round(pad_left + i / span * plot_w, 1), "label": hour_label(h, len(hours) > 48)}
        for i, h in enumerate(hours)
        if i % step == 0
    ]
    grid = [{"y": round(pad_top + plot_h - f * plot_h, 1), "label": short_number(top * f)} for f in (0.0, 0.5, 1.0)]
    return {
        "width": width,
        "height": height,
        "lines": lines,
        "ticks": ticks,
        "grid": grid,
        "left": pad_left,
        "right": width - 4,
        "baseline": pad_top + plot_h,
    }


def hour_label(hour: int, with_day: bool) -> str:
    at = datetime.fromtimestamp(hour * 3600, UTC)
    return at.strftime("%m-%d %H:00") if with_day else at.strftime("%H:00")


def short_number(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"
