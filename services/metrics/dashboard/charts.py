"""Vega-Lite specs for the dashboard and the committee report: pure, no I/O.

The browser draws them with vega-embed (npm packages vega, vega-lite and
vega-embed, served by the metrics service from `assets/node_modules`): a
maintained, declarative chart library, so the page ships data and a spec, not
drawing code, and the same spec prints in the PDF. Every chart sits beside a
table of the same figures, its text alternative.

Colours pass WCAG AA against white: text 4.5:1, lines and marks 3:1. Marks
carry no ARIA of their own (`aria: false`): the chart's element is one image
with a label, and the table after it gives every figure to assistive technology.
"""

import json
from collections.abc import Sequence
from typing import Any

from services.metrics.domain import Unit

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
THIS_PERIOD = "#1f4e9c"  # 8.2:1 on white
PREVIOUS_YEAR = "#595959"  # 7.0:1
TARGET = "#a3121f"  # 7.6:1
BAR = "#1f4e9c"
Spec = dict[str, Any]


def _axis(unit: Unit) -> dict[str, Any]:
    if unit is Unit.RATIO:
        return {"format": ".0%", "title": "per cent"}
    if unit is Unit.SECONDS:
        return {"title": "seconds"}
    if unit is Unit.COUNT:
        return {"title": "count", "format": ",d", "tickMinStep": 1}
    return {"title": unit.value}


def trend_chart(
    title: str,
    unit: Unit,
    labels: Sequence[str],
    values: Sequence[float | None],
    previous_year: Sequence[float | None] | None,
    target: float | None,
) -> Spec:
    """A KPI per period: this year's line, last year's dashed, the target as a rule."""
    rows: list[dict[str, Any]] = [
        {"period": label, "series": "This period", "value": value}
        for label, value in zip(labels, values, strict=True)
    ]
    if previous_year is not None:
        rows += [
            {"period": label, "series": "A year before", "value": value}
            for label, value in zip(labels, previous_year, strict=True)
        ]
    layers: list[Spec] = [
        {
            "mark": {"type": "line", "point": {"aria": False}, "strokeWidth": 2, "aria": False},
            "transform": [{"filter": "datum.value != null"}],
            "encoding": {
                "x": {"field": "period", "type": "ordinal", "sort": None, "title": None},
                "y": {"field": "value", "type": "quantitative", "axis": _axis(unit)},
                "color": {
                    "field": "series",
                    "type": "nominal",
                    "scale": {
                        "domain": ["This period", "A year before"],
                        "range": [THIS_PERIOD, PREVIOUS_YEAR],
                    },
                    "legend": {"orient": "bottom", "title": None},
                },
                "strokeDash": {
                    "field": "series",
                    "type": "nominal",
                    "scale": {
                        "domain": ["This period", "A year before"],
                        "range": [[1, 0], [6, 4]],
                    },
                    "legend": None,
                },
                "tooltip": [
                    {"field": "period", "type": "ordinal"},
                    {"field": "series", "type": "nominal"},
                    {
                        "field": "value",
                        "type": "quantitative",
                        "format": ".1%" if unit is Unit.RATIO else ",.2f",
                    },
                ],
            },
        }
    ]
    if target is not None:
        layers.append(
            {
                "data": {"values": [{"target": target}]},
                "mark": {
                    "type": "rule",
                    "color": TARGET,
                    "strokeDash": [3, 3],
                    "size": 2,
                    "aria": False,
                },
                "encoding": {"y": {"field": "target", "type": "quantitative"}},
            }
        )
    return {
        "$schema": SCHEMA,
        "description": f"{title}: line chart per period"
        + (", with the target as a dashed red line" if target is not None else ""),
        "title": title,
        "width": "container",
        "height": 220,
        "data": {"values": rows},
        "layer": layers,
    }


def bar_chart(title: str, unit: Unit, bars: Sequence[tuple[str, float | None]]) -> Spec:
    """One bar per category (a service area, a channel, a stage)."""
    return {
        "$schema": SCHEMA,
        "description": f"{title}: bar chart",
        "title": title,
        "width": "container",
        "height": max(80, 22 * len(bars)),
        "data": {"values": [{"category": name, "value": value} for name, value in bars]},
        "transform": [{"filter": "datum.value != null"}],
        "mark": {"type": "bar", "color": BAR, "aria": False},
        "encoding": {
            "y": {"field": "category", "type": "nominal", "sort": None, "title": None},
            "x": {"field": "value", "type": "quantitative", "axis": _axis(unit)},
            "tooltip": [
                {"field": "category", "type": "nominal"},
                {"field": "value", "type": "quantitative"},
            ],
        },
    }


def embeddable(spec: Spec) -> str:
    """The spec as JSON safe inside a `<script type="application/json">` element."""
    return json.dumps(spec).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
