"""What humans and operators see: balances, history, charts, contracts, revenue (reads only).

Balances and history come from the ledger through the wallet's API;
contracts and disputes are read from the exchange's tables (the exchange
writes them, the portal only looks).
"""

from __future__ import annotations

import csv
import html
import io
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.protocol import ContractState
from exchange.domain.spending_rules import Controls
from exchange.use_cases.contract_reports import DisputeFile, contracts_of_agents, open_disputes
from human_portal import limits
from human_portal.budgets import controls_by_agent
from human_portal.errors import InvalidInput
from human_portal.ledger_accounts import (
    ISSUANCE_ACCOUNT_ID,
    REVENUE_ACCOUNT_ID,
    USD_CASH_OUT_FEES_ACCOUNT_ID,
    USD_CUSTOMER_FUNDS_ACCOUNT_ID,
    USD_PURCHASE_FEES_ACCOUNT_ID,
    agent_account_id,
)
from human_portal.linking import LinkedAgent, linked_agents
from human_portal.money_rules import format_millicredits
from human_portal.payouts import cash_out_room
from human_portal.portal_context import PortalContext
from wallet import TransferCode, TransferFlags, TransferRecord

__all__ = [
    "AgentSummary",
    "ChartDay",
    "ContractLine",
    "DisputeCase",
    "History",
    "Revenue",
    "TransactionFilter",
    "TransactionLine",
    "agent_summaries",
    "chart_days",
    "csv_safe",
    "disputes_to_resolve",
    "history",
    "recent_contracts",
    "revenue",
    "spending_chart_svg",
    "transactions",
    "transactions_csv",
]

_MILLISECONDS_PER_DAY = 24 * 3600 * 1000
_KINDS = frozenset(code.name.lower() for code in TransferCode) | {"expiry"}


@dataclass(frozen=True, slots=True)
class AgentSummary:
    link: LinkedAgent
    available_millicredits: int
    held_millicredits: int
    controls: Controls | None
    cash_out_room_credits: int


@dataclass(frozen=True, slots=True)
class TransactionLine:
    agent_id: str
    agent_label: str
    transfer_id: str
    timestamp_us: int
    kind: str
    direction: str
    amount_millicredits: int
    counterparty_account_id: str
    is_hold: bool
    reference: str
    # The hold a post or a void ends, and whether it ends it without paying.
    pending_id: str | None = None
    is_void: bool = False

    @property
    def at_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.timestamp_us // 1_000_000))


@dataclass(frozen=True, slots=True)
class TransactionFilter:
    agent_id: str | None = None
    kind: str | None = None
    direction: str | None = None
    since_ms: int | None = None
    limit: int = 200

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in _KINDS:
            raise InvalidInput("kind", "no such kind of transaction")
        if self.direction not in (None, "in", "out"):
            raise InvalidInput("direction", "is 'in' or 'out'")
        if not 1 <= self.limit <= limits.TRANSACTIONS_PAGE_SIZE_MAX:
            raise InvalidInput("limit", f"must be 1 to {limits.TRANSACTIONS_PAGE_SIZE_MAX}")

    def admits(self, line: TransactionLine, /) -> bool:
        """Whether ``line`` passes the kind, direction and time filters (not the agent's)."""
        if self.kind is not None and line.kind != self.kind:
            return False
        if self.direction is not None and line.direction != self.direction:
            return False
        return self.since_ms is None or line.timestamp_us >= self.since_ms * 1000


@dataclass(frozen=True, slots=True)
class History:
    """The agents' ledger lines, newest first; ``cut`` when older ones were not read."""

    lines: list[TransactionLine]
    cut: bool


@dataclass(frozen=True, slots=True)
class ChartDay:
    label: str
    spent_millicredits: int
    earned_millicredits: int


@dataclass(frozen=True, slots=True)
class ContractLine:
    contract_id: str
    capability: str
    state: ContractState
    role: str
    agent_id: str
    counterparty_id: str
    price_millicredits: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class DisputeCase:
    contract_id: str
    buyer_id: str
    provider_id: str
    capability: str
    price_millicredits: int
    dispute_reason: str
    task: str
    result: str
    events: list[tuple[str, str, str, int]]


@dataclass(frozen=True, slots=True)
class Revenue:
    escrow_fees_millicredits: int
    purchase_fees_cents: int
    cash_out_fees_cents: int
    credits_issued_millicredits: int
    customer_funds_cents: int


async def agent_summaries(
    context: PortalContext, connection: AsyncConnection, user_id: str, /
) -> list[AgentSummary]:
    links = await linked_agents(connection, user_id)
    account_ids = [agent_account_id(link.agent_id) for link in links]
    balances = await context.ledger.lookup_accounts(account_ids, connection=connection)
    controls = await controls_by_agent(connection, [link.agent_id for link in links])
    now_ms = context.now_ms()
    summaries = []
    for link in links:
        wallet = balances.get(agent_account_id(link.agent_id))
        summaries.append(
            AgentSummary(
                link=link,
                available_millicredits=wallet.available if wallet is not None else 0,
                held_millicredits=wallet.held if wallet is not None else 0,
                controls=controls.get(link.agent_id),
                cash_out_room_credits=await cash_out_room(connection, link.agent_id, now_ms),
            )
        )
    return summaries


