"""The portal's Prometheus metrics: requests by route and status, and their time.

The portal process has a registry of its own (tests run several apps in one
process). ``/metrics`` is unauthenticated but answers only a client on the
portal's own machine (a loopback address) whose request carries no proxy
forwarding header: Prometheus scrapes it locally, while a reverse proxy in
front of the portal, which adds ``X-Forwarded-For`` (or ``Forwarded``), gets
a 404 for it even though it connects from loopback too. An operator who
needs it elsewhere runs a local scraper or an authenticated tunnel.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as prometheus_text
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

__all__ = ["PortalMetrics", "add_portal_metrics"]

METRICS_PATH: Final = "/metrics"
# Headers a reverse proxy adds: such a request came from outside, whatever its peer.
FORWARDING_HEADERS: Final = ("forwarded", "x-forwarded-for", "x-real-ip")
# The route label of a request no route matched (a scan must not mint labels).
UNMATCHED_ROUTE: Final = "unmatched"
REQUEST_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PortalMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "agentx_portal_requests",
            "Portal HTTP requests by route template and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "agentx_portal_request_seconds",
            "Time to answer a portal HTTP request, by route template.",
            ["route"],
            buckets=REQUEST_SECONDS_BUCKETS,
            registry=self.registry,
        )


def add_portal_metrics(app: FastAPI, /) -> PortalMetrics:
    """Count every request of ``app`` and serve ``/metrics`` to local scrapers."""
    metrics = PortalMetrics()
    app.state.portal_metrics = metrics
    app.add_middleware(_CountRequests, metrics=metrics)

    @app.get(METRICS_PATH, include_in_schema=False)
    async def metrics_text(request: Request) -> Response:
        if not _is_local_scraper(request):
            return PlainTextResponse("not found", status_code=404)
        return Response(prometheus_text(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


def _is_local_scraper(request: Request) -> bool:
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    host = request.client.host if request.client is not None else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _CountRequests(BaseHTTPMiddleware):
    def __init__(self, app: Any, *, metrics: PortalMetrics) -> None:
        super().__init__(app)
        self._metrics = metrics

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started_s = time.perf_counter()
        response = await call_next(request)
        # The template (/agents/{agent_id}), never the path: labels stay bounded.
        route = getattr(request.scope.get("route"), "path", UNMATCHED_ROUTE)
        self._metrics.requests.labels(route, str(response.status_code)).inc()
        self._metrics.request_seconds.labels(route).observe(time.perf_counter() - started_s)
        return response
