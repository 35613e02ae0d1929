"""The whole exchange on one machine: embedded NATS, a SQLite ledger, one worker.

This is what ``agentx up`` and ``agentx demo`` run, and what the end-to-end
tests and benchmarks start. Everything lives under one data directory::

    nats/               the nats-server config, log and JetStream store
    ledger.sqlite3      the ledger, the exchange's and the portal's tables (WAL mode)
    exchange.seed       the exchange's signing key (0600)
    operator.seed       the operator's key, allowed to mint credits (0600)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_client.keys import AgentKeys
from broker import EmbeddedNatsServer, NatsServerConfig
from exchange.app import ExchangeConfig, ExchangeWorker, migrate_database
from exchange.limits import SWEEP_INTERVAL_S

if TYPE_CHECKING:
    from human_portal.embedded import EmbeddedPortal

__all__ = ["EmbeddedStack", "StackConfig", "load_or_create_keys"]

DATABASE_FILE_NAME = "ledger.sqlite3"


def load_or_create_keys(path: Path, /) -> AgentKeys:
    """The keys in ``path``, creating the seed file (0600) on first use."""
    if path.exists():
        return AgentKeys.load(path)
    keys = AgentKeys.generate()
    keys.save(path)
    return keys


@dataclass(frozen=True, slots=True)
class StackConfig:
    data_dir: Path
    nats_port: int = 0
    # None: a SQLite file in the data directory. A PostgreSQL URL works too.
    database_url: str | None = None
    workers: int = 1
    # The human portal's HTTP port (0: any free port); None runs no portal.
    portal_port: int | None = None
    # Emails that become operators when they sign up to the portal.
    operator_emails: frozenset[str] = frozenset()
    # How often each worker applies due timers and relays the outbox.
    sweep_interval_s: float = SWEEP_INTERVAL_S
    # False: one transaction per contract step (for before/after comparisons).
    group_commit: bool = True

    def __post_init__(self) -> None:
        assert 1 <= self.workers <= 16
        assert self.portal_port is None or 0 <= self.portal_port <= 65535


class EmbeddedStack:
    def __init__(self, config: StackConfig, /) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = config.database_url or (
            f"sqlite+aiosqlite:///{self.data_dir / DATABASE_FILE_NAME}"
        )
        self.exchange_keys = load_or_create_keys(self.data_dir / "exchange.seed")
        self.operator_keys = load_or_create_keys(self.data_dir / "operator.seed")
        self.nats = EmbeddedNatsServer(
            NatsServerConfig(data_dir=self.data_dir / "nats", port=config.nats_port)
        )
        self.workers: list[ExchangeWorker] = []
        self.portal: EmbeddedPortal | None = None

    @property
    def nats_url(self) -> str:
        return self.nats.url

    @property
    def worker(self) -> ExchangeWorker:
        return self.workers[0]

    async def start(self) -> None:
        await self.nats.start()
        try:
            await migrate_database(self.database_url)
            for _ in range(self.config.workers):
                worker = ExchangeWorker(
                    ExchangeConfig(
                        nats_url=self.nats.url,
                        database_url=self.database_url,
                        keys=self.exchange_keys,
                        operator_ids=frozenset({self.operator_keys.agent_id}),
                        sweep_interval_s=self.config.sweep_interval_s,
                        group_commit=self.config.group_commit,
                    )
                )
                await worker.start()
                self.workers.append(worker)
            if self.config.portal_port is not None:
                await self._start_portal(self.config.portal_port)
        except BaseException:
            await self.stop()
            raise

    async def _start_portal(self, port: int) -> None:
        # Imported here: only a stack with a portal loads the web stack.
        from human_portal.embedded import EmbeddedPortal

        self.portal = EmbeddedPortal(
            database_url=self.database_url,
            nats_url=self.nats.url,
            operator_keys=self.operator_keys,
            port=port,
            operator_emails=self.config.operator_emails,
        )
        await self.portal.start()

    async def stop(self) -> None:
        if self.portal is not None:
            await self.portal.stop()
            self.portal = None
        for worker in reversed(self.workers):
            await worker.stop()
        self.workers.clear()
        await self.nats.stop()

    async def __aenter__(self) -> EmbeddedStack:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
