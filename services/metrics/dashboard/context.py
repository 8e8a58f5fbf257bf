"""What the dashboard and the committee report need from the metrics service."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import jinja2

from services.metrics.dashboard import charts
from services.metrics.dashboard.comments import CommentSource, UnconfiguredComments
from services.metrics.dashboard.worklist import UnconfiguredWorklist, Worklist
from services.metrics.domain import KPIS, KPIS_BY_NAME
from services.metrics.formatting import (
    TREND_ARROWS,
    area_title,
    day_text,
    format_figure,
    format_target,
    rag_class,
    rag_label,
)
from services.metrics.report import Judging
from services.metrics.settings import ApiToken
from services.metrics.store import MetricsStore

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
ASSETS = HERE / "assets"
NODE_MODULES = ASSETS / "node_modules"
# The files the dashboard serves, by the name pages ask for: nothing else is reachable.
STATIC_FILES: Mapping[str, Path] = {
    "vega.min.js": NODE_MODULES / "vega" / "build" / "vega.min.js",
    "vega-lite.min.js": NODE_MODULES / "vega-lite" / "build" / "vega-lite.min.js",
    "vega-embed.min.js": NODE_MODULES / "vega-embed" / "build" / "vega-embed.min.js",
    "axe.min.js": NODE_MODULES / "axe-core" / "axe.min.js",
    "dashboard.js": ASSETS / "dashboard.js",
    "dashboard.css": ASSETS / "dashboard.css",
}


@dataclass(frozen=True, slots=True)
class DashboardContext:
    store: Callable[[], MetricsStore]  # the ready store, or 503 while starting
    judging: Judging
    service_areas: frozenset[str]
    tokens: Mapping[str, ApiToken]
    today: Callable[[], date]
    fcr_window_days: int
    chromium: Path = Path("/usr/bin/chromium")
    worklist: Worklist = field(default_factory=UnconfiguredWorklist)  # complaints due
    comments: CommentSource = field(default_factory=UnconfiguredComments)  # from feedback


def environment() -> jinja2.Environment:
    """The templates, with the formatting every page and the committee report share."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        format_figure=format_figure,
        format_target=format_target,
        rag_label=rag_label,
        rag_class=rag_class,
        area_title=area_title,
        day_text=day_text,
        arrows=TREND_ARROWS,
        embeddable=charts.embeddable,
        kpis=KPIS,
        kpis_by_name=KPIS_BY_NAME,
    )
    return env


def render(env: jinja2.Environment, template: str, **values: Any) -> str:
    return env.get_template(template).render(**values)