async def transactions(
    context: PortalContext,
    connection: AsyncConnection,
    links: Sequence[LinkedAgent],
    selection: TransactionFilter,
    /,
) -> list[TransactionLine]:
    """The agents' ledger history, newest first, filtered."""
    read = await history(context, connection, links, agent_id=selection.agent_id)
    return [line for line in read.lines if selection.admits(line)][: selection.limit]


async def history(
    context: PortalContext,
    connection: AsyncConnection,
    links: Sequence[LinkedAgent],
    /,
    *,
    agent_id: str | None = None,
) -> History:
    """The latest ``TRANSACTIONS_PAGE_SIZE_MAX`` ledger transfers of each agent (or of one)."""
    lines: list[TransactionLine] = []
    cut = False
    for link in links:
        if agent_id is not None and link.agent_id != agent_id:
            continue
        account_id = agent_account_id(link.agent_id)
        records = await context.ledger.account_transfers(
            account_id, limit=limits.TRANSACTIONS_PAGE_SIZE_MAX, connection=connection
        )
        cut |= len(records) == limits.TRANSACTIONS_PAGE_SIZE_MAX
        lines.extend(_line(link, account_id, record) for record in records)
    lines.sort(key=lambda line: (line.timestamp_us, line.transfer_id), reverse=True)
    return History(lines, cut)


def _line(link: LinkedAgent, account_id: str, record: TransferRecord) -> TransactionLine:
    outgoing = record.debit_account_id == account_id
    kind = TransferCode(record.code).name.lower()
    return TransactionLine(
        agent_id=link.agent_id,
        agent_label=link.label,
        transfer_id=record.id,
        timestamp_us=record.timestamp_us,
        kind=kind,
        direction="out" if outgoing else "in",
        amount_millicredits=record.amount,
        counterparty_account_id=record.credit_account_id if outgoing else record.debit_account_id,
        is_hold=bool(record.flags & TransferFlags.PENDING),
        reference=record.user_data,
        pending_id=record.pending_id,
        is_void=bool(record.flags & TransferFlags.VOID_PENDING),
    )


def transactions_csv(
    lines: Iterable[TransactionLine],
    /,
    *,
    details: Mapping[str, tuple[str, int | None]] | None = None,
) -> str:
    """RFC 4180 CSV; amounts both exact (millicredits) and in credits.

    ``details`` gives, by transfer id, the statement's words for the line's
    purchase or payment and the platform fee to show on it (a purchase's fee
    on one of its lines only, so that the column adds up).
    """
    details = details or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(
        [
            "time_utc",
            "agent_id",
            "agent_label",
            "kind",
            "direction",
            "amount_millicredits",
            "amount_credits",
            "is_hold",
            "counterparty_account_id",
            "reference",
            "transfer_id",
            "description",
            "fee_millicredits",
        ]
    )
    for line in lines:
        description, fee_millicredits = details.get(line.transfer_id, ("", None))
        writer.writerow(
            [
                line.at_text,
                line.agent_id,
                csv_safe(line.agent_label),
                line.kind,
                line.direction,
                line.amount_millicredits,
                format_millicredits(line.amount_millicredits).replace(",", ""),
                "yes" if line.is_hold else "no",
                line.counterparty_account_id,
                csv_safe(line.reference),
                line.transfer_id,
                csv_safe(description),
                "" if fee_millicredits is None else fee_millicredits,
            ]
        )
    return buffer.getvalue()


