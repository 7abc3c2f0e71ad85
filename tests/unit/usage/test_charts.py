"""The Usage page's inline SVG chart, pure: the busiest series drawn, the rest summed as "other"."""

from __future__ import annotations

from genqueue.api.ui.charts import MAX_LINES, line_chart, top_series


def test_the_busiest_series_get_lines_and_the_rest_is_other():
    series = {f"t{i}": [float(i), 0.0] for i in range(12)}
    top = top_series(series)
    assert len(top) == MAX_LINES
    kept = [k for k in top if k != "other"]
    assert kept == [f"t{i}" for i in range(11, 11 - (MAX_LINES - 1), -1)]
    assert top["other"][0] == sum(range(0, 12 - (MAX_LINES - 1)))


def test_the_chart_scales_to_the_largest_value():
    chart = line_chart([100, 101, 102], {"a": [0.0, 5.0, 10.0]}, width=200, height=100)
    (line,) = chart["lines"]
    points = [tuple(map(float, p.split(","))) for p in line["points"].split()]
    assert points[0][1] == chart["baseline"] and points[-1][1] == 8.0  # the top of the plot
    assert line["total"] == 15.0 and chart["grid"][-1]["label"] == "10"
    assert line_chart([1], {})["lines"] == []
