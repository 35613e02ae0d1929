"""Bad input gets a clear, typed error from the exchange and changes nothing.

Each test sends one broken or hostile request over the real nats-server (a
hand-made message, a forged signature, a replay, an expired quote, an
amount outside its limits, a double acceptance, a buyer who cannot pay,
someone asking for another agent's balance...) and checks the error code,
then that balances did not move and the ledger invariants hold.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from agent_client import (
    AgentKeys,
    Delivery,
    ExchangeError,
    OperatorClient,
    QuoteRequest,
    ReceivedQuote,
    limits,
    subjects,
)
from agent_client.protocol import (
    AcceptDelivery,
    Advertise,
    ContractState,
    Deliver,
    Envelope,
    ErrorReply,
    GetBalance,
    Mint,
    OpenContract,
    Quote,
    json_encoder,
)
from agent_client.signing import SystemClock, b64encode, make_header, seal, sha256_hex

GRANT = 50_000
PRICE = 2_000


class ShiftedClock:
    def __init__(self, shift_ms: int) -> None:
        self.shift_ms = shift_ms

    def now_ms(self) -> int:
        return SystemClock().now_ms() + self.shift_ms


def signed_request(keys, endpoint, build, *, subject=None, lifetime_s=10.0, clock=None):
    subject = subject or subjects.exchange_request(keys.agent_id, endpoint)
    header = make_header(
        keys,
        audience="exchange",
        subject=subject,
        lifetime_s=lifetime_s,
        clock=clock or SystemClock(),
    )
    return subject, json_encoder.encode(seal(build(header), keys))


async def send(exchange, keys, subject, payload):
    """Send from ``keys``' own connection (only it may publish on its subjects)."""
    return await exchange.raw_request(keys, subject, payload)


async def error_code(exchange, keys, subject, payload):
    reply = await send(exchange, keys, subject, payload)
    assert isinstance(reply, ErrorReply), reply
    return reply.code


async def upper(task):
    return {"text": task["text"].upper()}


async def shop_and_buyer(exchange, *, grant=GRANT):
    provider = await exchange.agent(AgentKeys.generate())
    await provider.advertise("text.upper", description="Upper-cases", price_millicredits=PRICE)
    await provider.serve("text.upper", upper, pricing=PRICE)
    buyer = await exchange.funded_agent(grant) if grant else await exchange.agent()
    return provider, buyer


async def first_quote(buyer):
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=10_000, quotes_max=1)
    )
    assert quotes
    return quotes[0]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{this is not json", "malformed"),
        (
            b'{"doc": "'
            + b64encode(b'{"kind": "teleport", "header": {}}').encode()
            + b'", "sig": ""}',
            "unknown_kind",
        ),
        (
            b'{"doc": "' + b64encode(b'{"kind": "contract.open"}').encode() + b'", "sig": ""}',
            "malformed",
        ),
        (b'{"sig": "abc"}', "malformed"),
        (b"x" * (limits.MESSAGE_BYTES_MAX + 10), "payload_too_large"),
    ],
    ids=["not-json", "unknown-kind", "missing-fields", "no-doc", "oversize"],
)
async def test_broken_messages_get_their_error_code(exchange, payload, code):
    _, buyer = await shop_and_buyer(exchange)
    subject = subjects.exchange_request(buyer.agent_id, "contract.open")
    assert await error_code(exchange, exchange.keys_of(buyer), subject, payload) == code
    assert (await buyer.balance()).available_millicredits == GRANT
    await exchange.check_invariants()


async def test_a_wrong_signature_is_refused(exchange):
    _, _buyer = await shop_and_buyer(exchange)
    forger = AgentKeys.generate()
    subject, payload = signed_request(forger, "wallet.balance", lambda h: GetBalance(header=h))
    envelope = msgspec.json.decode(payload, type=Envelope)
    bad_signature = b64encode(bytes(64))
    forged = json_encoder.encode(Envelope(doc=envelope.doc, sig=bad_signature))
    assert await error_code(exchange, forger, subject, forged) == "bad_signature"
    await exchange.check_invariants()


