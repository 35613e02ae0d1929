"""The Transactions page as a statement: one entry per purchase, sale, top-up, cash-out, transfer.

Over real HTTP with a real exchange and portal (and a real headless Chromium
at phone width for paging): proves that a released purchase is ONE entry for
the buyer ("Bought text.upper from <provider>", −price, paid) and ONE for the
provider (price, fee, +net); that a held purchase reads "held" and, once the
provider cancels, "refunded", naming an outside provider by a shortened id
with the full id in a title; that a top-up, a cash-out and a transfer between
one's own agents read in words; that the "What" filter keeps only its kind;
that more than 50 entries make two pages, the second reached through the
Next link, which keeps the filters, without sideways scrolling at 390 px;
that the CSV keeps its columns and adds the words and the fee at the end;
and that the chart has labelled gridlines in credits and says in words when
there is nothing to draw. Each money test ends with the ledger's invariants.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re

import pytest

from agent_client import QuoteRequest
from human_portal import limits
from human_portal.own_agent_transfers import transfer_between_own_agents
from human_portal.payouts import (
    PayoutStatus,
    connect_onboarding_url,
    refresh_connect_status,
    request_cash_out,
)
from human_portal.reports import ChartDay, TransactionLine, chart_days, spending_chart_svg
from tests.portal.chromium_pages import CHROMIUM, chromium_page, sign_up_in_page
from tests.portal.conftest import PASSWORD
from tests.portal.money_helpers import available
from tests.portal.test_payouts import complete_onboarding

CREDIT = 1_000
PRICE = 2 * CREDIT
FEE = PRICE * 500 // 10_000  # the default 5 % on a settled contract
# The export's first line, exactly as a spreadsheet or a script reads it.
CSV_HEADER = (
    "time_utc,agent_id,agent_label,kind,direction,amount_millicredits,amount_credits,is_hold,"
    "counterparty_account_id,reference,transfer_id,description,fee_millicredits"
)


async def upper(task):
    return {"text": str(task.get("text", "")).upper()}


async def never(task):
    await asyncio.Event().wait()


async def hire(buyer, provider, handler):
    await provider.advertise("text.upper", description="Shouts", price_millicredits=PRICE)
    await provider.serve("text.upper", handler, pricing=PRICE)
    [quote] = await buyer.request_quotes(
        QuoteRequest(
            "text.upper", "shout", budget_millicredits=5 * CREDIT, timeout_s=2, quotes_max=1
        )
    )
    return await buyer.hire(quote, {"text": "hello"})


def entry_rows(page_html: str) -> list[list[str]]:
    """Each statement row's cells as the words a person reads (tags dropped)."""
    rows = re.findall(r"<tr data-entry=.*?</tr>", page_html, flags=re.S)
    return [
        [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split()).replace(" ,", ",")
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        ]
        for row in rows
    ]


def rows_saying(rows: list[list[str]], words: str) -> list[list[str]]:
    return [row for row in rows if words in row[2]]


async def test_a_released_purchase_is_one_entry_for_the_buyer_and_one_for_the_provider(
    harness, browser
):
    await browser.sign_up("ledger@example.com")
    user = await harness.user_named("ledger@example.com")
    buyer = await harness.linked_agent(user, label="shopper")
    provider = await harness.linked_agent(user, label="shop")
    await harness.mint(buyer.agent_id, 10 * CREDIT)
    contract = await hire(buyer, provider, upper)
    await contract.accept_delivery(await contract.wait_delivery(timeout_s=10))
    assert await available(harness, provider.agent_id) == PRICE - FEE

    rows = entry_rows((await browser.get("/transactions")).text)
    assert [row[1:] for row in rows_saying(rows, "text.upper")] == [
        ["shop", "Sold text.upper to shopper price 2 · fee 0.1 · net 1.9", "paid", "+1.9 $0.19"],
        ["shopper", "Bought text.upper from shop", "paid", "−2 $0.20"],
    ]
    assert [row[1:] for row in rows_saying(rows, "granted")] == [
        ["shopper", "Credits granted by the operator", "paid", "+10 $1.00"]
    ]
    assert len(rows) == 3
    sales = entry_rows((await browser.get("/transactions?what=sales")).text)
    assert [row[2] for row in sales] == [rows_saying(rows, "Sold")[0][2]]

    exported = (await browser.client.get("/transactions.csv")).text
    assert exported.splitlines()[0] == CSV_HEADER
    lines = list(csv.DictReader(io.StringIO(exported)))
    by_kind = sorted(
        (line["agent_label"], line["kind"], line["description"], line["fee_millicredits"])
        for line in lines
        if line["reference"] == contract.contract_id
    )
    assert by_kind == [
        ("shop", "escrow_release", "Sold text.upper to shopper", str(FEE)),
        ("shopper", "escrow_lock", "Bought text.upper from shop", ""),
        ("shopper", "escrow_release", "Bought text.upper from shop", ""),
    ]
    await harness.check_invariants()


