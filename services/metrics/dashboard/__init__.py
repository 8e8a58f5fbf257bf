"""The managers' dashboard at `/dashboard`: server-rendered HTML with Vega-Lite charts.

- `context`: what the pages need from the service (store, judging, tokens, clock);
- `pages`: the figures of each page, read through `services.metrics.queries`;
- `routes`: the pages, the sign-in form and the static files;
- `charts`: the Vega-Lite specs;
- `committee_page`: the committee report as printable HTML and as PDF.
"""

from services.metrics.dashboard.context import DashboardContext
from services.metrics.dashboard.routes import dashboard_router

__all__ = ["DashboardContext", "dashboard_router"]