async def test_a_request_signed_by_another_agent_is_refused_even_on_the_right_connection(
    exchange,
):
    # The connection cannot publish on another agent's subjects at all (see
    # test_threat_model.py); here the victim's own connection carries a
    # snoop's signed request, as a relay might, and the exchange refuses it.
    _, buyer = await shop_and_buyer(exchange)
    snoop = AgentKeys.generate()
    victim_subject = subjects.exchange_request(buyer.agent_id, "wallet.balance")
    subject, payload = signed_request(
        snoop, "wallet.balance", lambda h: GetBalance(header=h), subject=victim_subject
    )
    victim = exchange.keys_of(buyer)
    assert await error_code(exchange, victim, subject, payload) == "signer_mismatch"


async def test_a_request_signed_for_one_endpoint_is_refused_on_another(exchange):
    _, _buyer = await shop_and_buyer(exchange)
    keys = AgentKeys.generate()
    _, payload = signed_request(keys, "wallet.balance", lambda h: GetBalance(header=h))
    other_subject = subjects.exchange_request(keys.agent_id, "wallet.transactions")
    assert await error_code(exchange, keys, other_subject, payload) == "subject_mismatch"


async def test_the_wrong_document_kind_for_an_endpoint_is_refused(exchange):
    keys = AgentKeys.generate()
    subject = subjects.exchange_request(keys.agent_id, "contract.open")
    _, payload = signed_request(
        keys, "contract.open", lambda h: GetBalance(header=h), subject=subject
    )
    assert await error_code(exchange, keys, subject, payload) == "wrong_kind"


async def test_a_replayed_mint_is_refused_and_mints_once(exchange):
    recipient = await exchange.agent()
    subject, payload = signed_request(
        exchange.operator_keys,
        "operator.mint",
        lambda h: Mint(
            mint_id="m-1",
            header=h,
            recipient_id=recipient.agent_id,
            amount_millicredits=7_000,
            reason="r",
        ),
    )
    operator = exchange.operator_keys
    first = await send(exchange, operator, subject, payload)
    assert not isinstance(first, ErrorReply)
    assert await error_code(exchange, operator, subject, payload) == "replayed"
    assert (await recipient.balance()).available_millicredits == 7_000
    await exchange.check_invariants()


async def test_an_expired_request_is_refused(exchange):
    keys = AgentKeys.generate()
    subject, payload = signed_request(
        keys,
        "wallet.balance",
        lambda h: GetBalance(header=h),
        lifetime_s=5,
        clock=ShiftedClock(-6_000),
    )
    assert await error_code(exchange, keys, subject, payload) == "expired"


@pytest.mark.parametrize("amount", [0, -1, limits.MINT_MILLICREDITS_MAX + 1])
async def test_mints_outside_the_amount_limits_are_refused(exchange, amount):
    recipient = await exchange.agent()
    subject, payload = signed_request(
        exchange.operator_keys,
        "operator.mint",
        lambda h: Mint(
            mint_id="m-1",
            header=h,
            recipient_id=recipient.agent_id,
            amount_millicredits=amount,
            reason="r",
        ),
    )
    assert await error_code(exchange, exchange.operator_keys, subject, payload) == "malformed"
    assert (await recipient.balance()).available_millicredits == 0
    await exchange.check_invariants()


@pytest.mark.parametrize("price", [0, -5, limits.PRICE_MILLICREDITS_MAX + 1])
async def test_listings_outside_the_price_limits_are_refused(exchange, price):
    keys = AgentKeys.generate()
    subject, payload = signed_request(
        keys,
        "catalog.advertise",
        lambda h: Advertise(header=h, capability="x.y", description="d", price_millicredits=price),
    )
    assert await error_code(exchange, keys, subject, payload) == "malformed"
    seeker = await exchange.agent()
    assert (await seeker.search(capability="x.y")).listings == []


async def test_only_an_operator_can_mint(exchange):
    impostor = await exchange.agent()
    with pytest.raises(ExchangeError) as caught:
        await OperatorClient(impostor).mint(impostor.agent_id, 1_000, reason="free money")
    assert caught.value.code == "forbidden"
    assert (await impostor.balance()).available_millicredits == 0
    await exchange.check_invariants()


