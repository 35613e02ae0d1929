"""The contract lifecycle when things do not go to plan, over real NATS and a real ledger.

Proves on SQLite and PostgreSQL: a missed delivery deadline refunds the
buyer (by the sweeper, and counts even before the sweeper runs); a provider
cancels (refund) and a buyer's cancel only asks; a silent buyer's delivery
auto-releases after the review window; a rejected delivery goes to dispute,
its evidence reaches the parties and operators but nobody else, an operator
splits it exactly once, and an unresolved dispute gets the default outcome;
a handler that raises TaskDeclined refunds at once (the provider cancels);
racing transitions have exactly one winner; an offline provider receives the
contract it missed when it reconnects. Every test ends with the invariants.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import AgentKeys, ExchangeError, OperatorClient, QuoteRequest, TaskDeclined
from exchange.use_cases.exchange_context import LifecycleSettings

PRICE = 10_000
GRANT = 100_000
FEE_RATE_BPS = 500


async def upper(task):
    return {"text": task["text"].upper()}


async def never(task):
    await asyncio.Event().wait()


async def deal_until_hired(exchange, *, handler=upper, delivery_within_s=60, provider_keys=None):
    provider = await exchange.agent(provider_keys)
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)
    await provider.serve("text.upper", handler, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    quotes = await buyer.request_quotes(
        QuoteRequest(
            "text.upper",
            "x",
            budget_millicredits=PRICE,
            delivery_within_s=delivery_within_s,
            quotes_max=1,
        )
    )
    contract = await buyer.hire(quotes[0], {"text": "hi"})
    return provider, buyer, contract


async def balances(*agents):
    return [(await agent.balance()).available_millicredits for agent in agents]


async def test_a_missed_delivery_deadline_refunds_the_buyer(exchange):
    await exchange.restart(sweep_interval_s=0.2)
    provider, buyer, contract = await deal_until_hired(exchange, handler=never, delivery_within_s=1)
    settled = await buyer.wait_settled(contract.contract_id, timeout_s=10)
    assert settled.state == "refunded" and settled.event == "deadline_passed"
    assert settled.refunded_millicredits == PRICE
    assert await balances(buyer, provider) == [GRANT, 0]
    assert (await buyer.balance()).held_millicredits == 0
    await exchange.check_invariants()


async def test_a_missed_deadline_counts_before_the_sweeper_runs(exchange):
    await exchange.put_timers_to_sleep()
    provider, buyer, contract = await deal_until_hired(exchange, handler=never, delivery_within_s=1)
    await asyncio.sleep(1.2)
    # The provider is too late: refused although no sweeper has refunded yet.
    with pytest.raises(ExchangeError) as caught:
        await provider.deliver(contract.contract_id, "late")
    assert caught.value.code == "invalid_state"
    # Reading the contract applies the due timer.
    view = await buyer.contract(contract.contract_id)
    assert view.state == "refunded"
    assert await balances(buyer) == [GRANT]
    await exchange.check_invariants()


async def test_a_handler_that_declines_gives_the_task_back_at_once(exchange):
    async def declines(task):
        raise TaskDeclined("cannot shout numbers")

    # The deadline is a minute away: only the provider's cancel refunds this soon.
    provider, buyer, contract = await deal_until_hired(exchange, handler=declines)
    settled = await buyer.wait_settled(contract.contract_id, timeout_s=10)
    assert settled.state == "refunded"
    assert await balances(buyer, provider) == [GRANT, 0]
    evidence = await buyer.evidence(contract.contract_id)
    assert [entry.event for entry in evidence.events] == ["open", "provider_cancel"]
    assert evidence.events[-1].detail == "cannot shout numbers"
    await exchange.check_invariants()


async def test_a_provider_cancel_refunds_and_a_buyer_cancel_only_asks(exchange):
    provider, buyer, contract = await deal_until_hired(exchange, handler=never)
    asked = await buyer.cancel(contract.contract_id, reason="changed my mind")
    assert asked.state == "open"
    await buyer.cancel(contract.contract_id, reason="asking twice is recorded once")
    assert (await buyer.balance()).held_millicredits == PRICE
    refunded = await provider.cancel(contract.contract_id, reason="agreed")
    assert refunded.state == "refunded"
    assert await balances(buyer, provider) == [GRANT, 0]
    evidence = await buyer.evidence(contract.contract_id)
    assert [entry.event for entry in evidence.events] == [
        "open",
        "cancel_request",
        "provider_cancel",
    ]
    assert evidence.events[-1].detail == "mutual: agreed"
    await exchange.check_invariants()


async def test_a_silent_buyer_auto_releases_after_the_review_window(exchange):
    await exchange.restart(sweep_interval_s=0.2, lifecycle=LifecycleSettings(review_window_s=1))
    provider, buyer, contract = await deal_until_hired(exchange)
    await contract.wait_delivery(timeout_s=10)
    settled = await provider.wait_settled(contract.contract_id, timeout_s=10)
    assert settled.state == "released" and settled.event == "review_window_passed"
    fee = PRICE * FEE_RATE_BPS // 10_000
    assert await balances(buyer, provider) == [GRANT - PRICE, PRICE - fee]
    await exchange.check_invariants()


async def test_a_dispute_is_split_by_an_operator_exactly_once(exchange):
    provider, buyer, contract = await deal_until_hired(exchange)
    await contract.wait_delivery(timeout_s=10)
    disputed = await buyer.reject_delivery(contract.contract_id, reason="half of it is wrong")
    assert disputed.state == "disputed" and disputed.dispute_reason == "half of it is wrong"
    assert (await buyer.balance()).held_millicredits == PRICE

    operator = await exchange.agent(exchange.operator_keys)
    for reader in (buyer, provider, operator):
        evidence = await reader.evidence(contract.contract_id)
        assert [entry.to_state for entry in evidence.events] == ["open", "delivered", "disputed"]
        assert evidence.contract.result_sha256 is not None
    stranger = await exchange.agent()
    with pytest.raises(ExchangeError) as caught:
        await stranger.evidence(contract.contract_id)
    assert caught.value.code == "not_found"
    with pytest.raises(ExchangeError) as caught:
        await OperatorClient(buyer).resolve(contract.contract_id, provider_share_bps=0)
    assert caught.value.code == "forbidden"

    resolved = await OperatorClient(operator).resolve(
        contract.contract_id, provider_share_bps=6_000, note="split"
    )
    share = PRICE * 6_000 // 10_000
    fee = share * FEE_RATE_BPS // 10_000
    assert (resolved.state, resolved.resolution) == ("resolved", "operator")
    assert resolved.net_millicredits == share - fee
    assert resolved.refunded_millicredits == PRICE - share
    with pytest.raises(ExchangeError) as caught:
        await OperatorClient(operator).resolve(contract.contract_id, provider_share_bps=10_000)
    assert caught.value.code == "invalid_state"
    assert await balances(buyer, provider) == [GRANT - share, share - fee]
    await exchange.check_invariants()


async def test_an_unresolved_dispute_gets_the_default_even_split(exchange):
    await exchange.restart(sweep_interval_s=0.2, lifecycle=LifecycleSettings(dispute_window_s=1))
    provider, buyer, contract = await deal_until_hired(exchange)
    await contract.wait_delivery(timeout_s=10)
    await buyer.reject_delivery(contract.contract_id, reason="no")
    settled = await buyer.wait_settled(contract.contract_id, timeout_s=10)
    assert settled.state == "resolved" and settled.event == "dispute_window_passed"
    share = PRICE // 2
    fee = share * FEE_RATE_BPS // 10_000
    assert await balances(buyer, provider) == [GRANT - share, share - fee]
    assert (await buyer.contract(contract.contract_id)).resolution == "default"
    await exchange.check_invariants()


async def test_accept_and_reject_racing_on_one_delivery_have_one_winner(exchange):
    _provider, buyer, contract = await deal_until_hired(exchange)
    delivery = await contract.wait_delivery(timeout_s=10)
    results = await asyncio.gather(
        buyer.accept_delivery(delivery),
        buyer.reject_delivery(contract.contract_id, reason="race"),
        buyer.accept_delivery(delivery),
        return_exceptions=True,
    )
    final = await buyer.contract(contract.contract_id)
    accepted, rejected = [results[0], results[2]], results[1]
    losers = [result for result in results if isinstance(result, ExchangeError)]
    assert {loser.code for loser in losers} == {"invalid_state"}
    if final.state == "released":
        # The release won: both acceptances answer it (the refused one reads it back).
        assert [view.state for view in accepted] == ["released", "released"]
        assert losers == [rejected]
    else:
        # The rejection won: the dispute stands, both acceptances are refused.
        assert (final.state, rejected.state) == ("disputed", "disputed")
        assert losers == accepted
    await exchange.check_invariants()


async def test_release_racing_the_review_timer_and_the_sweeper_has_one_winner(exchange):
    await exchange.put_timers_to_sleep(lifecycle=LifecycleSettings(review_window_s=1))
    provider, buyer, contract = await deal_until_hired(exchange)
    delivery = await contract.wait_delivery(timeout_s=10)
    await asyncio.sleep(1.1)
    results = await asyncio.gather(
        buyer.accept_delivery(delivery),
        exchange.worker.contracts.sweep(),
        buyer.contract(contract.contract_id),
        exchange.worker.contracts.sweep(),
        return_exceptions=True,
    )
    assert not any(
        isinstance(result, Exception) and not isinstance(result, ExchangeError)
        for result in results
    )
    final = await buyer.contract(contract.contract_id)
    assert final.state == "released"
    fee = PRICE * FEE_RATE_BPS // 10_000
    assert await balances(buyer, provider) == [GRANT - PRICE, PRICE - fee]
    await exchange.check_invariants()


async def test_an_offline_provider_gets_the_contract_it_missed_on_reconnect(exchange):
    provider_keys = AgentKeys.generate()
    provider = await exchange.agent(provider_keys)
    await provider.advertise("text.upper", description="u", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=PRICE, quotes_max=1)
    )
    await provider.close()  # offline before the contract opens

    contract = await buyer.hire(quotes[0], {"text": "while you were out"})
    returning = await exchange.agent(provider_keys)
    await returning.serve("text.upper", upper, pricing=PRICE)
    delivery = await contract.wait_delivery(timeout_s=15)
    assert delivery.result == {"text": "WHILE YOU WERE OUT"}
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_a_buyer_cannot_cancel_once_delivered_or_after_the_deadline(exchange):
    _, buyer, contract = await deal_until_hired(exchange)
    await contract.wait_delivery(timeout_s=10)
    with pytest.raises(ExchangeError) as caught:
        await buyer.cancel(contract.contract_id, reason="too late")
    assert caught.value.code == "invalid_state"
    await exchange.check_invariants()


async def test_an_operator_reads_the_evidence_and_resolves_a_dispute_from_the_cli(
    exchange, tmp_path
):
    import sys

    provider, buyer, contract = await deal_until_hired(exchange)
    await contract.wait_delivery(timeout_s=10)
    await buyer.reject_delivery(contract.contract_id, reason="wrong language")
    exchange.operator_keys.save(tmp_path / "operator.seed")
    common = ["--url", exchange.nats_url, "--key", str(tmp_path / "operator.seed")]

    async def agentx(*arguments: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exchange.entrypoints.cli", *arguments, *common,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, errors = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, errors.decode()
        return output.decode()

    evidence = await agentx("evidence", contract.contract_id)
    assert "disputed" in evidence
    assert ["dispute", "wrong", "language"] in [line.split() for line in evidence.splitlines()]
    resolved = await agentx(
        "resolve", contract.contract_id, "--provider-share-percent", "30", "--note", "partly"
    )
    assert "resolved" in resolved
    share = PRICE * 3_000 // 10_000
    fee = share * FEE_RATE_BPS // 10_000
    assert await balances(buyer, provider) == [GRANT - share, share - fee]
    await exchange.check_invariants()