def csv_safe(text: str, /) -> str:
    # A spreadsheet runs a cell that starts like a formula; quote it as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def chart_days(lines: Sequence[TransactionLine], now_ms: int, /) -> list[ChartDay]:
    """Spending (escrow paid out of the agents) and earning (escrow paid to them) per day."""
    today_ms = now_ms - now_ms % _MILLISECONDS_PER_DAY
    first_ms = today_ms - (limits.CHART_DAYS - 1) * _MILLISECONDS_PER_DAY
    spent = [0] * limits.CHART_DAYS
    earned = [0] * limits.CHART_DAYS
    for line in lines:
        index = (line.timestamp_us // 1000 - first_ms) // _MILLISECONDS_PER_DAY
        if not 0 <= index < limits.CHART_DAYS or line.kind != "escrow_release" or line.is_hold:
            continue
        if line.direction == "out":
            spent[index] += line.amount_millicredits
        else:
            earned[index] += line.amount_millicredits
    return [
        ChartDay(
            time.strftime("%m-%d", time.gmtime((first_ms + i * _MILLISECONDS_PER_DAY) // 1000)),
            spent[i],
            earned[i],
        )
        for i in range(limits.CHART_DAYS)
    ]


def spending_chart_svg(days: Sequence[ChartDay], /, *, empty_text: str | None = None) -> str:
    """A small bar chart as inline SVG (server-side: no script, no CDN).

    The y axis has three labelled gridlines (0, a round step, twice the step)
    in credits; with nothing to draw it says so in words instead.
    """
    peak = max(
        [0, *(day.spent_millicredits for day in days), *(d.earned_millicredits for d in days)]
    )
    if peak == 0:
        text = empty_text or f"No spending or earning in the last {len(days)} days"
        return f'<p class="chart-empty muted">{html.escape(text)}</p>'
    width, height, top, bottom, left, right = 700, 250, 18, 40, 116, 6
    step = _grid_step(peak)
    plot, slot = height - top - bottom, (width - left - right) / max(1, len(days))
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Credits spent and earned per day" xmlns="http://www.w3.org/2000/svg">',
        '<g class="axis">',
    ]
    for index in range(3):
        y = height - bottom - plot * index / 2
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            f'stroke="{"#c8ccd4" if index == 0 else "#dde1e8"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#5b6270">{format_millicredits(index * step)}{" cr" if index else ""}</text>'
        )
    parts.append('</g><g class="days">')
    for index, day in enumerate(days):
        x = left + index * slot
        for offset, amount, color, name in (
            (0.18, day.spent_millicredits, "#d9534f", "spent"),
            (0.52, day.earned_millicredits, "#2e8b57", "earned"),
        ):
            bar = plot * amount / (2 * step)
            parts.append(
                f'<rect x="{x + slot * offset:.1f}" y="{height - bottom - bar:.1f}" '
                f'width="{slot * 0.3:.1f}" height="{bar:.1f}" fill="{color}">'
                f"<title>{html.escape(day.label)}: {format_millicredits(amount)} credits "
                f"{name}</title></rect>"
            )
        parts.append(
            f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 30}" text-anchor="middle" '
            f'font-size="11" fill="#5b6270">{html.escape(day.label)}</text>'
        )
    parts.append("</g></svg>")
    return "".join(parts)


def _grid_step(peak_millicredits: int, /) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least half the peak."""
    assert peak_millicredits > 0
    half = -(-peak_millicredits // 2)
    power = 1
    for _ in range(20):
        for factor in (1, 2, 5):
            if factor * power >= half:
                return factor * power
        power *= 10
    raise AssertionError(f"a peak of {peak_millicredits} is beyond any ledger amount")


async def recent_contracts(
    connection: AsyncConnection, agent_ids: Sequence[str], /
) -> list[ContractLine]:
    rows = await contracts_of_agents(connection, agent_ids, limit=limits.RECENT_CONTRACTS_MAX)
    lines = []
    for row in rows:
        buying = row.buyer_id in agent_ids
        lines.append(
            ContractLine(
                contract_id=row.contract_id,
                capability=row.capability,
                state=row.state,
                role="buyer" if buying else "provider",
                agent_id=row.buyer_id if buying else row.provider_id,
                counterparty_id=row.provider_id if buying else row.buyer_id,
                price_millicredits=row.price_millicredits,
                updated_at_ms=row.updated_at_ms,
            )
        )
    return lines


async def disputes_to_resolve(connection: AsyncConnection, /, *, limit: int) -> list[DisputeCase]:
    """Contracts in dispute, with what each side said and did (for operators)."""
    return [_dispute_case(dispute) for dispute in await open_disputes(connection, limit=limit)]


def _dispute_case(dispute: DisputeFile) -> DisputeCase:
    contract = dispute.contract
    return DisputeCase(
        contract_id=contract.contract_id,
        buyer_id=contract.buyer_id,
        provider_id=contract.provider_id,
        capability=contract.capability,
        price_millicredits=contract.price_millicredits,
        dispute_reason=contract.dispute_reason or "",
        task=contract.task[:2000],
        result=(contract.result or "")[:2000],
        events=[(e.event, e.actor_id, e.detail, e.at_ms) for e in dispute.events],
    )


async def revenue(context: PortalContext, connection: AsyncConnection, /) -> Revenue:
    ids = [
        REVENUE_ACCOUNT_ID,
        ISSUANCE_ACCOUNT_ID,
        USD_PURCHASE_FEES_ACCOUNT_ID,
        USD_CASH_OUT_FEES_ACCOUNT_ID,
        USD_CUSTOMER_FUNDS_ACCOUNT_ID,
    ]
    balances = await context.ledger.lookup_accounts(ids, connection=connection)

    def net_credit(account_id: str) -> int:
        account = balances.get(account_id)
        return account.credits_posted - account.debits_posted if account is not None else 0

    return Revenue(
        escrow_fees_millicredits=net_credit(REVENUE_ACCOUNT_ID),
        purchase_fees_cents=net_credit(USD_PURCHASE_FEES_ACCOUNT_ID),
        cash_out_fees_cents=net_credit(USD_CASH_OUT_FEES_ACCOUNT_ID),
        credits_issued_millicredits=-net_credit(ISSUANCE_ACCOUNT_ID),
        customer_funds_cents=net_credit(USD_CUSTOMER_FUNDS_ACCOUNT_ID),
    )
