"""One fee table: set by operators, shown to every agent, applied to each payment.

The operator changes rates (and a category's commission) through
``operator.fees``; ``fees.get`` shows the table to anyone before paying; a
contract, a metered session and a direct transfer then take the rate of
their kind (a sale in a category with a commission takes the commission),
with balances checked to the millicredit. Refusals (not an operator, an
unknown kind, a rate out of range) change nothing. The pure table is
tested on plain values too. Both databases; invariants at the end.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import AgentKeys, ExchangeError, OperatorClient, QuoteRequest
from agent_client.credit_text import format_millicredits
from agent_client.protocol import SetFees
from exchange.domain.fee_rules import fee_changes, fee_schedule_from_rows
from exchange.entrypoints.cli import main
from exchange.errors import ExchangeError as ExchangeRefusal
from wallet import FeeKind, FeeSchedule

PRICE = 10_000
FUNDS = 50_000


# --- the table on plain values ----------------------------------------------------------


def test_the_defaults_are_the_product_plans():
    rates = FeeSchedule().rates()
    assert rates[FeeKind.PURCHASE] == 300
    assert rates[FeeKind.ESCROW] == rates[FeeKind.TRANSFER] == 500
    assert rates[FeeKind.CASH_OUT] == 1000


def test_a_category_commission_replaces_sale_fees_only_and_the_longest_prefix_wins():
    table = FeeSchedule(category_bps=(("hosted_app", 1500), ("hosted_app.premium", 2000)))
    assert table.rate_bps(FeeKind.ESCROW, capability="hosted_app.chat") == 1500
    assert table.rate_bps(FeeKind.METERED, capability="hosted_app") == 1500
    assert table.rate_bps(FeeKind.GOODS, capability="hosted_app.premium.x") == 2000
    assert table.rate_bps(FeeKind.ESCROW, capability="hosted_apps") == 500  # not a prefix match
    assert table.rate_bps(FeeKind.TRANSFER, capability="hosted_app.chat") == 500
    assert table.rate_bps(FeeKind.CASH_OUT) == 1000


def test_rows_over_defaults_and_changes_are_checked():
    table = fee_schedule_from_rows(
        {"escrow": 800, "category:hosted_app": 1500, "retired_kind": 1}, default=FeeSchedule()
    )
    assert (table.escrow_bps, table.purchase_bps, table.category_bps) == (
        800,
        300,
        (("hosted_app", 1500),),
    )
    assert fee_changes(table, rates={"metered": 700}, categories={"hosted_app": None}) == {
        "metered": 700,
        "category:hosted_app": None,
    }
    with pytest.raises(ExchangeRefusal) as unknown:
        fee_changes(table, rates={"tips": 100}, categories={})
    assert unknown.value.code == "invalid_request"
    too_many = {f"c{n}": 1 for n in range(101)}
    with pytest.raises(ExchangeRefusal):
        fee_changes(FeeSchedule(), rates={}, categories=too_many)


# --- over a real worker ----------------------------------------------------------------


async def upper(task):
    return {"text": str(task).upper()}


async def hire_once(exchange, capability):
    provider = await exchange.agent()
    await provider.advertise(capability, description="upper", price_millicredits=PRICE)
    await provider.serve(capability, upper, pricing=PRICE)
    buyer = await exchange.funded_agent(FUNDS)
    [quote] = await buyer.request_quotes(
        QuoteRequest(capability, "shout", budget_millicredits=PRICE, quotes_max=1, timeout_s=2)
    )
    contract = await buyer.hire(quote, "hi")
    delivery = await contract.wait_delivery(timeout_s=10)
    view = await contract.accept_delivery(delivery)
    return provider, view


async def test_operators_set_rates_and_every_payment_takes_its_kinds(exchange):
    operator = OperatorClient(await exchange.agent(exchange.operator_keys))
    shown = await operator.set_fees(
        rates={"escrow": 800, "transfer": 200, "metered": 1000},
        categories={"hosted_app": 1500},
        reason="new plan",
    )
    assert shown.rates["escrow"] == 800 and shown.categories == {"hosted_app": 1500}
    anyone = await exchange.agent()
    assert await anyone.fees() == shown

    _, plain = await hire_once(exchange, "text.upper")
    assert plain.fee_millicredits == PRICE * 800 // 10_000
    provider, hosted = await hire_once(exchange, "hosted_app.chat")
    assert hosted.fee_millicredits == PRICE * 1500 // 10_000
    assert (await provider.balance()).available_millicredits == PRICE - PRICE * 1500 // 10_000

    payer = await exchange.funded_agent(FUNDS)
    payee = await exchange.funded_agent(1_000)  # a wallet to receive into
    sent = await payer.transfer(payee.agent_id, 5_000)
    assert (sent.fee_millicredits, sent.net_millicredits) == (100, 4_900)

    seller = await exchange.agent()
    await seller.serve_metered("text.echo", upper, unit_price_millicredits=1_000)
    buyer = await exchange.funded_agent(FUNDS)
    session = await buyer.open_metered(
        await buyer.metered_offer(seller.agent_id, "text.echo"), ceiling_millicredits=5_000
    )
    await session.call("a")
    await asyncio.sleep(0.2)
    claimed = await seller.close_metered(session.contract_id)
    assert (claimed.captured_millicredits, claimed.fee_millicredits) == (1_000, 100)
    await exchange.check_invariants()


async def test_a_contract_keeps_the_rate_it_opened_with(exchange):
    operator = OperatorClient(await exchange.agent(exchange.operator_keys))
    provider = await exchange.agent()
    await provider.advertise("text.upper", description="upper", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    buyer = await exchange.funded_agent(FUNDS)
    [quote] = await buyer.request_quotes(
        QuoteRequest("text.upper", "shout", budget_millicredits=PRICE, quotes_max=1, timeout_s=2)
    )
    contract = await buyer.hire(quote, "hi")
    await operator.set_fees(rates={"escrow": 2_000})
    delivery = await contract.wait_delivery(timeout_s=10)
    view = await contract.accept_delivery(delivery)
    assert view.fee_millicredits == PRICE * 500 // 10_000
    await exchange.check_invariants()


async def test_only_operators_change_fees_and_bad_tables_change_nothing(exchange):
    agent = await exchange.agent()
    with pytest.raises(ExchangeError) as forbidden:
        await agent._request(SetFees, lambda header: SetFees(header=header, rates={"escrow": 0}))
    assert forbidden.value.code == "forbidden"
    operator = OperatorClient(await exchange.agent(exchange.operator_keys))
    with pytest.raises(ExchangeError) as unknown:
        await operator.set_fees(rates={"tips": 100})
    assert unknown.value.code == "invalid_request"
    with pytest.raises(ExchangeError) as out_of_range:
        await operator.set_fees(rates={"escrow": 10_001})
    assert out_of_range.value.code == "malformed"
    assert (await agent.fees()).rates["escrow"] == 500


# --- the command line -------------------------------------------------------------------


def cli(exchange, key_path, *arguments):
    """``agentx`` as a user runs it, against this exchange (in a thread: it runs its own loop)."""
    location = ["--url", exchange.nats_url, "--exchange-id", exchange.worker.exchange_id]
    return asyncio.to_thread(main, [*arguments, *location, "--key", str(key_path)])


async def test_agentx_fees_shows_and_sets_the_table_and_agentx_analytics_reads_it(
    exchange, tmp_path, capsys
):
    operator_seed = tmp_path / "operator.seed"
    exchange.operator_keys.save(operator_seed)
    assert await cli(exchange, operator_seed, "fees") == 0
    assert "escrow" in capsys.readouterr().out
    changed = await cli(
        exchange, operator_seed, "fees", "--set", "escrow=800", "--category", "hosted_app=1500"
    )
    shown = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert changed == 0 and ["escrow", "8.00", "%", "800"] in shown
    assert ["category", "hosted_app", "15.00", "%", "1500"] in shown
    assert await cli(exchange, operator_seed, "fees", "--set", "escrow") == 2
    assert "KIND=BPS" in capsys.readouterr().err
    stranger_seed = tmp_path / "stranger.seed"
    AgentKeys.generate().save(stranger_seed)
    assert await cli(exchange, stranger_seed, "fees", "--set", "escrow=0") == 1
    assert "forbidden" in capsys.readouterr().err

    provider, view = await hire_once(exchange, "text.upper")
    provider_seed = tmp_path / "provider.seed"
    exchange.keys_of(provider).save(provider_seed)
    assert await cli(exchange, provider_seed, "analytics", "--capability", "text.upper") == 0
    printed = capsys.readouterr().out
    # The first table (sales): LISTING CONTRACTS UNITS PERIODS GOODS NET (cr) FEES (cr).
    sales = next(line.split() for line in printed.splitlines() if line.startswith("text.upper"))
    assert sales[1] == "1"
    assert sales[5] == format_millicredits(PRICE - view.fee_millicredits)
    await exchange.check_invariants()
