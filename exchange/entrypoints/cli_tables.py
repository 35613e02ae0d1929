"""How ``agentx`` draws its answers: tables and progress for people, plain text for scripts.

On a terminal the tables have a header rule and bold headers, and long work
shows a live progress line; they fit the terminal's width (80 columns
included: long ids fold onto a second line rather than widen the table).
When standard output is not a terminal (a pipe, a file, a test) nothing
but plain text comes out: no colour, no escape codes, no box drawing, the
columns aligned with spaces and each row on one line of at most
``PLAIN_WIDTH`` characters, so ``grep`` and ``split()`` read it; ``--json``
prints the exchange's reply itself, every amount exact in millicredits.

Amounts are shown in credits the way the portal shows them
(``agent_client.credit_text``): 1,500 millicredits are "1.5".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Final

import msgspec
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from agent_client.credit_text import format_millicredits
from agent_client.protocol import (
    AnalyticsReply,
    EvidenceReply,
    FeesReply,
    SubscriptionsReply,
    SubscriptionView,
)
from exchange.entrypoints.demo import DemoSummary

__all__ = [
    "PLAIN_WIDTH",
    "DemoProgress",
    "analytics_tables",
    "demo_summary_tables",
    "evidence_tables",
    "fees_table",
    "new_table",
    "output_console",
    "print_json",
    "starting",
    "subscriptions_tables",
    "utc_iso",
]

# Wide enough that no table of these commands wraps a row when piped.
PLAIN_WIDTH: Final = 160
# A shortened agent id: enough characters to tell agents apart at a glance.
AGENT_ID_SHOWN_CHARS: Final = 12
SECONDS_PER_DAY: Final = 86_400
# A bound for measuring a table's unwrapped width.
NATURAL_WIDTH_MAX: Final = 10_000


def output_console(file: IO[str] | None = None, /) -> Console:
    """A console on ``file`` (standard output): styled on a terminal, plain text otherwise."""
    stream = file if file is not None else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False, emoji=False)
    return Console(
        file=stream,
        width=PLAIN_WIDTH,
        color_system=None,
        force_terminal=False,
        force_interactive=False,
        no_color=True,
        highlight=False,
        emoji=False,
    )


def new_table(console: Console, /, *columns: str | Column, title: str | None = None) -> Table:
    """A table that reads well on a terminal and parses as aligned columns when plain."""
    styled = console.is_terminal
    return Table(
        *columns,
        title=title,
        title_justify="left",
        title_style="bold" if styled else "",
        header_style="bold" if styled else "",
        box=box.SIMPLE_HEAD if styled else None,
        show_edge=False,
        pad_edge=False,
    )


def amount_column(header: str, /) -> Column:
    return Column(header, justify="right", no_wrap=True)


def count_column(header: str, /) -> Column:
    return Column(header, justify="right", no_wrap=True)


def id_column(header: str, /) -> Column:
    # On a narrow terminal a long id folds onto the next line whole, never cut.
    return Column(header, overflow="fold")


def print_json(reply: Any, /, *, file: IO[str] | None = None) -> None:
    """The reply as one JSON document (amounts in millicredits, exact)."""
    stream = file if file is not None else sys.stdout
    stream.write(msgspec.json.encode(reply).decode() + "\n")


def utc_iso(at_ms: int, /) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds: 2026-12-05T23:33:51.274Z."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms // 1000))
    return f"{whole}.{at_ms % 1000:03d}Z"


def short_agent_id(agent_id: str, /) -> str:
    return agent_id[:AGENT_ID_SHOWN_CHARS] + "…"


def duration_text(seconds: int, /) -> str:
    """A period in the largest whole unit: 2592000 → '30 d', 3600 → '1 h', 90 → '90 s'."""
    for unit_s, unit in ((SECONDS_PER_DAY, "d"), (3_600, "h"), (60, "min")):
        if seconds >= unit_s and seconds % unit_s == 0:
            return f"{seconds // unit_s} {unit}"
    return f"{seconds} s"


def fees_table(console: Console, reply: FeesReply, /) -> Table:
    table = new_table(console, "FEE", amount_column("RATE"), count_column("BPS"))
    rows = [*reply.rates.items(), *(("category " + p, b) for p, b in reply.categories.items())]
    for name, bps in rows:
        table.add_row(name, f"{bps / 100:.2f} %", str(bps))
    return table


def analytics_tables(console: Console, reply: AnalyticsReply, /, *, days: int) -> list[Table]:
    """Sales per listing; service (refunds, disputes, rating, speed) per listing; sales per day.

    Two tables per listing rather than one wide one, so that each fits 80 columns.
    """
    sales = new_table(
        console,
        id_column("LISTING"),
        count_column("CONTRACTS"),
        count_column("UNITS"),
        count_column("PERIODS"),
        count_column("GOODS"),
        amount_column("NET (cr)"),
        amount_column("FEES (cr)"),
        title=f"{len(reply.listings)} listings, last {days} days",
    )
    service = new_table(
        console,
        id_column("LISTING"),
        count_column("REFUNDS"),
        count_column("DISPUTES"),
        Column("RATING", no_wrap=True),
        count_column("P50 (ms)"),
        count_column("P90 (ms)"),
        title="service",
    )
    by_day = new_table(
        console,
        "DAY",
        id_column("LISTING"),
        count_column("CONTRACTS"),
        amount_column("NET (cr)"),
        title="per day",
    )
    for listing in reply.listings:
        sales.add_row(
            listing.capability,
            _count(listing.contracts),
            _count(listing.metered_units),
            _count(listing.subscription_periods),
            _count(listing.goods_sold),
            format_millicredits(listing.revenue_net_millicredits),
            format_millicredits(listing.fees_millicredits),
        )
        rating = (
            f"{listing.rating_sum / listing.rating_count:.2f} ({listing.rating_count})"
            if listing.rating_count
            else "-"
        )
        service.add_row(
            listing.capability,
            _count(listing.refunds),
            _count(listing.disputes),
            rating,
            _optional(listing.delivery_p50_ms),
            _optional(listing.delivery_p90_ms),
        )
        for day in listing.days:
            date = time.strftime("%Y-%m-%d", time.gmtime(day.day_start_ms // 1000))
            net = format_millicredits(day.revenue_net_millicredits)
            by_day.add_row(date, listing.capability, _count(day.contracts), net)
    return [table for table in (sales, service, by_day) if table.row_count]


def _optional(value: int | None, /) -> str:
    return "-" if value is None else _count(value)


def _count(value: int, /) -> str:
    """A whole number with thousands separators: 987654 → '987,654'."""
    return f"{value:,}"


def subscriptions_tables(
    console: Console, page: SubscriptionsReply, /, *, role: str
) -> list[Table]:
    """One row per subscription; on a terminal too narrow for that, one card per subscription."""
    table = new_table(
        console,
        Column("SUBSCRIPTION", no_wrap=True),
        "PLAN",
        "CAPABILITY",
        Column("PROVIDER" if role == "buyer" else "BUYER", no_wrap=True),
        "STATE",
        amount_column("PRICE (cr)"),
        Column("EVERY", no_wrap=True),
        count_column("PAID"),
        Column("UNTIL (UTC)", no_wrap=True),
        title=f"{len(page.subscriptions)} subscriptions as {role}",
    )
    for view in page.subscriptions:
        other = view.provider_id if role == "buyer" else view.buyer_id
        table.add_row(
            view.subscription_id,
            view.plan,
            view.capability,
            short_agent_id(other),
            _subscription_state(view),
            format_millicredits(view.price_millicredits),
            duration_text(view.period_s),
            _count(view.periods_charged),
            _minute(view.period_ends_at_ms),
        )
    if _natural_width(console, table) <= console.width:
        return [table]
    return [_subscription_card(console, view, role=role) for view in page.subscriptions]


def _natural_width(console: Console, table: Table, /) -> int:
    """How wide ``table`` is with no cell wrapped (``console.measure`` caps it at the width)."""
    unbounded = console.options.update_width(NATURAL_WIDTH_MAX)
    return Measurement.get(console, unbounded, table).maximum


def _subscription_card(console: Console, view: SubscriptionView, /, *, role: str) -> Table:
    card = new_table(console, "FIELD", id_column("VALUE"), title=view.subscription_id)
    other = view.provider_id if role == "buyer" else view.buyer_id
    rows = [
        ("plan", f"{view.plan} ({view.capability})"),
        ("provider" if role == "buyer" else "buyer", other),
        ("state", _subscription_state(view)),
        ("price", f"{format_millicredits(view.price_millicredits)} cr"),
        ("every", duration_text(view.period_s)),
        ("paid", f"{_count(view.periods_charged)} periods"),
        ("until", f"{_minute(view.period_ends_at_ms)} UTC"),
    ]
    for name, value in rows:
        card.add_row(name, value)
    return card


def _subscription_state(view: SubscriptionView, /) -> str:
    return f"{view.state.value} ({view.failure})" if view.failure else view.state.value


def _minute(at_ms: int, /) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(at_ms // 1000))


def evidence_tables(console: Console, reply: EvidenceReply, /) -> list[Table]:
    """The contract's header (one field a row), then its events in order."""
    contract = reply.contract
    header = new_table(
        console, "FIELD", id_column("VALUE"), title=f"contract {contract.contract_id}"
    )
    price = contract.price_millicredits
    fields = [
        ("state", contract.state.value),
        ("buyer", contract.buyer_id),
        ("provider", contract.provider_id),
        ("capability", contract.capability),
        ("price", f"{format_millicredits(price)} cr ({price} millicredits)"),
        ("fee", f"{format_millicredits(contract.fee_millicredits)} cr"),
    ]
    if contract.dispute_reason:
        fields.append(("dispute", contract.dispute_reason))
    fields.append(("task", bytes(contract.task).decode()))
    fields.append(("result sha256", contract.result_sha256 or "-"))
    fields.append(("result", bytes(contract.result).decode()[:2000]))
    for name, value in fields:
        header.add_row(name, value)
    events = new_table(
        console,
        Column("AT (UTC)", no_wrap=True),
        "EVENT",
        "TO STATE",
        Column("BY", no_wrap=True),
        "DETAIL",
        title="events",
    )
    for event in reply.events:
        at = utc_iso(event.at_ms)
        by = short_agent_id(event.actor_id)
        events.add_row(at, event.event, event.to_state.value, by, event.detail or "-")
    return [header, events]


