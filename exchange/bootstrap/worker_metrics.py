"""One exchange worker's Prometheus metrics, and the server that shows them.

Every worker has a registry of its own (never the process-wide default):
tests and ``agentx up --workers N`` run several workers in one process, and
each must count only its own requests. The use cases never import
Prometheus: the worker hands this object to the seams that report, as a
:class:`~broker.service_observer.RequestObserver` to the signed-request
service, a group-size hook to the group commit, and job results from its
background loops. Counts kept elsewhere (the NATS client's reconnects, the
auth callout's refusals, failed groups) are read when scraped.

The metrics (docs/OPERATIONS.md says what each means):

================================  =========  ====================================
``agentx_requests_total``         counter    requests by ``endpoint`` and ``code``
``agentx_request_seconds``        histogram  time to answer, by ``endpoint``
``agentx_group_size``             histogram  contract steps per group transaction
``agentx_outbox_backlog``         gauge      notices committed, not yet acknowledged
``agentx_timers_due``             gauge      what each periodic job's last pass did
``agentx_background_failures``    counter    failed passes of a periodic job
``agentx_ledger_errors_total``    counter    ledger failures, by ``where``
``agentx_ledger_group_failures_total``  counter  group transactions that failed whole
``agentx_nats_reconnects_total``  counter    reconnections of the worker's client
``agentx_auth_refusals_total``    counter    connections the auth callout refused
================================  =========  ====================================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, Protocol

from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.metrics_http import MetricsServer
from exchange.adapters.operations_queries import database_answers, outbox_backlog
from exchange.limits import GROUP_JOBS_MAX
from exchange.use_cases.group_commit import GroupCommitter
from wallet import WalletError

__all__ = ["WorkerMetrics", "worker_health"]

# Answer times from a cache hit (1 ms) to a request's whole budget (10 s).
REQUEST_SECONDS_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Powers of two up to the largest group the group commit takes.
GROUP_SIZE_BUCKETS: Final = tuple(float(2**power) for power in range(9))
assert GROUP_SIZE_BUCKETS[-1] == GROUP_JOBS_MAX


class RefusalCounter(Protocol):
    """The auth callout (broker/auth_callout.py) as these metrics see it."""

    @property
    def refused_count(self) -> int: ...


class WorkerMetrics:
    """The metrics of one worker, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "agentx_requests",
            "Requests by endpoint and answer code (ok, an error code, or not_answered).",
            ["endpoint", "code"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "agentx_request_seconds",
            "Time from taking a verified request to sending its answer, by endpoint.",
            ["endpoint"],
            buckets=REQUEST_SECONDS_BUCKETS,
            registry=registry,
        )
        self.group_size = Histogram(
            "agentx_group_size",
            "Contract steps applied in one group transaction.",
            buckets=GROUP_SIZE_BUCKETS,
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "agentx_outbox_backlog",
            "Notices committed to the outbox and not yet acknowledged by their recipients.",
            registry=registry,
        )
        self.timers_due = Gauge(
            "agentx_timers_due",
            "What each periodic job's last pass found due and acted on.",
            ["job"],
            registry=registry,
        )
        self.background_failures = Counter(
            "agentx_background_failures",
            "Passes of a periodic job that failed (the job runs again).",
            ["job"],
            registry=registry,
        )
        self.ledger_errors = Counter(
            "agentx_ledger_errors",
            "Ledger failures: in a request's use case, in a periodic job.",
            ["where"],
            registry=registry,
        )
        self._read_elsewhere = _CountsReadElsewhere()
        registry.register(self._read_elsewhere)
        self._server: MetricsServer | None = None

    # The signed-request service's observer (broker/service_observer.py).
    def request_answered(self, endpoint: str, code: str, duration_s: float, /) -> None:
        self.requests.labels(endpoint, code).inc()
        self.request_seconds.labels(endpoint).observe(duration_s)

    def request_refused(self, endpoint: str, code: str, /) -> None:
        self.requests.labels(endpoint, code).inc()

    def use_case_raised(self, endpoint: str, error: Exception, /) -> None:
        if isinstance(error, WalletError):
            self.ledger_errors.labels("request").inc()

    # The worker's periodic jobs.
    def job_passed(self, job: str, count: int, /) -> None:
        self.timers_due.labels(job).set(count)

    def job_failed(self, job: str, error: Exception, /) -> None:
        self.background_failures.labels(job).inc()
        if isinstance(error, WalletError):
            self.ledger_errors.labels("background").inc()

    def outbox_backlog_job(self, engine: AsyncEngine, /) -> Callable[[], Awaitable[int]]:
        """A periodic job setting ``agentx_outbox_backlog`` (one ``COUNT`` per pass)."""

        async def measure_outbox_backlog() -> int:
            async with engine.connect() as connection:
                backlog = await outbox_backlog(connection)
            self.outbox_backlog.set(backlog)
            return backlog

        return measure_outbox_backlog

    # Counts kept elsewhere, read at each scrape.
    def watch_nats(self, client: Client, /) -> None:
        self._read_elsewhere.nats_client = client

    def watch_groups(self, groups: GroupCommitter[Any, Any], /) -> None:
        groups.observe_group_size = self.group_size.observe
        self._read_elsewhere.groups = groups

    def count_auth_refusals(self, callout: RefusalCounter, /) -> None:
        """Count the auth callout's refusals: only where it runs, in this process."""
        self._read_elsewhere.callout = callout

    async def serve(
        self, *, host: str, port: int, engine: Callable[[], AsyncEngine | None]
    ) -> None:
        """Serve ``/metrics`` and ``/healthz`` on ``host:port`` (0: any free port)."""
        assert self._server is None, "already serving"
        watched = self._read_elsewhere

        async def health() -> str | None:
            return await worker_health(watched.nats_client, engine())

        self._server = MetricsServer(self.registry, health=health, host=host, port=port)
        await self._server.start()

    @property
    def url(self) -> str | None:
        """Where ``/metrics`` is served (``http://host:port``), None when not served."""
        return None if self._server is None else self._server.url

    async def stop_serving(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None


async def worker_health(client: Client | None, engine: AsyncEngine | None, /) -> str | None:
    """None when connected to NATS and the database answers ``SELECT 1``, else why not."""
    if client is None or not client.is_connected:
        return "nats: not connected"
    if engine is None:
        return "database: not opened"
    try:
        await database_answers(engine)
    except Exception as exc:
        return f"database: {type(exc).__name__}: {exc}"
    return None


class _CountsReadElsewhere(Collector):
    """Counters whose counts live in other objects, read when Prometheus scrapes."""

    def __init__(self) -> None:
        self.nats_client: Client | None = None
        self.groups: GroupCommitter[Any, Any] | None = None
        self.callout: RefusalCounter | None = None

    def collect(self) -> Iterator[Metric]:
        reconnects = CounterMetricFamily(
            "agentx_nats_reconnects", "Reconnections of this worker's NATS client."
        )
        client = self.nats_client
        reconnects.add_metric([], 0 if client is None else client.stats["reconnects"])
        yield reconnects
        failed_groups = CounterMetricFamily(
            "agentx_ledger_group_failures",
            "Group transactions that failed as a whole (each step was then applied alone).",
        )
        failed_groups.add_metric([], 0 if self.groups is None else self.groups.groups_failed)
        yield failed_groups
        if self.callout is not None:
            refusals = CounterMetricFamily(
                "agentx_auth_refusals",
                "Connections the auth callout (running in this process) refused.",
            )
            refusals.add_metric([], self.callout.refused_count)
            yield refusals
