"""The portal's ``/metrics``: requests counted by route template and status, served
to a local scraper only.

A real portal server (the harness) is asked for pages over HTTP on loopback;
``/metrics`` then shows them under their route template (never the raw path),
and a request carrying a proxy's ``X-Forwarded-For`` header gets a 404.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def portal_requests(metrics_text: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "agentx_portal_requests_total" and all(
                sample.labels.get(key) == value for key, value in labels.items()
            ):
                return sample.value
    return 0.0


async def test_requests_are_counted_by_route_and_status_for_a_local_scraper(harness):
    async with httpx.AsyncClient(base_url=harness.url, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/no-such-page")).status_code == 404
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert portal_requests(metrics.text, route="/healthz", status="200") == 1
        assert portal_requests(metrics.text, route="unmatched", status="404") == 1

        proxied = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 404