async def test_an_expired_quote_cannot_be_accepted(exchange):
    provider, buyer = await shop_and_buyer(exchange)
    header = make_header(
        exchange.keys_of(provider),
        audience=buyer.agent_id,
        subject=subjects.rfq("text.upper"),
        lifetime_s=5,
        clock=ShiftedClock(-10_000),
    )
    stale = Quote(
        header=header,
        rfq_id="rfq-stale",
        capability="text.upper",
        price_millicredits=PRICE,
        delivery_deadline_ms=SystemClock().now_ms() + 60_000,
    )
    with pytest.raises(ExchangeError) as caught:
        await buyer.hire(
            ReceivedQuote(stale, seal(stale, exchange.keys_of(provider))), {"text": "a"}
        )
    assert caught.value.code == "quote_expired"
    assert (await buyer.balance()).available_millicredits == GRANT
    await exchange.check_invariants()


async def test_a_quote_addressed_to_another_buyer_cannot_be_used(exchange):
    _, buyer = await shop_and_buyer(exchange)
    thief = await exchange.funded_agent(GRANT)
    quote = await first_quote(buyer)
    with pytest.raises(ExchangeError) as caught:
        await thief.hire(quote, {"text": "a"})
    assert caught.value.code == "wrong_audience"
    assert (await thief.balance()).held_millicredits == 0
    await exchange.check_invariants()


async def test_accepting_a_quote_twice_opens_one_contract(exchange):
    _, buyer = await shop_and_buyer(exchange)
    quote = await first_quote(buyer)
    contract = await buyer.hire(quote, {"text": "a"})
    # The exchange answers a second acceptance quote_already_accepted, naming the
    # contract; the client reads that contract back (a hire is safe to repeat).
    again = await buyer.hire(quote, {"text": "a"})
    assert again.contract_id == contract.contract_id
    with pytest.raises(ExchangeError) as caught:
        await buyer._request(
            OpenContract,
            lambda header: OpenContract(
                header=header, quote=quote.envelope, task=msgspec.Raw(b"{}")
            ),
        )
    assert caught.value.code == "quote_already_accepted"
    assert caught.value.contract_id == contract.contract_id
    assert (await buyer.balance()).held_millicredits == PRICE
    await exchange.check_invariants()


async def test_racing_acceptances_of_one_quote_hold_the_price_once(exchange):
    _, buyer = await shop_and_buyer(exchange)
    quote = await first_quote(buyer)
    results = await asyncio.gather(
        *(buyer.hire(quote, {"text": "a"}) for _ in range(5)), return_exceptions=True
    )
    # One contract: every racing hire of the quote answers it (the losers read it back).
    assert not [result for result in results if isinstance(result, BaseException)]
    assert len({contract.contract_id for contract in results}) == 1
    balance = await buyer.balance()
    assert balance.available_millicredits == GRANT - PRICE
    await exchange.check_invariants()


async def test_a_buyer_without_enough_credits_is_refused_and_nothing_is_held(exchange):
    _, buyer = await shop_and_buyer(exchange, grant=PRICE - 1)
    quote = await first_quote(buyer)
    with pytest.raises(ExchangeError) as caught:
        await buyer.hire(quote, {"text": "a"})
    assert caught.value.code == "insufficient_funds"
    balance = await buyer.balance()
    assert (balance.available_millicredits, balance.held_millicredits) == (PRICE - 1, 0)
    await exchange.check_invariants()


async def test_an_agent_cannot_hire_itself(exchange):
    provider, _ = await shop_and_buyer(exchange)
    operator = await exchange.agent(exchange.operator_keys)
    await OperatorClient(operator).mint(provider.agent_id, GRANT, reason="test")
    header = make_header(
        exchange.keys_of(provider),
        audience=provider.agent_id,
        subject=subjects.rfq("text.upper"),
        lifetime_s=60,
        clock=SystemClock(),
    )
    own = Quote(
        header=header,
        rfq_id="self",
        capability="text.upper",
        price_millicredits=PRICE,
        delivery_deadline_ms=SystemClock().now_ms() + 60_000,
    )
    with pytest.raises(ExchangeError) as refused:
        await provider.hire(
            ReceivedQuote(own, seal(own, exchange.keys_of(provider))), {"text": "a"}
        )
    assert refused.value.code == "forbidden"
    assert (await provider.balance()).held_millicredits == 0
    await exchange.check_invariants()


