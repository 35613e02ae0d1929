"""What every use case shares: the unit of work, the signer, the settings, the outbox.

Notices follow the outbox pattern: a use case seals its notices and writes
them to the outbox table in the same transaction as the change they report;
after commit each is sent on core NATS into its recipient's inbox
(``_INBOX.<id>.notices``). It stays in the outbox until the recipient
acknowledges it (``notices.ack``, exchange/use_cases/notices.py); the relay
sends again what was not acknowledged within the ack wait, then after ever
longer waits, and a send that failed (or a worker that died before sending)
is caught by the same relay. So a committed transition is never left
unannounced, and nothing is announced for a transaction that rolled back.

A step's reply does not wait for the send: its notices are already safe in
the outbox, so they are sent in the background (``publish_soon``). Receivers
never relied on the order of a reply and a notice (notices may arrive late,
twice or out of order anyway; PROTOCOL.md section 1.7).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_client import subjects
from agent_client.keys import AgentKeys
from agent_client.protocol import Document, Header, json_encoder
from agent_client.signing import Clock, make_header, seal
from escrow import Escrow, EscrowError
from exchange.adapters import contract_store
from exchange.errors import ErrorCode, ExchangeError
from exchange.limits import (
    DISPUTE_DEFAULT_PROVIDER_SHARE_BPS,
    DISPUTE_WINDOW_DEFAULT_S,
    GROUP_JOBS_MAX,
    NOTICE_ACK_WAIT_S,
    NOTICE_LIFETIME_S,
    NOTICE_RESEND_MAX_S,
    NOTICES_PUBLISHING_MAX,
    OUTBOX_BATCH_MAX,
    OUTBOX_RELAY_BACKOFF_MAX_S,
    OUTBOX_RELAY_BACKOFF_MIN_S,
    REVIEW_WINDOW_DEFAULT_S,
    STORED_RESULT_DELIVERIES_MAX,
)
from exchange.use_cases.group_commit import GroupCommitter
from exchange.use_cases.opened_contracts import OpenedContracts
from exchange.use_cases.relay_backoff import RelayBackoff
from exchange.use_cases.spending import NoSpendingControls, SpendingControls
from wallet import FeeSchedule, HeldConnection, SqlLedger, run_transaction

__all__ = [
    "ExchangeContext",
    "LifecycleSettings",
    "NoticePublisher",
    "OutboxNotice",
    "ResultStore",
    "escrow_refused_error",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_K = TypeVar("_K")


class NoticePublisher(Protocol):
    """Sends notices to their recipients (core NATS in production)."""

    async def publish_notices(
        self, notices: Sequence[OutboxNotice], /
    ) -> Sequence[BaseException | None]:
        """For each notice, None once it is sent, else why not (the relay sends it again)."""
        ...


class ResultStore(Protocol):
    """Where the exchange keeps results too large to send inline, chunk by chunk
    (a JetStream stream only the exchange can reach, in production).

    Storing a chunk again replaces it, and storing the same bytes twice stores
    them once (a retried upload); nothing is ever deleted. Unavailability is
    raised as ``ExchangeError(UNAVAILABLE)``.
    """

    async def put_chunk(self, contract_id: str, index: int, chunk: bytes, /) -> None: ...

    async def get_chunk(self, contract_id: str, index: int, /) -> bytes | None:
        """The chunk's bytes, or None when it is not stored."""
        ...


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    """How long a buyer has to review a delivery, and how disputes end by default."""

    review_window_s: int = REVIEW_WINDOW_DEFAULT_S
    dispute_window_s: int = DISPUTE_WINDOW_DEFAULT_S
    dispute_default_provider_share_bps: int = DISPUTE_DEFAULT_PROVIDER_SHARE_BPS

    def __post_init__(self) -> None:
        assert 0 < self.review_window_s <= 30 * 24 * 3600
        assert 0 < self.dispute_window_s <= 90 * 24 * 3600
        assert 0 <= self.dispute_default_provider_share_bps <= 10_000


