"""Metered sessions over a real worker: hold a ceiling, claim signed usage, close.

A provider sells a capability per call (or per thousand units); a buyer gets
its signed offer, opens a session (the ceiling is held), calls through it and
signs a receipt after each answer; the provider claims against the latest
receipt as often as it likes. Each test checks balances against the amounts
the claims must have captured, and the ledger invariants (including "a
metered hold equals the ceiling less the claims") at the end. Hostile input:
receipts signed by others, tampered, for other sessions, replayed or lower;
claims by the buyer; offers for someone else, for oneself, accepted twice.
Both databases.
"""

from __future__ import annotations

import asyncio

import msgspec
import nats.errors
import pytest

from agent_client import AgentKeys, ExchangeError, subjects
from agent_client.protocol import (
    ClaimUsage,
    Envelope,
    ErrorReply,
    MeteredCall,
    MeteredCallReply,
    MeteredState,
    UsageReceipt,
    json_encoder,
)
from agent_client.replies import open_reply
from agent_client.signing import (
    SystemClock,
    b64decode,
    b64encode,
    make_header,
    open_envelope_struct,
    seal,
)

UNIT_PRICE = 100
FUNDS = 10_000
CEILING = 1_000
FEE_RATE_BPS = 500


async def echo(task):
    return {"echo": task}


async def metered_pair(exchange, *, units_per_price=1, unit_price=UNIT_PRICE, units_of=None):
    provider = await exchange.agent()
    await provider.serve_metered(
        "text.echo",
        echo,
        unit_price_millicredits=unit_price,
        units_per_price=units_per_price,
        units_of=units_of or (lambda _input, _output: 1),
    )
    buyer = await exchange.funded_agent(FUNDS)
    return provider, buyer


async def open_session(buyer, provider, *, ceiling=CEILING, session_s=3600):
    offer = await buyer.metered_offer(provider.agent_id, "text.echo")
    return await buyer.open_metered(offer, ceiling_millicredits=ceiling, session_s=session_s)


def fee_of(amount):
    return amount * FEE_RATE_BPS // 10_000


async def test_a_whole_session_captures_what_the_receipts_say_and_returns_the_rest(exchange):
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider)
    assert session.view.state is MeteredState.OPEN
    assert (await buyer.balance()).held_millicredits == CEILING

    assert [await session.call(f"hi {n}") for n in range(3)] == [
        {"echo": f"hi {n}"} for n in range(3)
    ]
    await asyncio.sleep(0.2)  # the last receipt is published, not requested
    claimed = await provider.claim_usage(session.contract_id)
    assert (claimed.claimed_units, claimed.captured_millicredits) == (3, 300)
    assert (claimed.fee_millicredits, claimed.net_millicredits) == (fee_of(300), 300 - fee_of(300))
    balance = await buyer.balance()
    assert (balance.available_millicredits, balance.held_millicredits) == (FUNDS - CEILING, 700)

    await session.call("more")
    await session.call("more")
    await asyncio.sleep(0.2)
    closed = await provider.close_metered(session.contract_id)
    assert closed.state is MeteredState.CLOSED
    assert (closed.captured_millicredits, closed.released_millicredits) == (500, 500)
    balance = await buyer.balance()
    assert (balance.available_millicredits, balance.held_millicredits) == (FUNDS - 500, 0)
    earned = (await provider.balance()).available_millicredits
    assert earned == 500 - fee_of(300) - fee_of(200)
    await exchange.check_invariants()


async def test_per_thousand_pricing_rounds_down_on_the_cumulative_count(exchange):
    provider, buyer = await metered_pair(
        exchange, units_per_price=1000, unit_price=7, units_of=lambda _i, _o: 300
    )
    session = await open_session(buyer, provider)
    for _ in range(3):
        await session.call("tokens")
    await asyncio.sleep(0.2)
    first = await provider.claim_usage(session.contract_id)
    assert (first.claimed_units, first.captured_millicredits) == (900, 900 * 7 // 1000)
    for _ in range(2):
        await session.call("tokens")
    await asyncio.sleep(0.2)
    second = await provider.claim_usage(session.contract_id)
    # 1,500 units cost 10 in all: the second claim takes 4 more, no millicredit lost.
    assert (second.claimed_units, second.captured_millicredits) == (1500, 10)
    await exchange.check_invariants()


async def test_the_ceiling_caps_calls_and_captures(exchange):
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider, ceiling=250)
    await session.call(1)
    await session.call(2)
    await session.call(3)  # 300 owed against a ceiling of 250
    with pytest.raises(ExchangeError) as refused:
        await session.call(4)
    assert refused.value.code == "budget_exceeded"
    await asyncio.sleep(0.2)
    claimed = await provider.claim_usage(session.contract_id)
    assert (claimed.claimed_units, claimed.captured_millicredits) == (3, 250)
    assert (await buyer.balance()).held_millicredits == 0
    closed = await provider.close_metered(session.contract_id)
    assert (closed.captured_millicredits, closed.released_millicredits) == (250, 0)
    await exchange.check_invariants()