async def test_delivering_another_result_and_delivering_for_others_are_refused(exchange):
    provider, buyer = await shop_and_buyer(exchange)
    contract = await buyer.hire(await first_quote(buyer), {"text": "a"})
    await contract.wait_delivery(timeout_s=10)  # the provider delivered once already

    result = b'{"text":"again"}'

    def deliver(header):
        return Deliver(
            header=header,
            contract_id=contract.contract_id,
            result=msgspec.Raw(result),
            result_sha256=sha256_hex(result),
        )

    # A different result on a delivered contract (the same one again is
    # idempotent: test_retry_safety.py).
    subject, payload = signed_request(exchange.keys_of(provider), "contract.deliver", deliver)
    assert await error_code(exchange, exchange.keys_of(provider), subject, payload) == (
        "invalid_state"
    )
    stranger = AgentKeys.generate()
    subject, payload = signed_request(stranger, "contract.deliver", deliver)
    assert await error_code(exchange, stranger, subject, payload) == "not_found"
    await exchange.check_invariants()


async def test_a_delivery_whose_hash_does_not_match_is_refused(exchange):
    provider, _ = await shop_and_buyer(exchange)
    subject, payload = signed_request(
        exchange.keys_of(provider),
        "contract.deliver",
        lambda h: Deliver(
            header=h,
            contract_id="c_doesnotexist",
            result=msgspec.Raw(b'"x"'),
            result_sha256=sha256_hex(b'"y"'),
        ),
    )
    assert await error_code(exchange, exchange.keys_of(provider), subject, payload) == (
        "hash_mismatch"
    )


async def test_accepting_with_the_wrong_hash_or_as_the_provider_is_refused(exchange):
    provider, buyer = await shop_and_buyer(exchange)
    contract = await buyer.hire(await first_quote(buyer), {"text": "a"})
    delivery = await contract.wait_delivery(timeout_s=10)
    wrong = Delivery(delivery.contract_id, delivery.result, sha256_hex(b"something else"))
    with pytest.raises(ExchangeError) as caught:
        await buyer.accept_delivery(wrong)
    assert caught.value.code == "hash_mismatch"
    with pytest.raises(ExchangeError) as caught:
        await provider.accept_delivery(delivery)
    assert caught.value.code == "forbidden"
    assert (await buyer.balance()).held_millicredits == PRICE
    await exchange.check_invariants()


async def test_accepting_a_delivery_twice_releases_once(exchange):
    provider, buyer = await shop_and_buyer(exchange)
    contract = await buyer.hire(await first_quote(buyer), {"text": "a"})
    delivery = await contract.wait_delivery(timeout_s=10)
    first = await contract.accept_delivery(delivery)
    # The exchange refuses the second acceptance (invalid_state); the client reads
    # the contract back and answers it released, as accepting is safe to repeat.
    again = await contract.accept_delivery(delivery)
    assert (first.state, again.state) == (ContractState.RELEASED, ContractState.RELEASED)
    with pytest.raises(ExchangeError) as caught:
        await buyer._request(
            AcceptDelivery,
            lambda header: AcceptDelivery(
                header=header,
                contract_id=delivery.contract_id,
                result_sha256=delivery.result_sha256,
            ),
        )
    assert caught.value.code == "invalid_state"
    fee = PRICE * 500 // 10_000
    assert (await provider.balance()).available_millicredits == PRICE - fee
    await exchange.check_invariants()


async def test_unknown_contracts_are_not_found(exchange):
    _, buyer = await shop_and_buyer(exchange)
    with pytest.raises(ExchangeError) as caught:
        await buyer.contract("c_" + "0" * 32)
    assert caught.value.code == "not_found"