async def test_a_held_purchase_the_provider_cancels_reads_refunded(harness, browser):
    await browser.sign_up("refund@example.com")
    user = await harness.user_named("refund@example.com")
    buyer = await harness.linked_agent(user, label="shopper")
    outsider = await harness.agent()
    await harness.mint(buyer.agent_id, 10 * CREDIT)
    contract = await hire(buyer, outsider, never)
    short = f"{outsider.agent_id[:6]}…{outsider.agent_id[-4:]}"

    held = rows_saying(entry_rows((await browser.get("/transactions")).text), "Bought")
    assert [row[2:] for row in held] == [[f"Bought text.upper from {short}", "held", "2 held"]]
    await outsider.cancel(contract.contract_id, reason="cannot do it")

    page = (await browser.get("/transactions")).text
    refunded = rows_saying(entry_rows(page), "Bought")
    assert [row[2:] for row in refunded] == [
        [f"Bought text.upper from {short}", "refunded", "0 $0.00 2 returned"]
    ]
    assert f'title="{outsider.agent_id}"' in page
    only_refunds = entry_rows((await browser.get("/transactions?what=refunds")).text)
    assert [row[3] for row in only_refunds] == ["refunded"]
    assert await available(harness, buyer.agent_id) == 10 * CREDIT
    await harness.check_invariants()


async def test_a_top_up_a_cash_out_and_a_transfer_between_own_agents_read_in_words(
    harness, browser, monkeypatch
):
    await browser.sign_up("words@example.com")
    user = await harness.user_named("words@example.com")
    saver = await harness.linked_agent(user, label="saver")
    spender = await harness.linked_agent(user, label="spender")
    await harness.paid_top_up(user, saver.agent_id)
    await harness.mint(saver.agent_id, 100 * CREDIT)
    await transfer_between_own_agents(
        harness.context,
        user,
        from_agent_id=saver.agent_id,
        to_agent_id=spender.agent_id,
        amount_millicredits=3 * CREDIT,
        idempotency_key="lunch-money",
    )
    await complete_onboarding(await connect_onboarding_url(harness.context, user))
    assert await refresh_connect_status(harness.context, await harness.user_named(user.email))
    payout = await request_cash_out(
        harness.context,
        await harness.user_named(user.email),
        saver.agent_id,
        100,
        requested_by="human",
    )
    assert payout.status is PayoutStatus.PAID

    rows = entry_rows((await browser.get("/transactions")).text)
    said = {row[2]: row[1:] for row in rows}
    assert said["Top-up (card)"] == ["saver", "Top-up (card)", "paid", "+100 $10.00"]
    assert said["Cash-out to bank"] == ["saver", "Cash-out to bank", "paid", "−100 $10.00"]
    assert said["Transfer to spender includes a fee of 0.15"] == [
        "saver",
        "Transfer to spender includes a fee of 0.15",
        "paid",
        "−3 $0.30",
    ]
    assert said["Transfer from saver"] == [
        "spender",
        "Transfer from saver",
        "paid",
        "+2.85 ≈ $0.28",
    ]
    assert len(rows) == 5
    transfers = entry_rows((await browser.get("/transactions?what=transfers&direction=in")).text)
    assert [row[2] for row in transfers] == ["Transfer from saver"]
    assert (await browser.get("/transactions?what=everything")).status_code == 422
    assert (await browser.get("/transactions?page=0")).status_code == 422
    assert "Older history is cut" not in (await browser.get("/transactions")).text
    # Each agent's read is capped; with a cap of 2 the page says so.
    monkeypatch.setattr(limits, "TRANSACTIONS_PAGE_SIZE_MAX", 2)
    assert "Older history is cut" in (await browser.get("/transactions")).text
    await harness.check_invariants()