async def test_the_buyers_close_leaves_the_claim_window_then_the_sweeper_releases(exchange):
    await exchange.put_timers_to_sleep()
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider)
    await session.call("a")
    await asyncio.sleep(0.2)
    closing = await session.close()
    assert closing.state is MeteredState.CLOSING and closing.closes_at_ms is not None
    # Within the window the provider still claims what it was owed.
    claimed = await provider.claim_usage(session.contract_id)
    assert claimed.captured_millicredits == 100
    # After the window, the sweeper returns the rest.
    context = exchange.worker.context
    real_clock = context.clock
    context.clock = _Shifted(closing.closes_at_ms - SystemClock().now_ms() + 1)
    try:
        assert await exchange.worker.metered.sweep() == 1
    finally:
        context.clock = real_clock
    view = await session.refresh()
    assert (view.state, view.released_millicredits) == (MeteredState.CLOSED, 900)
    assert (await buyer.balance()).available_millicredits == FUNDS - 100
    await exchange.check_invariants()


async def test_an_expired_session_enters_its_claim_window_then_closes(exchange):
    await exchange.put_timers_to_sleep()
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider, session_s=1)
    context = exchange.worker.context
    real_clock = context.clock
    try:
        context.clock = _Shifted(2_000)
        assert await exchange.worker.metered.sweep() == 1
        assert (await session.refresh()).state is MeteredState.CLOSING
        context.clock = _Shifted(2_000 + 601_000)
        assert await exchange.worker.metered.sweep() == 1
    finally:
        context.clock = real_clock
    view = await session.refresh()
    assert (view.state, view.captured_millicredits, view.released_millicredits) == (
        MeteredState.CLOSED,
        0,
        CEILING,
    )
    assert (await buyer.balance()).available_millicredits == FUNDS
    await exchange.check_invariants()


class _Shifted:
    def __init__(self, shift_ms: int) -> None:
        self.shift_ms = shift_ms

    def now_ms(self) -> int:
        return SystemClock().now_ms() + self.shift_ms


# --- hostile input: nothing changes ----------------------------------------------------


def receipt_by(keys, contract_id, units, *, audience, subject=None):
    header = make_header(
        keys,
        audience=audience,
        subject=subject or subjects.metered(contract_id),
        lifetime_s=600,
        clock=SystemClock(),
    )
    return seal(UsageReceipt(header=header, contract_id=contract_id, units=units), keys)


async def claim_code(exchange, provider, receipt):
    with pytest.raises(ExchangeError) as refused:
        await provider._request(
            ClaimUsage, lambda header: ClaimUsage(header=header, receipt=receipt)
        )
    return refused.value.code


async def test_forged_tampered_and_foreign_receipts_are_refused_and_change_nothing(exchange):
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider)
    await session.call("x")
    cid, provider_id = session.contract_id, provider.agent_id

    stranger = AgentKeys.generate()
    forged = receipt_by(stranger, cid, 5, audience=provider_id)
    assert await claim_code(exchange, provider, forged) == "signer_mismatch"

    genuine = session.receipt
    document = bytearray(b64decode(genuine.doc))
    tampered_doc = bytes(document).replace(b'"units":1', b'"units":9')
    assert tampered_doc != bytes(document)
    tampered = Envelope(doc=b64encode(tampered_doc), sig=genuine.sig)
    assert await claim_code(exchange, provider, tampered) == "bad_signature"

    buyer_keys = exchange.keys_of(buyer)
    to_someone_else = receipt_by(buyer_keys, cid, 1, audience=stranger.agent_id)
    assert await claim_code(exchange, provider, to_someone_else) == "wrong_audience"
    wrong_subject = receipt_by(buyer_keys, cid, 1, audience=provider_id, subject="agentx.v2.x")
    assert await claim_code(exchange, provider, wrong_subject) == "subject_mismatch"
    unknown_session = receipt_by(buyer_keys, "m_" + "0" * 32, 1, audience=provider_id)
    assert await claim_code(exchange, provider, unknown_session) == "not_found"
    # The buyer cannot claim its own receipt.
    assert await claim_code(exchange, buyer, genuine) == "forbidden"

    view = await session.refresh()
    assert (view.claimed_units, view.captured_millicredits) == (0, 0)
    assert (await buyer.balance()).held_millicredits == CEILING
    await exchange.check_invariants()


