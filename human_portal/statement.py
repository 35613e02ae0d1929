"""An agent's ledger transfers as a statement: one entry per purchase, sale, top-up (reads only).

The ledger records each step of a payment: a purchase is a hold, then a post
(or a void), and for the provider a net payment and the platform's fee. All
steps of one payment carry its reference in ``user_data`` (a contract id, a
metered session id, a subscription charge id ``sub_….pN``, a licence id
``lic_…``; ``topup:<id>``, ``reversal:<id>``, ``payout:<id>``; an agent
transfer's ``t_…``), so grouping an agent's lines by it gives one entry per
payment. Two references are shared by many payments and are grouped by
transfer id instead: ``own-transfer:<user>`` (its legs ``…:net``/``…:fee``
are one transfer) and ``operator:<id>`` (each grant is one transfer).

Grouping and the amounts are pure (``statement_entries``); the words "what
and from whom" come from the exchange in one batched read
(``describe_entries``). Amounts are integers (millicredits): an entry's
``amount_millicredits`` is what moved in (+) or out (−) of the agent,
``held_millicredits`` what is still held, ``refunded_millicredits`` what a
purchase returned to the buyer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.use_cases.purchase_labels import (
    PURCHASE_LABEL_REFERENCES_MAX,
    PurchaseKind,
    PurchaseLabel,
    purchase_labels,
)
from human_portal import limits
from human_portal.errors import InvalidInput
from human_portal.linking import LinkedAgent
from human_portal.money_rules import format_cents
from human_portal.portal_context import PortalContext
from human_portal.reports import TransactionFilter, TransactionLine, history
from wallet import MILLICREDITS_PER_USD_CENT

__all__ = [
    "Flow",
    "Party",
    "StatementEntry",
    "StatementPage",
    "StatementQuery",
    "Status",
    "What",
    "describe_entries",
    "export_lines",
    "statement_entries",
    "statement_page",
]

# A whole user's read history is labelled in one call.
assert limits.LINKED_AGENTS_PER_USER_MAX * limits.TRANSACTIONS_PAGE_SIZE_MAX <= (
    PURCHASE_LABEL_REFERENCES_MAX
)

_AGENT_ACCOUNT_PREFIX = "agent:"
_ESCROW_KINDS = frozenset({"escrow_lock", "escrow_release", "escrow_refund"})


class What(StrEnum):
    """The Transactions page's "What" filter, in the words it shows."""

    PURCHASES = "purchases"
    SALES = "sales"
    TOP_UPS = "top-ups"
    CASH_OUTS = "cash-outs"
    TRANSFERS = "transfers"
    REFUNDS = "refunds"


class Flow(StrEnum):
    PURCHASE = "purchase"
    SALE = "sale"
    TOP_UP = "top_up"
    REVERSAL = "reversal"
    CASH_OUT = "cash_out"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    GRANT = "grant"
    OTHER = "other"


class Status(StrEnum):
    HELD = "held"
    PAID = "paid"
    REFUNDED = "refunded"
    PARTLY_REFUNDED = "partly refunded"
    PENDING = "pending"
    FAILED = "failed"


_OUTGOING = frozenset({Flow.PURCHASE, Flow.CASH_OUT, Flow.TRANSFER_OUT, Flow.REVERSAL})
_WHAT_OF_FLOW = {
    Flow.PURCHASE: What.PURCHASES,
    Flow.SALE: What.SALES,
    Flow.TOP_UP: What.TOP_UPS,
    Flow.GRANT: What.TOP_UPS,
    Flow.CASH_OUT: What.CASH_OUTS,
    Flow.TRANSFER_OUT: What.TRANSFERS,
    Flow.TRANSFER_IN: What.TRANSFERS,
    Flow.REVERSAL: What.REFUNDS,
}
_PURCHASE_NOUNS = {
    PurchaseKind.CONTRACT: "a service",
    PurchaseKind.METERED: "a metered service",
    PurchaseKind.SUBSCRIPTION: "a plan",
    PurchaseKind.GOODS: "a digital good",
}


@dataclass(frozen=True, slots=True)
class Party:
    """The other side of an entry; ``label`` when it is one of the user's own agents."""

    agent_id: str
    label: str | None