async def test_a_subscription_period_and_a_digital_good_name_what_was_bought(harness, browser):
    await browser.sign_up("plans@example.com")
    user = await harness.user_named("plans@example.com")
    buyer = await harness.linked_agent(user, label="shopper")
    provider = await harness.linked_agent(user, label="shop")
    await harness.mint(buyer.agent_id, 10 * CREDIT)
    await provider.advertise("text.upper", description="Shouts", price_millicredits=PRICE)
    plan = await provider.publish_plan(
        "text.upper", "basic", price_millicredits=PRICE, period_s=3600
    )
    await buyer.subscribe(plan)
    item = await provider.publish_goods(
        "shouter",
        b"a package",
        title="A useful agent",
        capability="text.upper",
        price_millicredits=PRICE,
    )
    await buyer.buy_goods(item.item_id, price_millicredits=PRICE)

    rows = entry_rows((await browser.get("/transactions")).text)
    said = sorted(row[1:] for row in rows if "granted" not in row[2])
    assert said == [
        [
            "shop",
            "Sold A useful agent to shopper price 2 · fee 0.1 · net 1.9",
            "paid",
            "+1.9 $0.19",
        ],
        [
            "shop",
            "Sold subscription basic (text.upper) to shopper, period 1 price 2 · fee 0.1 · net 1.9",
            "paid",
            "+1.9 $0.19",
        ],
        ["shopper", "Bought A useful agent from shop", "paid", "−2 $0.20"],
        ["shopper", "Subscription to basic (text.upper) from shop, period 1", "paid", "−2 $0.20"],
    ]
    purchases = entry_rows((await browser.get("/transactions?what=purchases")).text)
    assert sorted(row[1] for row in purchases) == ["shopper", "shopper"]
    await harness.check_invariants()


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (tests/run.sh installs it)"
)
async def test_more_than_a_page_of_entries_pages_through_next_at_phone_width(harness, tmp_path):
    email = "pages@example.com"
    async with chromium_page(tmp_path / "profile", width=390, height=844) as (_, page):
        await sign_up_in_page(page, harness.url, email, PASSWORD)
        user = await harness.user_named(email)
        left = await harness.linked_agent(user, label="left")
        right = await harness.linked_agent(user, label="right")
        await harness.mint(left.agent_id, 100 * CREDIT)
        for index in range(30):  # 30 transfers: 60 entries (one per agent) and the grant
            await transfer_between_own_agents(
                harness.context,
                user,
                from_agent_id=left.agent_id,
                to_agent_id=right.agent_id,
                amount_millicredits=CREDIT,
                idempotency_key=f"pocket-{index}",
            )

        await page.goto(f"{harness.url}/transactions?what=transfers")
        assert await page.locator("table.statement tbody tr").count() == 50
        assert "page 1" in await page.inner_text("nav.statement-pager")
        assert await page.locator("a[rel=prev]").count() == 0
        assert await overflow_px(page) == 0
        await page.click("a[rel=next]")
        await page.wait_for_url(re.compile(r".*page=2$"))
        assert "what=transfers" in page.url
        assert await page.locator("table.statement tbody tr").count() == 10
        assert "page 2" in await page.inner_text("nav.statement-pager")
        assert await page.locator("a[rel=next]").count() == 0
        assert await page.locator("a[rel=prev]").count() == 1
        assert "Transfer from left" in await page.inner_text("table.statement")
        assert await overflow_px(page) == 0
    await harness.check_invariants()


async def overflow_px(page) -> int:
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def test_the_chart_says_so_in_words_when_there_is_nothing_to_draw():
    empty = spending_chart_svg(chart_days([], 1_700_000_000_000))
    assert "No spending or earning in the last 14 days" in empty
    assert "<svg" not in empty and "peak" not in empty


def test_the_chart_has_three_labelled_gridlines_in_credits_and_a_label_per_day():
    now_ms = 1_700_000_000_000
    spent = TransactionLine(
        agent_id="a",
        agent_label="a",
        transfer_id="escrow:c1:post",
        timestamp_us=now_ms * 1000,
        kind="escrow_release",
        direction="out",
        amount_millicredits=2_500,
        counterparty_account_id="platform:escrow",
        is_hold=False,
        reference="c1",
    )
    days = chart_days([spent], now_ms)
    assert days[-1] == ChartDay(days[-1].label, 2_500, 0)
    chart = spending_chart_svg(days)
    axis = re.search(r'<g class="axis">(.*?)</g>', chart).group(1)
    assert re.findall(r"<text[^>]*>([^<]*)</text>", axis) == ["0", "2 cr", "4 cr"]
    assert axis.count("<line") == 3
    day_labels = re.findall(r"<text[^>]*>([^<]*)</text>", chart.split('<g class="days">')[1])
    assert day_labels == [day.label for day in days] and len(day_labels) == 14
    assert "2.5 credits spent" in chart