@dataclass(frozen=True, slots=True)
class OutboxNotice:
    notice_id: str
    recipient: str
    subject: str
    payload: bytes


def escrow_refused_error(refusal: EscrowError, /) -> ExchangeError:
    """The answer to a ledger refusal of an escrow step.

    Insufficient funds is handled where it can happen; any other refusal
    means the contract moved on.
    """
    return ExchangeError(ErrorCode.INVALID_STATE, str(refusal), contract_id=refusal.contract_id)


class ExchangeContext:
    """The adapters and settings the use cases run with (built by ``exchange.bootstrap.worker``)."""

    def __init__(
        self,
        engine: AsyncEngine,
        ledger: SqlLedger,
        escrow: Escrow,
        publisher: NoticePublisher,
        /,
        *,
        keys: AgentKeys,
        clock: Clock,
        operator_ids: frozenset[str],
        lifecycle: LifecycleSettings | None = None,
        results: ResultStore | None = None,
        goods: ResultStore | None = None,
        spending: SpendingControls | None = None,
        group_size_max: int = GROUP_JOBS_MAX,
        fees: FeeSchedule | None = None,
        notice_ack_wait_s: float = NOTICE_ACK_WAIT_S,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.escrow = escrow
        self.publisher = publisher
        self.keys = keys
        self.clock = clock
        self.operator_ids = operator_ids
        self.lifecycle = lifecycle or LifecycleSettings()
        # None: this worker only accepts inline results.
        self.results = results
        # Digital goods' ciphertext (None: this worker sells no goods).
        self.goods = goods
        self.exchange_id = keys.agent_id
        # The fee table: the configured defaults, and the table in force (the
        # defaults under the rates operators set; FeeSettings.refresh loads it).
        self.default_fees = fees or FeeSchedule()
        self.fees = self.default_fees
        self.fees_updated_at_ms = 0
        # The humans' spending controls (the portal's store, filled in by the bootstrap).
        self.spending: SpendingControls = spending or NoSpendingControls()
        # Contract steps are applied in groups (exchange/use_cases/group_commit.py);
        # a group size of 1 applies each in a transaction of its own (for comparisons).
        assert 1 <= group_size_max <= GROUP_JOBS_MAX
        self.group_size_max = group_size_max
        self.contract_groups: GroupCommitter[Any, Any] | None = None
        # The delivery terms of the contracts this worker opened last.
        self.opened_contracts = OpenedContracts()
        # SQLite takes one writer at a time: this worker's transactions queue
        # for it in order, on one kept connection (wallet.database.HeldConnection).
        self.sqlite_writer = HeldConnection(engine) if engine.dialect.name == "sqlite" else None
        # A notice not acknowledged this long after it was sent is sent again.
        assert 0 < notice_ack_wait_s <= NOTICE_RESEND_MAX_S
        self.notice_ack_wait_ms = round(notice_ack_wait_s * 1000)
        # Notices whose send after commit failed: made due at once, in one
        # transaction, by flush_unsent (the relay calls it), so the relay's
        # next pass sends them instead of waiting for the ack wait.
        self._unsent_unflushed: list[str] = []
        # Background publishes (publish_soon) and how many notices they carry.
        self._publishing: set[asyncio.Task[None]] = set()
        self._notices_publishing = 0
        # Notices for the background batch that starts at the loop's next turn.
        self._notices_queued: list[OutboxNotice] = []
        # Whether the last publish failed: a change is logged once, not each notice.
        self._publishing_fails = False
        # The relay waits, ever longer, while its notices cannot be sent.
        self._relay_backoff = RelayBackoff(
            delay_min_ms=round(OUTBOX_RELAY_BACKOFF_MIN_S * 1000),
            delay_max_ms=round(OUTBOX_RELAY_BACKOFF_MAX_S * 1000),
        )
        # Deliveries of stored results being checked at once (each in memory).
        self.stored_result_deliveries = asyncio.Semaphore(STORED_RESULT_DELIVERIES_MAX)

    async def apply_due(
        self,
        due: Callable[[AsyncConnection], Awaitable[Sequence[_K]]],
        apply: Callable[[_K], Awaitable[int]],
        /,
    ) -> int:
        """One timer pass: read what is due (one bounded batch), then apply each in a
        transaction of its own (so one failing step holds up no other); how many did."""
        applied = 0
        for key in await self.run(due):
            applied += await apply(key)
        return applied

    async def run(self, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        try:
            if self.sqlite_writer is None:
                return await run_transaction(self.engine, work)
            return await self.sqlite_writer.run(work)
        except EscrowError as exc:
            raise escrow_refused_error(exc) from exc

    async def close(self) -> None:
        """Apply the contract steps still queued for a group, then publish their notices."""
        if self.contract_groups is not None:
            await self.contract_groups.close()
        while self._publishing:
            await asyncio.gather(*self._publishing)
        if self.sqlite_writer is not None:
            await self.sqlite_writer.close()

    def notice_header(self, agent_id: str) -> Header:
        return make_header(
            self.keys,
            audience=agent_id,
            subject=subjects.notifications(agent_id),
            lifetime_s=NOTICE_LIFETIME_S,
            clock=self.clock,
        )

    def notice(self, agent_id: str, build: Callable[[Header], Document], /) -> OutboxNotice:
        """Seal a notice for ``agent_id``; its nonce is its id in the outbox and in
        the recipient's acknowledgement."""
        header = self.notice_header(agent_id)
        payload = json_encoder.encode(seal(build(header), self.keys))
        return OutboxNotice(header.nonce, agent_id, header.subject, payload)

    async def stage(self, connection: AsyncConnection, notices: Sequence[OutboxNotice]) -> None:
        """Write notices to the outbox inside the caller's transaction: sent right
        after commit, and again after the ack wait unless acknowledged by then."""
        created_at_ms = self.clock.now_ms()
        due_at_ms = created_at_ms + self.notice_ack_wait_ms
        await contract_store.add_outbox_notices(
            connection,
            [
                {
                    "notice_id": notice.notice_id,
                    "subject": notice.subject,
                    "payload": notice.payload.decode(),
                    "created_at_ms": created_at_ms,
                    "recipient": notice.recipient,
                    "published_at_ms": created_at_ms,
                    "due_at_ms": due_at_ms,
                }
                for notice in notices
            ],
        )

    @property
    def notices_in_flight(self) -> int:
        """Notices committed whose send after commit has not finished yet."""
        return self._notices_publishing

    async def publish_soon(self, notices: Sequence[OutboxNotice]) -> None:
        """After commit: publish in the background, so the caller can reply at once.

        Notices queued in one turn of the event loop go out as one batch: a
        group's callers are all woken at once, so a group's notices share one
        publish call instead of one each. At most NOTICES_PUBLISHING_MAX
        notices are in flight this way; past that the caller publishes its
        own and waits (back-pressure, so a connection slow to take them cannot
        pile up tasks). ``close`` waits for them all.
        """
        if not notices:
            return
        if self._notices_publishing + len(notices) > NOTICES_PUBLISHING_MAX:
            await self.publish(notices)
            return
        self._notices_publishing += len(notices)
        if not self._notices_queued:
            task = asyncio.create_task(self._publish_queued())
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
        self._notices_queued.extend(notices)

    async def _publish_queued(self) -> None:
        notices, self._notices_queued = self._notices_queued, []
        try:
            await self.publish(notices)
        finally:
            self._notices_publishing -= len(notices)

    async def publish(self, notices: Sequence[OutboxNotice]) -> int:
        """Send notices now; how many failed (the relay sends those again soon)."""
        if not notices:
            return 0
        failures = await self._send(notices)
        unsent = [
            notice.notice_id
            for notice, failure in zip(notices, failures, strict=True)
            if failure is not None
        ]
        self._unsent_unflushed.extend(unsent)
        if len(self._unsent_unflushed) >= OUTBOX_BATCH_MAX:
            await self.flush_unsent()
        return len(unsent)

    async def _send(self, notices: Sequence[OutboxNotice]) -> Sequence[BaseException | None]:
        """Hand notices to the publisher; for each, None once sent, else why not. A
        change between failing and working is logged once."""
        try:
            failures = await self.publisher.publish_notices(notices)
        except Exception as exc:
            failures = [exc] * len(notices)
        self._note_publishing(next((f for f in failures if f is not None), None))
        return failures

    def _note_publishing(self, failure: BaseException | None) -> None:
        """One line when sending starts failing (NATS down), not one per notice:
        the outbox keeps them all for the relay; one when it works again."""
        if failure is not None and not self._publishing_fails:
            self._publishing_fails = True
            log.warning("notices are not being sent (%r); the relay retries them", failure)
        elif failure is None and self._publishing_fails:
            self._publishing_fails = False
            log.info("notices are being sent again")
            self._relay_backoff.retry_now()  # the relay need not sit out its delay

    async def relay_outbox(self) -> int:
        """Send again the outbox's notices that are due: not acknowledged within the
        wait since they were last sent, or whose send failed, or whose worker died
        before sending. Each is next due after a wait as long as its age (at least
        the ack wait, at most NOTICE_RESEND_MAX_S), so a notice for an agent that
        stays offline costs ever fewer sends; the agent's notices.subscribe has
        them all sent again when it comes back. While sending fails the relay
        backs off (``RelayBackoff``)."""
        await self.flush_unsent()
        now_ms = self.clock.now_ms()
        if not self._relay_backoff.ready(now_ms):
            return 0

        async def due(connection: AsyncConnection) -> list[contract_store.OutboxRow]:
            return await contract_store.due_notices(
                connection, now_ms=now_ms, limit=OUTBOX_BATCH_MAX
            )

        rows = await self.run(due)
        sent = await self.send_again(rows, lambda age_ms: self._resend_wait_ms(age_ms))
        failed = len(rows) - sent
        self._note_relay_outcome(failed, len(rows))
        return sent

    def _resend_wait_ms(self, age_ms: int) -> int:
        return min(max(age_ms, self.notice_ack_wait_ms), round(NOTICE_RESEND_MAX_S * 1000))

    async def send_again(
        self, rows: Sequence[contract_store.OutboxRow], wait_ms: Callable[[int], int], /
    ) -> int:
        """Send stored notices, and note when each was sent and is next due (after
        ``wait_ms(its age)`` unless acknowledged); how many were sent."""
        if not rows:
            return 0
        notices = [
            OutboxNotice(notice_id, recipient, subject, payload.encode())
            for notice_id, recipient, subject, payload, _ in rows
        ]
        failures = await self._send(notices)
        now_ms = self.clock.now_ms()
        sent = [
            (now_ms, now_ms + wait_ms(now_ms - created_at_ms), notice_id)
            for (notice_id, _, _, _, created_at_ms), failure in zip(rows, failures, strict=True)
            if failure is None
        ]

        async def note(connection: AsyncConnection) -> None:
            await contract_store.mark_notices_sent(connection, sent)

        if sent:
            await self.run(note)
        return len(sent)

    def _note_relay_outcome(self, failed: int, tried: int) -> None:
        """Back off after a pass that could not send everything; one log line per change."""
        backoff = self._relay_backoff
        if failed and backoff.failed(self.clock.now_ms()):
            log.warning(
                "outbox relay: %d of %d notices not sent; next try in %.0f s",
                failed,
                tried,
                backoff.delay_ms / 1000,
            )
        elif not failed and backoff.succeeded():
            log.info("outbox relay: notices are being sent again")

    async def flush_unsent(self) -> int:
        """Make the notices whose send failed since the last flush due now, in one
        transaction (the relay's next pass sends them)."""
        notice_ids, self._unsent_unflushed = self._unsent_unflushed, []
        if not notice_ids:
            return 0
        now_ms = self.clock.now_ms()

        async def work(connection: AsyncConnection) -> None:
            await contract_store.mark_notices_due(connection, notice_ids, due_at_ms=now_ms)

        await self.run(work)
        return len(notice_ids)