@dataclass(frozen=True, slots=True)
class StatementEntry:
    key: str
    reference: str
    agent_id: str
    agent_label: str
    at_us: int
    flow: Flow
    status: Status
    amount_millicredits: int
    held_millicredits: int
    refunded_millicredits: int
    fee_millicredits: int | None
    lines: tuple[TransactionLine, ...]
    purchase_kind: PurchaseKind | None = None
    title: str = ""
    period: int | None = None
    party: Party | None = None

    def __post_init__(self) -> None:
        assert self.lines, "an entry is made of ledger lines"
        assert self.held_millicredits >= 0 and self.refunded_millicredits >= 0
        assert self.fee_millicredits is None or self.fee_millicredits >= 0

    @property
    def at_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.at_us // 1_000_000))

    @property
    def direction(self) -> str:
        return "out" if self.flow in _OUTGOING else "in"

    @property
    def status_class(self) -> str:
        return self.status.value.replace(" ", "-")

    @property
    def is_refund(self) -> bool:
        return self.flow is Flow.REVERSAL or self.status in (
            Status.REFUNDED,
            Status.PARTLY_REFUNDED,
        )

    @property
    def price_millicredits(self) -> int | None:
        """A sale's price: what the buyer paid, the fee and the net received."""
        if self.flow is not Flow.SALE or self.fee_millicredits is None:
            return None
        return self.amount_millicredits + self.fee_millicredits

    @property
    def dollars_text(self) -> str:
        """The amount in dollars, unsigned ("≈" when it is not a whole number of cents)."""
        cents, rest = divmod(abs(self.amount_millicredits), MILLICREDITS_PER_USD_CENT)
        return ("≈ " if rest else "") + format_cents(cents)

    @property
    def description_parts(self) -> tuple[str, Party | None, str]:
        """The words before the counterparty, the counterparty, the words after it."""
        noun = self.title or _PURCHASE_NOUNS.get(self.purchase_kind or PurchaseKind.CONTRACT, "")
        metered = " (metered)" if self.purchase_kind is PurchaseKind.METERED else ""
        period = f", period {self.period}" if self.period is not None else ""
        if self.flow is Flow.PURCHASE:
            if self.purchase_kind is PurchaseKind.SUBSCRIPTION:
                return _with_party(f"Subscription to {noun}", "from", self.party, period)
            return _with_party(f"Bought {noun}{metered}", "from", self.party, "")
        if self.flow is Flow.SALE:
            if self.purchase_kind is PurchaseKind.SUBSCRIPTION:
                return _with_party(f"Sold subscription {noun}", "to", self.party, period)
            return _with_party(f"Sold {noun}{metered}", "to", self.party, "")
        if self.flow is Flow.TRANSFER_OUT:
            return _with_party("Transfer", "to", self.party, "")
        if self.flow is Flow.TRANSFER_IN:
            return _with_party("Transfer", "from", self.party, "")
        fixed = {
            Flow.TOP_UP: "Top-up (card)",
            Flow.REVERSAL: "Card payment refunded: credits taken back",
            Flow.CASH_OUT: "Cash-out to bank",
            Flow.GRANT: "Credits granted by the operator",
        }
        return fixed.get(self.flow, self.lines[0].kind.replace("_", " ").capitalize()), None, ""

    @property
    def description(self) -> str:
        """The words in plain text (a counterparty by its label, else its full id)."""
        before, party, after = self.description_parts
        if party is None:
            return before + after
        return f"{before} {party.label or party.agent_id}{after}"


@dataclass(frozen=True, slots=True)
class StatementQuery:
    """Which entries, and which page of them (numbered from 1)."""

    lines: TransactionFilter = field(default_factory=TransactionFilter)
    what: What | None = None
    page: int = 1
    page_size: int = limits.STATEMENT_PAGE_SIZE

    def __post_init__(self) -> None:
        if not 1 <= self.page <= limits.STATEMENT_PAGE_MAX:
            raise InvalidInput("page", f"is a page number from 1 to {limits.STATEMENT_PAGE_MAX}")
        if not 1 <= self.page_size <= limits.STATEMENT_PAGE_SIZE:
            raise InvalidInput("page_size", f"must be 1 to {limits.STATEMENT_PAGE_SIZE}")

    def admits(self, entry: StatementEntry, /) -> bool:
        selection = self.lines
        if self.what is What.REFUNDS:
            if not entry.is_refund:
                return False
        elif self.what is not None and _WHAT_OF_FLOW.get(entry.flow) is not self.what:
            return False
        if selection.direction is not None and entry.direction != selection.direction:
            return False
        if selection.kind is not None and all(line.kind != selection.kind for line in entry.lines):
            return False
        return selection.since_ms is None or entry.at_us >= selection.since_ms * 1000


@dataclass(frozen=True, slots=True)
class StatementPage:
    """One page of entries; ``cut`` when some agent's older history was not read."""

    entries: list[StatementEntry]
    page: int
    has_next: bool
    cut: bool


