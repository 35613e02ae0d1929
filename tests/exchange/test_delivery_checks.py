"""Deliveries are checked before they count: schema, hash, size, sealing.

Over real NATS on SQLite and PostgreSQL: a result that does not match the
output JSON Schema the provider advertised is refused (``schema_mismatch``)
and the provider can deliver a correct one before the deadline; a result
larger than the inline limit is uploaded to the exchange in chunks and read
back by the buyer, with its hash checked at both ends; a sealed result reaches the buyer
readable while the exchange stores only ciphertext; a delivery that is not
sealed when the buyer asked for sealing is refused. Money tests end with the
ledger invariants.
"""

from __future__ import annotations

import asyncio

import pytest

from agent_client import ExchangeError, QuoteRequest, limits

PRICE = 5_000
GRANT = 50_000
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}


async def hired(exchange, handler, *, seal_result=False, output_schema=None):
    provider = await exchange.agent()
    await provider.advertise(
        "text.upper",
        description="u",
        price_millicredits=PRICE,
        output_schema=output_schema or {},
    )
    await provider.serve("text.upper", handler, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    quotes = await buyer.request_quotes(
        QuoteRequest("text.upper", "x", budget_millicredits=PRICE, quotes_max=1)
    )
    contract = await buyer.hire(quotes[0], {"text": "hi"}, seal_result=seal_result)
    return provider, buyer, contract


async def test_a_result_off_the_advertised_schema_is_refused_and_can_be_redone(exchange):
    attempts: list[str] = []
    delivered_wrong = asyncio.Event()

    async def wrong_then_right(task):
        attempts.append("wrong")
        delivered_wrong.set()
        return {"txt": 42}

    provider, buyer, contract = await hired(exchange, wrong_then_right, output_schema=OUTPUT_SCHEMA)
    await delivered_wrong.wait()
    await asyncio.sleep(0.3)
    view = await buyer.contract(contract.contract_id)
    assert view.state == "open", "the wrong result must not count as delivered"
    with pytest.raises(ExchangeError) as caught:
        await provider.deliver(contract.contract_id, {"text": 7})
    assert caught.value.code == "schema_mismatch"
    assert "text" in caught.value.message
    await provider.deliver(contract.contract_id, {"text": "HI"})
    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result == {"text": "HI"}
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_a_large_result_is_stored_by_the_exchange_in_chunks(exchange):
    big_text = "x" * (limits.RESULT_BYTES_MAX + 1000)

    async def big(task):
        return {"text": big_text}

    _, buyer, contract = await hired(exchange, big, output_schema=OUTPUT_SCHEMA)
    delivery = await contract.wait_delivery(timeout_s=15)
    assert delivery.result == {"text": big_text}
    view = await buyer.contract(contract.contract_id)
    assert view.result_ref is not None
    assert view.result_ref.size_bytes == len(b'{"text":""}') + len(big_text)
    assert view.result_ref.chunk_count == -(
        -view.result_ref.size_bytes // limits.RESULT_CHUNK_BYTES_MAX
    )
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_a_sealed_result_is_readable_by_the_buyer_only(exchange):
    _, buyer, contract = await hired(exchange, _upper, seal_result=True)
    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result == {"text": "HI"}
    # The exchange stored only the sealed box: a JSON string of base64, not
    # the result. (Base64 may spell "HI" by chance, but never a quote.)
    evidence = await buyer.evidence(contract.contract_id)
    stored = bytes(evidence.contract.result)
    assert stored.startswith(b'"') and b'\\"text\\"' not in stored and b'"text"' not in stored
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_an_unsealed_delivery_is_refused_when_the_buyer_asked_for_sealing(exchange):
    gate = asyncio.Event()

    async def stuck(task):
        await gate.wait()
        return {"text": "never"}

    provider, buyer, contract = await hired(exchange, stuck, seal_result=True)
    with pytest.raises(ExchangeError) as caught:
        await provider.deliver(contract.contract_id, {"text": "in clear"})
    assert caught.value.code == "invalid_request"
    assert (await buyer.contract(contract.contract_id)).state == "open"
    gate.set()
    await exchange.check_invariants()


async def _upper(task):
    return {"text": task["text"].upper()}


async def test_a_sealed_delivery_that_is_not_a_json_string_is_refused(exchange):
    import msgspec

    from agent_client.protocol import Deliver, ErrorReply
    from agent_client.signing import sha256_hex

    gate = asyncio.Event()

    async def stuck(task):
        await gate.wait()

    provider, buyer, contract = await hired(exchange, stuck, seal_result=True)
    not_a_string = b'{"a":1}'
    answer = await exchange.signed_request(
        exchange.keys_of(provider),
        Deliver,
        contract_id=contract.contract_id,
        result=msgspec.Raw(not_a_string),
        result_sha256=sha256_hex(not_a_string),
        sealed=True,
    )
    assert isinstance(answer, ErrorReply) and answer.code == "invalid_request"
    assert (await buyer.contract(contract.contract_id)).state == "open"
    gate.set()
    await exchange.check_invariants()