def demo_summary_tables(console: Console, summary: DemoSummary, /) -> list[Table]:
    """The balances after trading, then each check of the verdict."""
    balances = new_table(
        console,
        "ACCOUNT",
        Column("AGENT ID", no_wrap=True),
        amount_column("AVAILABLE (cr)"),
        amount_column("HELD (cr)"),
        title="balances after trading",
    )
    for balance in summary.balances:
        balances.add_row(
            balance.name,
            short_agent_id(balance.agent_id),
            format_millicredits(balance.available_millicredits),
            format_millicredits(balance.held_millicredits),
        )
    revenue = format_millicredits(summary.platform_revenue_millicredits)
    balances.add_row("platform revenue", "-", revenue, "-")
    balances.add_row("escrow", "-", "-", format_millicredits(summary.escrow_held_millicredits))
    checks = new_table(console, "CHECK", "RESULT", title="verdict")
    checks.add_row("deals settled", f"{summary.settled} of {summary.deals}")
    checks.add_row("ledger invariants", summary.invariants_problem or "OK")
    for name, succeeded in summary.scenarios.items():
        checks.add_row(f"{name} scenario", "OK" if succeeded else "FAILED")
    return [balances, checks]


@contextmanager
def starting(console: Console, what: str, /) -> Iterator[None]:
    """A spinner while ``what`` starts, on a terminal only (a pipe gets no extra lines)."""
    if not console.is_terminal:
        yield
        return
    with console.status(f"starting {what}…"):
        yield


class DemoProgress:
    """The demo's story and its progress: a live bar on a terminal, the lines alone otherwise.

    ``say`` prints one line of the story (above the bar on a terminal);
    ``step`` moves the bar to ``completed`` of ``total`` with a description.
    """

    def __init__(self, console: Console, /) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> DemoProgress:
        if self._console.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("starting", total=None)
        return self

    def __exit__(self, *_: object) -> None:
        self.finish()

    def finish(self) -> None:
        """Take the bar away (before the summary); the story's lines print plainly after."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def say(self, line: str, /) -> None:
        if self._progress is None:
            print(line, file=self._console.file, flush=True)
        else:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)

    def step(self, description: str, completed: int, total: int, /) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, description=description, completed=completed, total=total
            )