async def statement_page(
    context: PortalContext,
    connection: AsyncConnection,
    links: Sequence[LinkedAgent],
    query: StatementQuery,
    /,
) -> StatementPage:
    """The page of entries ``query`` asks for, newest first, described in words."""
    read = await history(context, connection, links, agent_id=query.lines.agent_id)
    kept = [entry for entry in statement_entries(read.lines, links) if query.admits(entry)]
    start = (query.page - 1) * query.page_size
    shown = kept[start : start + query.page_size]
    return StatementPage(
        await describe_entries(connection, shown, links),
        query.page,
        has_next=len(kept) > start + query.page_size,
        cut=read.cut,
    )


async def export_lines(
    context: PortalContext,
    connection: AsyncConnection,
    links: Sequence[LinkedAgent],
    query: StatementQuery,
    /,
) -> tuple[list[TransactionLine], dict[str, tuple[str, int | None]]]:
    """The raw ledger lines for the CSV (the line filter applies to each line, "what"
    to its entry), and by transfer id the entry's words and fee (on its latest line)."""
    read = await history(context, connection, links, agent_id=query.lines.agent_id)
    whole = replace(query, lines=TransactionFilter())
    chosen: list[tuple[StatementEntry, list[TransactionLine]]] = []
    for entry in statement_entries(read.lines, links):
        lines = [line for line in entry.lines if query.lines.admits(line)]
        if lines and whole.admits(entry):
            chosen.append((entry, lines))
    described = await describe_entries(connection, [entry for entry, _ in chosen], links)
    exported: list[TransactionLine] = []
    details: dict[str, tuple[str, int | None]] = {}
    for entry, (_, lines) in zip(described, chosen, strict=True):
        exported.extend(lines)
        for line in lines:
            fee = entry.fee_millicredits if line is entry.lines[0] else None
            details[line.transfer_id] = (entry.description, fee)
    exported.sort(key=lambda line: (line.timestamp_us, line.transfer_id), reverse=True)
    return exported[: query.lines.limit], details


def statement_entries(
    lines: Iterable[TransactionLine], links: Sequence[LinkedAgent], /
) -> list[StatementEntry]:
    """The lines grouped into entries, the latest first (pure; no words from the exchange yet)."""
    own = {link.agent_id: link.label for link in links}
    groups: dict[tuple[str, str], list[TransactionLine]] = {}
    for line in lines:
        groups.setdefault((line.agent_id, _group_key(line)), []).append(line)
    entries = []
    for (_, key), group in groups.items():
        group.sort(key=lambda line: (line.timestamp_us, line.transfer_id), reverse=True)
        entries.append(_entry(key, group, own))
    entries.sort(key=lambda entry: (entry.at_us, entry.key), reverse=True)
    return entries


async def describe_entries(
    connection: AsyncConnection, entries: Sequence[StatementEntry], links: Sequence[LinkedAgent], /
) -> list[StatementEntry]:
    """The entries with what was bought and from whom (one batched read of the exchange)."""
    references = sorted({e.reference for e in entries if e.flow in (Flow.PURCHASE, Flow.SALE)})
    labels: dict[str, PurchaseLabel] = {}
    for start in range(0, len(references), PURCHASE_LABEL_REFERENCES_MAX):
        chunk = references[start : start + PURCHASE_LABEL_REFERENCES_MAX]
        labels.update(await purchase_labels(connection, chunk))
    own = {link.agent_id: link.label for link in links}
    return [_labelled(entry, labels.get(entry.reference), own) for entry in entries]


def _labelled(
    entry: StatementEntry, label: PurchaseLabel | None, own: Mapping[str, str]
) -> StatementEntry:
    if label is None or entry.flow not in (Flow.PURCHASE, Flow.SALE):
        return entry
    buying = entry.flow is Flow.PURCHASE
    party_id = label.provider_id if buying else label.buyer_id
    return replace(
        entry,
        purchase_kind=label.kind,
        title=label.title,
        period=label.period,
        party=Party(party_id, own.get(party_id)),
        fee_millicredits=entry.fee_millicredits if buying else label.fee_millicredits,
    )


def _with_party(
    text: str, joiner: str, party: Party | None, after: str
) -> tuple[str, Party | None, str]:
    return (f"{text} {joiner}", party, after) if party is not None else (text, None, after)


def _group_key(line: TransactionLine) -> str:
    reference = line.reference
    if reference.startswith("own-transfer:"):
        stem, _, leg = line.transfer_id.rpartition(":")
        return "id:" + (stem if leg in ("net", "fee") else line.transfer_id)
    if not reference or reference.startswith("operator:"):
        return "id:" + line.transfer_id
    return "ref:" + reference


