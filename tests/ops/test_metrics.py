"""Operators' view of a worker: Prometheus metrics that move, and a health check.

A real worker (the session's nats-server, a fresh database) is restarted with
``metrics_port=0`` and scraped over HTTP like Prometheus would: a settled
deal raises ``agentx_requests_total`` for ``contract.open`` with code ``ok``,
an error answer is counted under its code, the group commit reports group
sizes, and ``/healthz`` answers 200 while NATS and the database answer and
503 with a one-line reason once the database is gone. The HTTP server itself
is checked with a health function that fails.
"""

from __future__ import annotations

import asyncio
import shutil

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from agent_client import AgentClientError, AgentKeys, QuoteRequest
from broker.metrics_http import MetricsServer
from exchange import ExchangeConfig, ExchangeWorker, migrate_database
from exchange.bootstrap.worker_metrics import WorkerMetrics

PRICE_MILLICREDITS = 2_000


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent) in Prometheus text."""
    for family in text_string_to_metric_families(metrics_text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


async def scrape(url: str, path: str = "/metrics") -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(url + path)


async def upper(task):
    return {"text": task["text"].upper()}


async def settle_one_deal(exchange) -> None:
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="Upper", price_millicredits=2_000)
    await provider.serve("text.upper", upper, pricing=PRICE_MILLICREDITS)
    buyer = await exchange.funded_agent(100_000)
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=5_000, timeout_s=2, quotes_max=1)
    )
    contract = await buyer.hire(quotes[0], {"text": "a"})
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))


async def test_requests_are_counted_by_endpoint_and_code_after_a_deal(exchange):
    worker = await exchange.restart(metrics_port=0)
    assert worker.metrics_url is not None and worker.metrics_url.startswith("http://127.0.0.1:")
    before = (await scrape(worker.metrics_url)).text
    await settle_one_deal(exchange)
    stranger = await exchange.agent()
    with pytest.raises(AgentClientError):
        await stranger.subscription("no-such-subscription")

    after = (await scrape(worker.metrics_url)).text
    opened = "agentx_requests_total"
    assert sample(after, opened, endpoint="contract.open", code="ok") == (
        sample(before, opened, endpoint="contract.open", code="ok") + 1
    )
    assert sample(after, opened, endpoint="subscription.get", code="not_found") == 1
    assert sample(after, "agentx_request_seconds_count", endpoint="contract.open") >= 1
    # Open, deliver and accept each went through a group transaction.
    assert sample(after, "agentx_group_size_count") >= 3
    assert sample(after, "agentx_nats_reconnects_total") == 0


async def test_the_outbox_backlog_and_periodic_jobs_are_measured(exchange):
    worker = await exchange.restart(metrics_port=0, sweep_interval_s=0.05)
    await settle_one_deal(exchange)
    await asyncio.sleep(0.5)  # a few passes of every periodic job
    text = (await scrape(worker.metrics_url)).text
    assert "agentx_outbox_backlog " in text
    assert sample(text, "agentx_outbox_backlog") >= 0
    assert 'job="measure_outbox_backlog"' in text
    assert sample(text, "agentx_background_failures_total") == 0


async def test_healthz_answers_200_then_503_once_the_database_is_gone(
    nats_server, nats_url, exchange_keys, tmp_path
):
    database_dir = tmp_path / "db"
    database_dir.mkdir()
    database_url = f"sqlite+aiosqlite:///{database_dir / 'ledger.sqlite3'}"
    await migrate_database(database_url)
    config = ExchangeConfig(
        nats_url=nats_url,
        database_url=database_url,
        keys=exchange_keys,
        operator_ids=frozenset({AgentKeys.generate().agent_id}),
        metrics_port=0,
    )
    async with ExchangeWorker(config, evictor=nats_server.callout) as worker:
        assert worker.metrics_url is not None
        healthy = await scrape(worker.metrics_url, "/healthz")
        assert (healthy.status_code, healthy.text) == (200, "ok\n")

        # Pooled connections keep the old file open: close them, then take the file away.
        await worker.engine.dispose()
        moved_dir = tmp_path / "moved"
        shutil.move(database_dir, moved_dir)
        try:
            broken = await scrape(worker.metrics_url, "/healthz")
        finally:
            shutil.move(moved_dir, database_dir)
        assert broken.status_code == 503
        assert broken.text.startswith("database: ") and broken.text.count("\n") == 1


async def test_the_metrics_server_answers_503_with_the_reason_and_404_elsewhere():
    registry = CollectorRegistry()
    Counter("probe", "A counter only this test has.", registry=registry).inc()

    async def unhealthy() -> str | None:
        return "nats: not connected\nsecond line"

    server = MetricsServer(registry, health=unhealthy, host="127.0.0.1", port=0)
    await server.start()
    try:
        metrics = await scrape(server.url)
        assert sample(metrics.text, "probe_total") == 1
        assert metrics.headers["content-type"].startswith("text/plain")
        health = await scrape(server.url, "/healthz")
        assert (health.status_code, health.text) == (503, "nats: not connected second line\n")
        assert (await scrape(server.url, "/other")).status_code == 404
    finally:
        await server.stop()


async def test_each_worker_counts_in_a_registry_of_its_own():
    one, other = WorkerMetrics(), WorkerMetrics()
    one.request_answered("contract.open", "ok", 0.01)
    assert (
        one.registry.get_sample_value(
            "agentx_requests_total", {"endpoint": "contract.open", "code": "ok"}
        )
        == 1
    )
    assert (
        other.registry.get_sample_value(
            "agentx_requests_total", {"endpoint": "contract.open", "code": "ok"}
        )
        is None
    )


async def test_hostile_requests_to_the_metrics_server_get_nothing_and_change_nothing(
    monkeypatch,
):
    """Oversize heads, endless header lines, other methods and silent clients are
    answered with nothing (or 405) within bounds, and the server keeps serving."""
    import broker.metrics_http as metrics_http

    monkeypatch.setattr(metrics_http, "REQUEST_HEAD_TIMEOUT_S", 0.5)
    registry = CollectorRegistry()
    Counter("probe", "A counter only this test has.", registry=registry).inc()

    async def healthy() -> str | None:
        return None

    server = MetricsServer(registry, health=healthy, host="127.0.0.1", port=0)
    await server.start()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)

    async def answer_to(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(raw)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()

    try:
        oversize = (
            b"GET /" + b"a" * (metrics_http.REQUEST_HEAD_BYTES_MAX * 2) + b" HTTP/1.1\r\n\r\n"
        )
        assert await answer_to(oversize) == b""
        endless = b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n"
        assert await answer_to(endless) == b""
        assert (await answer_to(b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert await answer_to(b"GET /metr") == b""  # silent after a partial line
        garbage = await answer_to(b"\x00\xff garbage\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 405")
        # Still serving, with nothing counted or changed by the above.
        metrics = await scrape(server.url)
        assert metrics.status_code == 200 and sample(metrics.text, "probe_total") == 1
    finally:
        await server.stop()
