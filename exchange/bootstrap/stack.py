"""The whole exchange on one machine: embedded NATS, a SQLite ledger, one worker.

This is what ``agentx up`` and ``agentx demo`` run, and what the end-to-end
tests and benchmarks start. Everything lives under one data directory::

    nats/               the nats-server config, log and JetStream store
    ledger.sqlite3      the ledger, the exchange's and the portal's tables (WAL mode)
    exchange.seed       the exchange's signing key (0600)
    operator.seed       the operator's key, allowed to mint credits (0600)
    portal.seed         the human portal's key: its NATS identity and reply signer (0600)
    exchange.previous-ids   ids of exchange keys rotated out (``rotate_exchange_key``)
    exchange.json       the NATS URL and the exchange id, for clients (no secret)

NATS authentication is on here: the embedded server runs the auth
callout, which admits the exchange key as the exchange, the portal key as
the portal, and every other key as an agent (broker/permissions.py). Only
benchmarks turn it off (``StackConfig(auth=False)``), to compare.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agent_client.errors import AddressFileError
from agent_client.exchange_address import ExchangeAddress, write_exchange_address
from agent_client.keys import AgentKeys, is_agent_id
from broker import AccessPolicy, EmbeddedNatsServer, NatsServerConfig, NatsServerExited
from exchange.bootstrap.components import WebPortal, embedded_portal_factory
from exchange.bootstrap.worker import ExchangeConfig, ExchangeWorker, migrate_database
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import SWEEP_INTERVAL_S

__all__ = [
    "ADDRESS_FILE_NAME",
    "EmbeddedStack",
    "StackConfig",
    "load_or_create_keys",
    "rotate_exchange_key",
]

log = logging.getLogger(__name__)

DATABASE_FILE_NAME = "ledger.sqlite3"
# Where the stack says which URL it serves and which key is the exchange's.
ADDRESS_FILE_NAME = "exchange.json"
EXCHANGE_SEED_FILE_NAME = "exchange.seed"
PREVIOUS_IDS_FILE_NAME = "exchange.previous-ids"
# Rotations remembered: each id stays trusted for the evidence it signed.
PREVIOUS_IDS_MAX = 16


def rotate_exchange_key(data_dir: Path, /) -> tuple[str, str]:
    """A new exchange key in ``data_dir``; the old id joins the previous ids.

    Run with the exchange stopped. The old seed is removed: it never signs
    again, while what it signed stays verifiable by its id (docs/SECURITY.md).
    Returns the old and the new id.
    """
    seed_path = data_dir / EXCHANGE_SEED_FILE_NAME
    old = AgentKeys.load(seed_path)
    previous = [*read_previous_exchange_ids(data_dir), old.agent_id][-PREVIOUS_IDS_MAX:]
    (data_dir / PREVIOUS_IDS_FILE_NAME).write_text("".join(f"{id_}\n" for id_ in previous))
    seed_path.unlink()
    new = load_or_create_keys(seed_path)
    return old.agent_id, new.agent_id


def read_previous_exchange_ids(data_dir: Path, /) -> list[str]:
    path = data_dir / PREVIOUS_IDS_FILE_NAME
    if not path.exists():
        return []
    lines = path.read_text(encoding="ascii").split()
    ids = [line for line in lines if is_agent_id(line)]
    if len(ids) != len(lines) or len(ids) > PREVIOUS_IDS_MAX:
        raise AddressFileError(f"{path} holds something other than agent ids", path=str(path))
    return ids


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
    # When ``nats_port`` is taken (a system NATS on 4222, say), take any free
    # port instead of failing; clients find it in the address file.
    nats_port_fallback: bool = False
    # False: nats-server authenticates nobody and anyone reaching its port may
    # publish and subscribe anything, the exchange's subjects included. Only
    # for benchmarks that compare with and without auth (``--insecure-no-auth``).
    auth: bool = True

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
        self.exchange_keys = load_or_create_keys(self.data_dir / EXCHANGE_SEED_FILE_NAME)
        self.previous_exchange_ids = frozenset(read_previous_exchange_ids(self.data_dir))
        self.operator_keys = load_or_create_keys(self.data_dir / "operator.seed")
        self.portal_keys = load_or_create_keys(self.data_dir / "portal.seed")
        self.nats = self._nats_server(config.nats_port)
        # Set when the configured port was taken and another one serves.
        self.nats_port_taken: int | None = None
        self.workers: list[ExchangeWorker] = []
        self.portal: WebPortal | None = None

    @property
    def nats_url(self) -> str:
        return self.nats.url

    @property
    def worker(self) -> ExchangeWorker:
        return self.workers[0]

    @property
    def _portal_id(self) -> str | None:
        return None if self.config.portal_port is None else self.portal_keys.agent_id

    @property
    def address_path(self) -> Path:
        return self.data_dir / ADDRESS_FILE_NAME

    def _nats_server(self, port: int) -> EmbeddedNatsServer:
        access = AccessPolicy(
            exchange_ids=frozenset({self.exchange_keys.agent_id}),
            portal_ids=frozenset({self.portal_keys.agent_id}),
        )
        return EmbeddedNatsServer(
            NatsServerConfig(data_dir=self.data_dir / "nats", port=port),
            access=access if self.config.auth else None,
        )

    async def _start_nats(self) -> None:
        try:
            await self.nats.start()
        except NatsServerExited as exc:
            port = self.config.nats_port
            taken = "address already in use" in exc.log_tail
            if not (taken and port != 0 and self.config.nats_port_fallback):
                raise
            log.warning("NATS port %d is taken; serving on a free port instead", port)
            self.nats_port_taken = port
            self.nats = self._nats_server(0)
            await self.nats.start()

    async def start(self) -> None:
        await self._start_nats()
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
                        portal_id=self._portal_id,
                        previous_exchange_ids=self.previous_exchange_ids,
                    ),
                    # The broker's callout, here in this process, disconnects floods.
                    evictor=self.nats.callout,
                )
                await worker.start()
                self.workers.append(worker)
                if self.nats.callout is not None:  # counted where the callout runs
                    worker.metrics.count_auth_refusals(self.nats.callout)
            if self.config.portal_port is not None:
                await self._start_portal(self.config.portal_port)
            write_exchange_address(
                self.address_path,
                ExchangeAddress(
                    nats_url=self.nats.url,
                    exchange_id=self.exchange_keys.agent_id,
                    portal_id=self._portal_id,
                ),
            )
        except BaseException:
            await self.stop()
            raise

    async def _start_portal(self, port: int) -> None:
        # Loaded here: only a stack with a portal loads the web stack.
        make_portal = embedded_portal_factory()
        if make_portal is None:
            raise ExchangeError(
                ErrorCode.UNAVAILABLE, "no human portal is installed here; run with --no-portal"
            )
        self.portal = make_portal(
            database_url=self.database_url,
            nats_url=self.nats.url,
            operator_keys=self.operator_keys,
            portal_keys=self.portal_keys,
            evictor=self.nats.callout,
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
