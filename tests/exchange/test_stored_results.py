"""Large results are stored by the exchange only: read by their buyer, never replaced.

Over real NATS with connection auth, on SQLite and PostgreSQL: a 1 MiB
result, checked against the provider's output schema, and a 1 MiB sealed
result each reach the buyer intact through ``contract.upload`` and
``contract.result``; a third agent asking for a stored result gets the same
``not_found`` as for a contract that does not exist, and the provider gets
``forbidden``; once delivered, an upload is refused (``invalid_state``) and
the buyer still reads what was delivered; a delivery whose chunks are
missing or whose size disagrees with them is refused (``result_incomplete``)
and changes nothing; repeating or replacing an upload leaves the bytes last
sent; and an agent's own NATS connection can neither subscribe to the
result subjects, nor publish there, nor ask JetStream for a stored message:
the server reports each permission violation to the client. Hand-made
requests are signed with the agents' own keys. Money tests end with the
ledger invariants.
"""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import pytest
from nats.js.api import DiscardPolicy

from agent_client import AgentKeys, QuoteRequest, limits, subjects
from agent_client.protocol import (
    ChunkStoredReply,
    ContractReply,
    Deliver,
    ErrorReply,
    GetResult,
    Reply,
    ResultChunkReply,
    ResultRef,
    UploadResult,
    json_encoder,
)
from agent_client.signing import b64decode, b64encode, sha256_hex
from agent_client.transport import connect_nats
from broker.streams import RESULT_STREAM, ensure_result_stream

PRICE = 5_000
GRANT = 50_000
ONE_MEBIBYTE = 1024 * 1024
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}
# The violations nats-server reports arrive on the connection a little later.
ERROR_WAIT_TIMEOUT_S = 5.0


