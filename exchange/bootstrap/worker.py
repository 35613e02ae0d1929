"""The composition root of one exchange worker: it wires the adapters together.

A worker needs a NATS URL, a database URL (already migrated) and the
exchange's signing keys. Several workers may serve one NATS and one
database: they share the queue group and the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_client import subjects
from agent_client.keys import AgentKeys
from agent_client.signing import Clock, SystemClock
from agent_client.transport import connect_nats
from broker.admission import DEFAULT_ADMISSION, AdmissionLimits
from broker.errors import StreamSetupFailed
from broker.signed_service import AgentEvictor
from broker.streams import GOODS_STREAM, ensure_goods_stream, ensure_result_stream
from escrow import Escrow
from exchange.adapters.jetstream import JetStreamResultStore
from exchange.adapters.live_notices import CoreNoticePublisher
from exchange.bootstrap.components import extra_migration_paths, spending_controls
from exchange.bootstrap.periodic import Job, run_periodically
from exchange.bootstrap.worker_metrics import WorkerMetrics
from exchange.entrypoints.nats_endpoints import ExchangeEndpoints
from exchange.limits import (
    GROUP_JOBS_MAX,
    NOTICE_ACK_WAIT_S,
    NOTICE_RESEND_MAX_S,
    REQUEST_CONCURRENCY_MAX,
    STREAMS_CHECK_INTERVAL_S,
    SWEEP_INTERVAL_S,
    TIMER_LEASE_TTL_INTERVALS,
)
from exchange.migrations import VERSIONS_PATH as EXCHANGE_MIGRATIONS
from exchange.use_cases import ContractUseCases, ExchangeContext
from exchange.use_cases.digital_goods import GoodsUseCases
from exchange.use_cases.exchange_accounts import ensure_platform_accounts
from exchange.use_cases.exchange_context import LifecycleSettings
from exchange.use_cases.fee_settings import FeeSettings
from exchange.use_cases.group_commit import GroupCommitter
from exchange.use_cases.metered_sessions import MeteredUseCases
from exchange.use_cases.notices import NoticeDelivery
from exchange.use_cases.subscriptions import SubscriptionUseCases
from exchange.use_cases.timer_leases import TimerLeases, worker_instance_id
from wallet import FeeSchedule, SqlLedger, WalletError, open_database, upgrade_schema

__all__ = ["ExchangeConfig", "ExchangeWorker", "migrate_database"]

NATS_CONNECT_TIMEOUT_S = 5
# JetStream keeps at most five replicas of a stream.
STREAM_REPLICAS_MAX = 5

log = logging.getLogger(__name__)


async def migrate_database(database_url: str, /) -> None:
    """Bring the wallet's, the exchange's and the portal's tables up to date (idempotent).

    The portal's tables are always there: the exchange enforces the spending
    controls humans set in them when a contract opens.
    """
    await upgrade_schema(
        database_url,
        extra_version_locations=[
            str(path) for path in (EXCHANGE_MIGRATIONS, *extra_migration_paths())
        ],
    )


@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    nats_url: str
    database_url: str
    keys: AgentKeys
    operator_ids: frozenset[str]
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    request_concurrency_max: int = REQUEST_CONCURRENCY_MAX
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    # How often timers and the outbox relay are checked.
    sweep_interval_s: float = SWEEP_INTERVAL_S
    # Many contract steps per transaction (exchange/use_cases/group_commit.py);
    # False: groups of one, each step in a transaction of its own (for comparisons).
    group_commit: bool = True
    # The human portal's key, announced in ``info`` so agents can check its
    # signed replies; None: no portal.
    portal_id: str | None = None
    # Keys this exchange signed with before (a rotation): ``info`` names them
    # so agents still accept the records and notices they signed.
    previous_exchange_ids: frozenset[str] = frozenset()
    # How much one agent may ask of a worker (broker/admission.py).
    admission: AdmissionLimits = DEFAULT_ADMISSION
    # JetStream replicas of the result and goods streams: the cluster's
    # node count (3 on a 3-node cluster), 1 on a single server.
    stream_replicas: int = 1
    # Where /metrics and /healthz are served: None serves neither, 0 any free port.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # A notice its recipient has not acknowledged this long after it was
    # sent is sent again (then after ever longer waits).
    notice_ack_wait_s: float = NOTICE_ACK_WAIT_S

    def __post_init__(self) -> None:
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError("metrics_port must be 0 to 65535")
        if not 0 < self.notice_ack_wait_s <= NOTICE_RESEND_MAX_S:
            raise ValueError(f"notice_ack_wait_s must be above 0 and at most {NOTICE_RESEND_MAX_S}")
        if not 1 <= self.stream_replicas <= STREAM_REPLICAS_MAX:
            raise ValueError(f"stream_replicas must be 1 to {STREAM_REPLICAS_MAX}")


class ExchangeWorker:
    def __init__(
        self,
        config: ExchangeConfig,
        /,
        *,
        clock: Clock | None = None,
        evictor: AgentEvictor | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or SystemClock()
        # The broker's eviction of flooding agents, when it runs in this process.
        self._evictor = evictor
        # This worker's own registry: several workers may share a process.
        self.metrics = WorkerMetrics()
        self._client: Client | None = None
        self._engine: AsyncEngine | None = None
        self._endpoints: ExchangeEndpoints | None = None
        self._context: ExchangeContext | None = None
        self._background: list[asyncio.Task[None]] = []
        # This process's name in the timer leases (random per process).
        self.instance_id = worker_instance_id()
        self._leases: TimerLeases | None = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "the worker is not started"
        return self._engine

    @property
    def exchange_id(self) -> str:
        return self.config.keys.agent_id

    async def start(self) -> None:
        assert self._client is None, "the worker is already started"
        self._engine = open_database(self.config.database_url)
        ledger = SqlLedger(self._engine)
        await ensure_platform_accounts(ledger)
        # The exchange key: the auth callout grants it the exchange's subjects.
        self._client = await connect_nats(
            self.config.nats_url,
            self.config.keys,
            name="agentx-exchange",
            connect_timeout_s=NATS_CONNECT_TIMEOUT_S,
        )
        self.metrics.watch_nats(self._client)
        js = self._client.jetstream(timeout=NATS_CONNECT_TIMEOUT_S)
        try:
            await self._ensure_streams(js)
        except StreamSetupFailed:
            await self.stop()  # a worker without its streams must not serve
            raise
        context = ExchangeContext(
            self._engine,
            ledger,
            Escrow(ledger),
            CoreNoticePublisher(self._client),
            keys=self.config.keys,
            clock=self._clock,
            operator_ids=self.config.operator_ids,
            lifecycle=self.config.lifecycle,
            results=JetStreamResultStore(js),
            goods=JetStreamResultStore(js, stream=GOODS_STREAM, subject_of=subjects.goods_chunk),
            spending=spending_controls(),
            group_size_max=GROUP_JOBS_MAX if self.config.group_commit else 1,
            fees=self.config.fees,
            notice_ack_wait_s=self.config.notice_ack_wait_s,
        )
        self.contracts = ContractUseCases(context)
        self.notices = NoticeDelivery(context)
        self.metered = MeteredUseCases(context)
        self.goods = GoodsUseCases(context)
        self.subscriptions = SubscriptionUseCases(context)
        self.fees = FeeSettings(context)
        await self.fees.refresh()
        self._context = context
        self.metrics.watch_groups(self.contract_groups)
        self._endpoints = ExchangeEndpoints(
            self._client,
            context,
            self.notices,
            clock=self._clock,
            escrow_fee_bps=self.config.fees.escrow_bps,
            portal_id=self.config.portal_id,
            previous_exchange_ids=self.config.previous_exchange_ids,
            admission=self.config.admission,
            concurrency_max=self.config.request_concurrency_max,
            evictor=self._evictor,
            observer=self.metrics,
        )
        await self._endpoints.start()
        self._background = self._start_background_loops(context)
        await self._serve_metrics()

    async def _serve_metrics(self) -> None:
        """Serve /metrics and /healthz when configured; the backlog is measured then."""
        port = self.config.metrics_port
        if port is None:
            return
        measure = self.metrics.outbox_backlog_job(self.engine)
        interval_s = self.config.sweep_interval_s
        self._background.append(asyncio.create_task(self._every(interval_s, measure)))
        host = self.config.metrics_host
        await self.metrics.serve(host=host, port=port, engine=lambda: self._engine)

    @property
    def metrics_url(self) -> str | None:
        """``http://host:port`` serving /metrics and /healthz; None when not served."""
        return self.metrics.url

    def _start_background_loops(self, context: ExchangeContext) -> list[asyncio.Task[None]]:
        """The timers and the relay run on one worker at a time (each job's lease
        holder); every worker refreshes its fee table, makes the notices it
        failed to send due at once and checks its streams."""
        interval_s = self.config.sweep_interval_s
        self._leases = TimerLeases(
            context, holder=self.instance_id, ttl_s=TIMER_LEASE_TTL_INTERVALS * interval_s
        )
        leased_jobs = {
            "contracts.sweep": self.contracts.sweep,
            "metered.sweep": self.metered.sweep,
            "goods.sweep": self.goods.sweep,
            "subscriptions.sweep": self.subscriptions.sweep,
            "outbox.relay": self.relay_outbox,
        }
        # One timer for all of them (exchange/bootstrap/periodic.py).
        every_tick = [
            *(self._leader_only(job, run_pass) for job, run_pass in leased_jobs.items()),
            self.fees.refresh,
            context.flush_unsent,
        ]
        return [
            asyncio.create_task(self._every(interval_s, *every_tick)),
            asyncio.create_task(self._every(STREAMS_CHECK_INTERVAL_S, self.ensure_streams)),
        ]

    def _leader_only(
        self, job: str, run_pass: Callable[[], Awaitable[int]]
    ) -> Callable[[], Awaitable[int]]:
        leases = self.timer_leases

        async def leading() -> int:
            return await leases.run_if_leader(job, run_pass)

        leading.__name__ = job  # the name a failing run is logged under
        return leading

    @property
    def timer_leases(self) -> TimerLeases:
        """This worker's leases on the background jobs."""
        assert self._leases is not None, "the worker is not started"
        return self._leases

    async def ensure_streams(self) -> int:
        assert self._client is not None, "the worker is not started"
        await self._ensure_streams(self._client.jetstream(timeout=NATS_CONNECT_TIMEOUT_S))
        return 0

    async def _ensure_streams(self, js: JetStreamContext) -> None:
        """Create the result and goods streams, or bring them back if they vanished.

        Nobody connected may delete them (broker/permissions.py); this covers
        an operator with server access, and a store lost with its disk.
        """
        replicas = self.config.stream_replicas
        await ensure_result_stream(js, replicas=replicas)
        await ensure_goods_stream(js, replicas=replicas)

    @property
    def context(self) -> ExchangeContext:
        """What the use cases share: the outbox, the signer, the ports."""
        assert self._context is not None, "the worker is not started"
        return self._context

    @property
    def contract_groups(self) -> GroupCommitter[Any, Any]:
        """The group commit every contract step goes through."""
        groups = self.context.contract_groups
        assert groups is not None, "made with the worker's ContractUseCases"
        return groups

    async def relay_outbox(self) -> int:
        """Send again the notices due (not acknowledged in time, or whose send failed);
        once a minute, also drop those past their lifetime. How many were sent."""
        sent = await self.context.relay_outbox()
        await self.notices.prune_if_due()
        return sent

    async def _every(self, interval_s: float, *jobs: Job) -> None:
        await run_periodically(interval_s, jobs, passed=self._passed, failed=self._failed)

    def _passed(self, job: Job, done: int, /) -> None:
        self.metrics.job_passed(job.__name__, done)

    def _failed(self, job: Job, error: Exception, /) -> None:
        self.metrics.job_failed(job.__name__, error)
        # One line: a job failing every second (JetStream down) must not fill
        # the log with tracebacks.
        log.warning("background job %s failed; it runs again: %r", job.__name__, error)

    async def stop(self) -> None:
        """Stop taking requests, finish those in flight, then disconnect."""
        await self.metrics.stop_serving()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        if self._leases is not None:
            # Another worker takes the jobs at its next wake-up, not after the lease lapses.
            with contextlib.suppress(WalletError):
                await self._leases.release_all()
            self._leases = None
        if self._endpoints is not None:
            await self._endpoints.stop()
            self._endpoints = None
        if self._context is not None:
            await self.notices.close()
            await self._context.close()
            with contextlib.suppress(WalletError):
                await self._context.flush_unsent()
            self._context = None
        if self._client is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._client.drain()
            self._client = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> ExchangeWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