async def test_a_replayed_claim_is_answered_and_a_lower_one_refused(exchange):
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider)
    await session.call("a")
    first_receipt = session.receipt
    await session.call("b")
    await asyncio.sleep(0.2)
    claimed = await provider.claim_usage(session.contract_id)
    assert claimed.captured_millicredits == 200
    again = await provider.claim_usage(session.contract_id)
    assert again == claimed
    assert (again.claimed_units, again.captured_millicredits) == (2, 200)
    assert await claim_code(exchange, provider, first_receipt) == "invalid_state"
    assert (await buyer.balance()).available_millicredits == FUNDS - CEILING
    await exchange.check_invariants()


async def test_offers_for_others_for_oneself_or_twice_are_refused(exchange):
    provider, buyer = await metered_pair(exchange)
    offer = await buyer.metered_offer(provider.agent_id, "text.echo")
    other = await exchange.funded_agent(FUNDS)
    with pytest.raises(ExchangeError) as refused:
        await other.open_metered(offer, ceiling_millicredits=CEILING)
    assert refused.value.code == "wrong_audience"
    session = await buyer.open_metered(offer, ceiling_millicredits=CEILING)
    with pytest.raises(ExchangeError) as twice:
        await buyer.open_metered(offer, ceiling_millicredits=CEILING)
    assert (twice.value.code, twice.value.contract_id) == (
        "quote_already_accepted",
        session.contract_id,
    )
    poor = await exchange.agent()
    poor_offer = await poor.metered_offer(provider.agent_id, "text.echo")
    with pytest.raises(ExchangeError) as no_funds:
        await poor.open_metered(poor_offer, ceiling_millicredits=CEILING)
    assert no_funds.value.code == "insufficient_funds"
    assert (await buyer.balance()).held_millicredits == CEILING
    assert (await other.balance()).held_millicredits == 0
    await exchange.check_invariants()


async def test_a_stranger_cannot_read_call_or_close_a_session(exchange):
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider)
    stranger = await exchange.funded_agent(FUNDS)
    with pytest.raises(ExchangeError) as hidden:
        await stranger.close_metered(session.contract_id)
    assert hidden.value.code == "not_found"
    stolen = type(session)(
        session.view,
        connection=stranger._connection,
        keys=exchange.keys_of(stranger),
        clock=SystemClock(),
        request=stranger._request,
    )
    with pytest.raises(ExchangeError) as refused_call:
        await stolen.call("free ride")
    assert refused_call.value.code == "not_found"
    with pytest.raises(ExchangeError) as refused_close:
        await stolen.close()
    assert refused_close.value.code == "not_found"
    assert (await session.refresh()).state is MeteredState.OPEN
    await exchange.check_invariants()


async def test_concurrent_claims_capture_each_unit_once(exchange):
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider)
    receipts = []
    for n in range(8):
        await session.call(n)
        receipts.append(session.receipt)
    outcomes = await asyncio.gather(
        *(
            provider._request(ClaimUsage, lambda header, r=r: ClaimUsage(header=header, receipt=r))
            for r in receipts
        ),
        return_exceptions=True,
    )
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException) or isinstance(outcome, ExchangeError)
    view = await session.refresh()
    assert (view.claimed_units, view.captured_millicredits) == (8, 800)
    assert (await buyer.balance()).held_millicredits == CEILING - 800
    earned = (await provider.balance()).available_millicredits
    assert earned == view.net_millicredits
    await exchange.check_invariants()