def numbered_text(length: int) -> str:
    """Text whose every 8 characters differ, so a chunk out of place shows."""
    return "".join(f"{number:07d}," for number in range(length // 8 + 1))[:length]


async def hired(exchange, handler, *, seal_result=False):
    provider = await exchange.agent()
    await provider.advertise(
        "text.long", description="l", price_millicredits=PRICE, output_schema=OUTPUT_SCHEMA
    )
    await provider.serve("text.long", handler, pricing=PRICE)
    buyer = await exchange.funded_agent(GRANT)
    quotes = await buyer.request_quotes(
        QuoteRequest("text.long", "x", budget_millicredits=PRICE, quotes_max=1)
    )
    contract = await buyer.hire(quotes[0], {"text": "hi"}, seal_result=seal_result)
    return provider, buyer, contract


async def hired_with_a_large_result(exchange):
    text = numbered_text(ONE_MEBIBYTE)

    async def large(task):
        return {"text": text}

    provider, buyer, contract = await hired(exchange, large)
    delivery = await contract.wait_delivery(timeout_s=20)
    assert delivery.result == {"text": text}
    return provider, buyer, contract, delivery


async def upload(exchange, provider, contract_id: str, result_bytes: bytes, index: int) -> Reply:
    chunk_bytes_max = limits.RESULT_CHUNK_BYTES_MAX
    chunk = result_bytes[index * chunk_bytes_max : (index + 1) * chunk_bytes_max]
    return await exchange.signed_request(
        exchange.keys_of(provider),
        UploadResult,
        contract_id=contract_id,
        index=index,
        chunk_count=-(-len(result_bytes) // chunk_bytes_max),
        size_bytes=len(result_bytes),
        chunk=b64encode(chunk),
    )


async def deliver_stored(
    exchange, provider, contract_id: str, reference: ResultRef, result_sha256: str
) -> Reply:
    return await exchange.signed_request(
        exchange.keys_of(provider),
        Deliver,
        contract_id=contract_id,
        result_sha256=result_sha256,
        result_ref=reference,
    )


async def read_chunk(exchange, agent, contract_id: str, index: int) -> Reply:
    return await exchange.signed_request(
        exchange.keys_of(agent), GetResult, contract_id=contract_id, index=index
    )


async def read_stored_result(exchange, buyer, contract_id: str) -> bytes:
    first = await read_chunk(exchange, buyer, contract_id, 0)
    assert isinstance(first, ResultChunkReply)
    chunks = [b64decode(first.chunk)]
    for index in range(1, first.chunk_count):
        answer = await read_chunk(exchange, buyer, contract_id, index)
        assert isinstance(answer, ResultChunkReply) and answer.index == index
        chunks.append(b64decode(answer.chunk))
    return b"".join(chunks)


def refusal(reply: Reply) -> str:
    assert isinstance(reply, ErrorReply), reply
    return reply.code


async def test_a_one_mebibyte_result_checked_against_its_schema_reaches_the_buyer(exchange):
    _, buyer, contract, delivery = await hired_with_a_large_result(exchange)
    view = await buyer.contract(contract.contract_id)
    assert view.state == "delivered"
    assert view.result_ref == ResultRef(
        size_bytes=len(b'{"text":""}') + ONE_MEBIBYTE, chunk_count=9
    )
    assert bytes(view.result) == b"null", "a stored result is not repeated inline"
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_a_one_mebibyte_sealed_result_reaches_the_buyer_and_only_ciphertext_is_stored(
    exchange,
):
    text = numbered_text(ONE_MEBIBYTE)

    async def large(task):
        return {"text": text}

    _, buyer, contract = await hired(exchange, large, seal_result=True)
    delivery = await contract.wait_delivery(timeout_s=20)
    assert delivery.result == {"text": text}
    stored = await read_stored_result(exchange, buyer, contract.contract_id)
    assert sha256_hex(stored) == delivery.result_sha256
    # The store holds the sealed box: a JSON string of base64url, never the text.
    assert stored.startswith(b'"') and b"0000001," not in stored
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_a_third_agent_asking_for_a_stored_result_is_refused_and_learns_nothing(exchange):
    provider, _, contract, delivery = await hired_with_a_large_result(exchange)
    stranger = await exchange.agent()
    made_up_id = "c_" + "0" * 32
    asked = await read_chunk(exchange, stranger, contract.contract_id, 0)
    asked_for_nothing = await read_chunk(exchange, stranger, made_up_id, 0)
    assert isinstance(asked, ErrorReply) and isinstance(asked_for_nothing, ErrorReply)
    assert asked.code == "not_found"
    assert (asked.code, asked.message, asked.contract_id) == (
        asked_for_nothing.code,
        asked_for_nothing.message,
        asked_for_nothing.contract_id,
    )
    overwrite = await upload(exchange, stranger, contract.contract_id, b"x" * ONE_MEBIBYTE, 0)
    assert refusal(overwrite) == "not_found"
    # The provider is a party: it may know the contract, not read its result.
    assert refusal(await read_chunk(exchange, provider, contract.contract_id, 0)) == "forbidden"
    operator = await exchange.agent(exchange.operator_keys)
    assert isinstance(
        await read_chunk(exchange, operator, contract.contract_id, 0), ResultChunkReply
    )
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_the_provider_cannot_replace_a_delivered_result(exchange):
    provider, buyer, contract, delivery = await hired_with_a_large_result(exchange)
    forged = json_encoder.encode({"text": "y" * ONE_MEBIBYTE})
    for index in (0, 8):
        replaced = await upload(exchange, provider, contract.contract_id, forged, index)
        assert refusal(replaced) == "invalid_state"
    stored = await read_stored_result(exchange, buyer, contract.contract_id)
    assert sha256_hex(stored) == delivery.result_sha256
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_a_delivery_whose_chunks_are_missing_or_of_another_size_is_refused(exchange):
    gate = asyncio.Event()

    async def by_hand(task):
        await gate.wait()

    provider, buyer, contract = await hired(exchange, by_hand)
    contract_id = contract.contract_id
    result_bytes = json_encoder.encode({"text": numbered_text(300_000)})
    result_sha256 = sha256_hex(result_bytes)
    reference = ResultRef(size_bytes=len(result_bytes), chunk_count=3)

    nothing_stored = await deliver_stored(exchange, provider, contract_id, reference, result_sha256)
    assert refusal(nothing_stored) == "result_incomplete"
    assert "chunk 0" in nothing_stored.message
    for index in (0, 1):
        assert isinstance(
            await upload(exchange, provider, contract_id, result_bytes, index), ChunkStoredReply
        )
    last_missing = await deliver_stored(exchange, provider, contract_id, reference, result_sha256)
    assert refusal(last_missing) == "result_incomplete" and "chunk 2" in last_missing.message
    assert isinstance(
        await upload(exchange, provider, contract_id, result_bytes, 2), ChunkStoredReply
    )

    shorter = ResultRef(size_bytes=len(result_bytes) - 1, chunk_count=3)
    size_disagrees = await deliver_stored(exchange, provider, contract_id, shorter, result_sha256)
    assert refusal(size_disagrees) == "result_incomplete"
    more_chunks = ResultRef(size_bytes=len(result_bytes), chunk_count=4)
    layout_wrong = await deliver_stored(exchange, provider, contract_id, more_chunks, result_sha256)
    assert refusal(layout_wrong) == "invalid_request"
    wrong_hash = await deliver_stored(exchange, provider, contract_id, reference, "0" * 64)
    assert refusal(wrong_hash) == "hash_mismatch"
    assert (await buyer.contract(contract_id)).state == "open", "no refusal changed anything"

    delivered = await deliver_stored(exchange, provider, contract_id, reference, result_sha256)
    assert isinstance(delivered, ContractReply) and delivered.contract.state == "delivered"
    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result_sha256 == result_sha256
    await contract.accept_delivery(delivery)
    gate.set()
    await exchange.check_invariants()


async def test_a_repeated_or_replaced_upload_leaves_the_bytes_last_sent(exchange):
    gate = asyncio.Event()

    async def by_hand(task):
        await gate.wait()

    provider, _, contract = await hired(exchange, by_hand)
    contract_id = contract.contract_id
    first = json_encoder.encode({"text": numbered_text(200_000)})
    second = json_encoder.encode({"text": numbered_text(200_000).upper().replace(",", ";")})
    assert len(first) == len(second) and first != second
    # A retry after a timeout sends the same chunk again; then the provider
    # changes its mind twice within JetStream's duplicate window (A, B, A).
    for result_bytes in (first, first, second, first):
        for index in (0, 1):
            stored = await upload(exchange, provider, contract_id, result_bytes, index)
            assert isinstance(stored, ChunkStoredReply)
    reference = ResultRef(size_bytes=len(first), chunk_count=2)
    delivered = await deliver_stored(exchange, provider, contract_id, reference, sha256_hex(first))
    assert isinstance(delivered, ContractReply), delivered
    delivery = await contract.wait_delivery(timeout_s=10)
    assert delivery.result == {"text": numbered_text(200_000)}
    await contract.accept_delivery(delivery)
    gate.set()
    await exchange.check_invariants()


async def test_an_agent_connection_can_neither_read_nor_write_the_result_stream(exchange, nats_url):
    _, buyer, contract, delivery = await hired_with_a_large_result(exchange)
    chunk_subject = subjects.result_chunk(contract.contract_id, 0)
    keys = AgentKeys.generate()
    violations: list[str] = []
    all_reported = asyncio.Event()

    async def on_error(error: Exception) -> None:
        violations.append(str(error).lower())
        if len(violations) == 3:
            all_reported.set()

    client = await nats.connect(
        nats_url,
        nkeys_seed_str=keys.seed_text().decode(),
        inbox_prefix=subjects.inbox_prefix(keys.agent_id),
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=5,
    )
    try:
        received = await client.subscribe(f"{subjects.ROOT}.results.>")
        await client.publish(chunk_subject, b'"forged"')
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await client.request(
                f"$JS.API.STREAM.MSG.GET.{RESULT_STREAM}",
                json_encoder.encode({"last_by_subj": chunk_subject}),
                timeout=1,
            )
        await asyncio.wait_for(all_reported.wait(), ERROR_WAIT_TIMEOUT_S)
        assert received.pending_msgs == 0
    finally:
        await client.close()
    assert any(f'subscription to "{subjects.ROOT}.results.>"' in text for text in violations)
    assert any(f'publish to "{chunk_subject}"' in text for text in violations)
    assert any(
        f'publish to "$js.api.stream.msg.get.{RESULT_STREAM.lower()}"' in text
        for text in violations
    )
    assert all("permissions violation" in text for text in violations)
    stored = await read_stored_result(exchange, buyer, contract.contract_id)
    assert sha256_hex(stored) == delivery.result_sha256, "the forged publish changed nothing"
    await contract.accept_delivery(delivery)
    await exchange.check_invariants()


async def test_the_result_stream_keeps_one_message_per_chunk_and_refuses_deletes(
    exchange, nats_url, exchange_keys
):
    client = await connect_nats(nats_url, exchange_keys, name="test-result-stream")
    try:
        js = client.jetstream(timeout=5)
        await ensure_result_stream(js)  # the worker made it: updating it again works
        config = (await js.stream_info(RESULT_STREAM)).config
    finally:
        await client.close()
    assert config.subjects == [subjects.RESULT_CHUNKS]
    assert config.max_msgs_per_subject == 1
    assert config.discard == DiscardPolicy.NEW
    assert config.deny_delete and config.deny_purge
    assert config.max_age == limits.CONTRACT_RECORD_LIFETIME_S
    assert limits.RESULT_CHUNK_BYTES_MAX < (config.max_msg_size or 0) < limits.MESSAGE_BYTES_MAX


async def test_only_a_few_stored_results_are_checked_in_memory_at_once(exchange, monkeypatch):
    from exchange.limits import STORED_RESULT_DELIVERIES_MAX
    from exchange.use_cases import contract_lifecycle as contract_use_cases

    running = 0
    most_at_once = 0
    read = contract_use_cases.read_stored_result

    async def counting_read(*arguments):
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        try:
            await asyncio.sleep(0.05)  # hold the slot a while, as a large read does
            return await read(*arguments)
        finally:
            running -= 1

    monkeypatch.setattr(contract_use_cases, "read_stored_result", counting_read)
    deliveries = 3 * STORED_RESULT_DELIVERIES_MAX
    text = numbered_text(limits.RESULT_BYTES_MAX + 1_000)

    async def large(task):
        return {"text": text}

    provider = await exchange.agent()
    await provider.advertise("text.long", description="l", price_millicredits=PRICE)
    await provider.serve("text.long", large, pricing=PRICE)
    buyers = [await exchange.funded_agent(PRICE) for _ in range(deliveries)]

    async def deal(buyer):
        [quote] = await buyer.request_quotes(
            QuoteRequest("text.long", "x", budget_millicredits=PRICE, quotes_max=1)
        )
        contract = await buyer.hire(quote, {"text": "hi"})
        delivery = await contract.wait_delivery(timeout_s=30)
        assert delivery.result == {"text": text}

    await asyncio.gather(*(deal(buyer) for buyer in buyers))
    assert 1 < most_at_once <= STORED_RESULT_DELIVERIES_MAX
    await exchange.check_invariants()