def _flow(group: Sequence[TransactionLine]) -> Flow:
    reference = group[0].reference
    for prefix, flow in (
        ("topup:", Flow.TOP_UP),
        ("reversal:", Flow.REVERSAL),
        ("payout:", Flow.CASH_OUT),
        ("operator:", Flow.GRANT),
    ):
        if reference.startswith(prefix):
            return flow
    outgoing = any(line.direction == "out" for line in group)
    if reference.startswith("own-transfer:") or any(
        line.transfer_id.startswith("transfer:") for line in group
    ):
        return Flow.TRANSFER_OUT if outgoing else Flow.TRANSFER_IN
    if any(
        line.kind in _ESCROW_KINDS or line.transfer_id.startswith(("escrow:", "metered:"))
        for line in group
    ):
        return Flow.PURCHASE if outgoing else Flow.SALE
    return Flow.OTHER


def _purchase_kind(group: Sequence[TransactionLine]) -> PurchaseKind:
    reference = group[0].reference
    if any(line.transfer_id.startswith("metered:") for line in group):
        return PurchaseKind.METERED
    if reference.startswith("sub_"):
        return PurchaseKind.SUBSCRIPTION
    if reference.startswith("lic_"):
        return PurchaseKind.GOODS
    return PurchaseKind.CONTRACT


def _entry(key: str, group: list[TransactionLine], own: Mapping[str, str]) -> StatementEntry:
    latest = group[0]
    flow = _flow(group)
    holds = {line.transfer_id: line.amount_millicredits for line in group if line.is_hold}
    ended = {line.pending_id for line in group if line.pending_id is not None}
    posts = {
        line.pending_id: line.amount_millicredits
        for line in group
        if line.pending_id is not None and not line.is_void
    }
    voided = [line.pending_id for line in group if line.is_void]
    moved = sum(
        line.amount_millicredits if line.direction == "in" else -line.amount_millicredits
        for line in group
        if not line.is_hold and line.pending_id is None
    )
    held = sum(amount for hold_id, amount in holds.items() if hold_id not in ended)
    posted = sum(posts.values())
    kind = _purchase_kind(group) if flow in (Flow.PURCHASE, Flow.SALE) else None
    if kind is PurchaseKind.METERED:
        # A capture posts part of the hold and holds the rest again: only a
        # session that captured nothing returns anything to the buyer.
        refunded = sum(holds.get(hold_id or "", 0) for hold_id in voided) if not posted else 0
    else:
        refunded = sum(
            amount - posts.get(hold_id, 0) for hold_id, amount in holds.items() if hold_id in ended
        )
    fees = sum(
        line.amount_millicredits for line in group if line.kind == "fee" and line.direction == "out"
    )
    return StatementEntry(
        key=key,
        reference=latest.reference,
        agent_id=latest.agent_id,
        agent_label=latest.agent_label,
        at_us=latest.timestamp_us,
        flow=flow,
        status=_status(flow, held=held, posted=posted, voided=bool(voided), refunded=refunded),
        amount_millicredits=moved - posted,
        held_millicredits=held,
        refunded_millicredits=refunded if flow is Flow.PURCHASE else 0,
        fee_millicredits=fees if flow is Flow.TRANSFER_OUT and fees else None,
        lines=tuple(group),
        purchase_kind=kind,
        party=_transfer_party(flow, group, own),
    )


def _status(flow: Flow, *, held: int, posted: int, voided: bool, refunded: int) -> Status:
    if flow is Flow.CASH_OUT:
        if held:
            return Status.PENDING
        return Status.FAILED if voided and not posted else Status.PAID
    if flow is Flow.REVERSAL:
        return Status.REFUNDED
    if flow is not Flow.PURCHASE:
        return Status.PAID
    if held:
        return Status.HELD
    if not posted and voided:
        return Status.REFUNDED
    return Status.PARTLY_REFUNDED if refunded else Status.PAID


def _transfer_party(
    flow: Flow, group: Sequence[TransactionLine], own: Mapping[str, str]
) -> Party | None:
    """A transfer's other agent, read from the ledger: the account of its net leg."""
    if flow not in (Flow.TRANSFER_OUT, Flow.TRANSFER_IN):
        return None
    for line in group:
        account_id = line.counterparty_account_id
        if line.kind == "transfer" and account_id.startswith(_AGENT_ACCOUNT_PREFIX):
            agent_id = account_id.removeprefix(_AGENT_ACCOUNT_PREFIX)
            return Party(agent_id, own.get(agent_id))
    return None