async def test_the_evidence_of_a_session_is_its_signed_offer_acceptance_and_claims(exchange):
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider)
    for n in range(3):
        await session.call(n)
        await asyncio.sleep(0.1)
        await provider.claim_usage(session.contract_id)
    evidence = await buyer.metered_evidence(session.contract_id, limit=2)
    assert [claim.units for claim in evidence.claims] == [3, 2] and evidence.has_more
    older = await buyer.metered_evidence(session.contract_id, before_units=2)
    assert [claim.units for claim in older.claims] == [1] and not older.has_more
    # Each claim names a receipt the buyer signed, for this session and provider.
    newest = opened_receipt(evidence.claims[0].receipt)
    assert (newest.header.issuer, newest.header.audience) == (buyer.agent_id, provider.agent_id)
    assert (newest.contract_id, newest.units) == (session.contract_id, 3)
    assert sum(claim.captured_millicredits for claim in evidence.claims + older.claims) == 300
    operator = await exchange.agent(exchange.operator_keys)
    assert (await operator.metered_evidence(session.contract_id)).metered == evidence.metered
    stranger = await exchange.agent()
    with pytest.raises(ExchangeError) as hidden:
        await stranger.metered_evidence(session.contract_id)
    assert hidden.value.code == "not_found"
    await exchange.check_invariants()


def opened_receipt(envelope):
    document = open_envelope_struct(envelope).document
    assert isinstance(document, UsageReceipt)
    return document


# --- the provider's direct subject is hostile ground too ------------------------------


async def direct_request(exchange, keys, provider_id, payload, *, timeout_s=3.0):
    """A hand-made request to the provider; its signed answer, verified as a buyer must."""
    subject = subjects.negotiation(provider_id)
    client = await exchange.raw_connection(keys)
    message = await client.request(subject, payload, timeout=timeout_s)
    _, reply = open_reply(
        message.data,
        signer_id=provider_id,
        audience=keys.agent_id,
        request_subject=subject,
        request_payload=payload,
        clock=SystemClock(),
    )
    return reply


def call_payload(keys, provider_id, contract_id, input_bytes=b'"x"'):
    header = make_header(
        keys,
        audience=provider_id,
        subject=subjects.negotiation(provider_id),
        lifetime_s=10,
        clock=SystemClock(),
    )
    call = MeteredCall(header=header, contract_id=contract_id, input=msgspec.Raw(input_bytes))
    return json_encoder.encode(seal(call, keys))


async def test_forged_replayed_oversize_and_garbage_calls_get_nothing_from_the_provider(exchange):
    provider, buyer = await metered_pair(exchange)
    session = await open_session(buyer, provider)
    buyer_keys = exchange.keys_of(buyer)
    stranger = AgentKeys.generate()
    served_before = []

    async def counting_echo(task):
        served_before.append(task)
        return {"echo": task}

    provider._provider.metered._services["text.echo"].handler = counting_echo

    forged = await direct_request(
        exchange,
        stranger,
        provider.agent_id,
        call_payload(stranger, provider.agent_id, session.contract_id),
    )
    assert isinstance(forged, ErrorReply) and forged.code == "not_found"
    unknown_call = call_payload(stranger, provider.agent_id, "m_" + "0" * 32)
    unknown = await direct_request(exchange, stranger, provider.agent_id, unknown_call)
    assert isinstance(unknown, ErrorReply) and unknown.code == "not_found"

    payload = call_payload(buyer_keys, provider.agent_id, session.contract_id)
    first = await direct_request(exchange, buyer_keys, provider.agent_id, payload)
    assert isinstance(first, MeteredCallReply) and first.units == 1
    replayed = await direct_request(exchange, buyer_keys, provider.agent_id, payload)
    assert isinstance(replayed, ErrorReply) and replayed.code == "replayed"

    big_input = b'"' + b"a" * (300 * 1024) + b'"'
    oversize = await direct_request(
        exchange,
        buyer_keys,
        provider.agent_id,
        call_payload(buyer_keys, provider.agent_id, session.contract_id, big_input),
    )
    assert isinstance(oversize, ErrorReply) and oversize.code == "payload_too_large"

    # Too deep to decode, or not an envelope at all: ignored, with no answer.
    client = await exchange.raw_connection(buyer_keys)
    deep = call_payload(buyer_keys, provider.agent_id, session.contract_id, b"[" * 200 + b"]" * 200)
    for unanswerable in (deep, b"\x00garbage"):
        with pytest.raises(nats.errors.TimeoutError):
            await client.request(subjects.negotiation(provider.agent_id), unanswerable, timeout=0.5)
    # Only the one genuine call ran the handler, and the provider still serves.
    assert served_before == ["x"]
    assert await session.call("after") == {"echo": "after"}
    await exchange.check_invariants()
