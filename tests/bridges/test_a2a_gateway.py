"""The A2A gateway (``agentx a2a``) as the official A2A SDK's client uses it.

Proves, on a real exchange (real NATS, a fresh database, a provider
``Agent`` serving a capability with an input schema), with the SDK's own
card resolver and client: the cards are signed by the exchange's key and
verify against the exchange id (a tampered card, or one checked against
another id, does not); a message to a capability's card buys the result
with escrow (buyer -price, provider +net) and returns it as the task's
artifact, through the states submitted → working → completed; bad messages
(unknown capability, a task failing the listing's schema, a price over
--max-price-credits, the lifetime budget spent, more tasks than the
concurrency bound) end ``rejected`` or ``failed`` with a clear message and
spend nothing. One test runs the real ``agentx a2a`` subprocess. The pure
parts (state mapping, parts to task, budget, the bounded task store) are
tested alone. Every money test ends with the exchange's ledger invariants.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import get_data_parts, get_text_parts, new_data_part, new_text_part
from a2a.server.context import ServerCallContext
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
)
from a2a.utils.signing import SignatureVerificationError

from agent_client import Agent, AgentKeys, OperatorClient
from agent_client.bridges.a2a_cards import card_verifier, verify_agent_card
from agent_client.bridges.a2a_gateway import (
    A2AGateway,
    BoundedTaskStore,
    GatewayConfig,
    GatewayLimits,
)
from agent_client.bridges.a2a_tasks import (
    BadMessage,
    LifetimeBudget,
    PurchaseStep,
    Reservation,
    TaskInput,
    schema_problem,
    task_for_schema,
    task_input,
    task_state_for,
)
from agent_client.exchange_address import ExchangeAddress, write_exchange_address
from tests.bridges.bridge_helpers import (
    BUYER_GRANT_MILLICREDITS,
    CAPABILITY,
    INPUT_SCHEMA,
    PRICE_MILLICREDITS,
    PROCESS_TIMEOUT_S,
    HeldUpper,
    approve_the_waiting_hire,
    buyer_needing_approval,
    serving_provider,
)
from tests.exchange.conftest import RunningExchange
from tests.portal.conftest import Harness

HTTP_TIMEOUT_S = 30.0


async def _available(agent: Agent) -> int:
    return (await agent.balance()).available_millicredits


@asynccontextmanager
async def _gateway(
    exchange: RunningExchange,
    buyer: Agent,
    exchange_keys: AgentKeys,
    *,
    budget_millicredits: int = 10_000,
    max_price_millicredits: int = 5_000,
    limits: GatewayLimits | None = None,
) -> AsyncIterator[A2AGateway]:
    config = GatewayConfig(
        budget_millicredits=budget_millicredits,
        max_price_millicredits=max_price_millicredits,
        limits=limits or GatewayLimits(),
    )
    gateway = A2AGateway(buyer, exchange_keys, config)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def _card(base_url: str, capability: str, exchange_id: str) -> AgentCard:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
        resolver = A2ACardResolver(http, f"{base_url}/agents/{capability}")
        return await resolver.get_agent_card(signature_verifier=card_verifier(exchange_id))


def _message(*parts: Part, metadata: dict[str, Any] | None = None) -> SendMessageRequest:
    message = Message(
        role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=list(parts), metadata=metadata
    )
    return SendMessageRequest(message=message)


async def _send(
    card: AgentCard, request: SendMessageRequest, *, streaming: bool = False
) -> tuple[Task, list[int]]:
    """The task as the SDK's client ends with it, and every state it reported."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
        factory = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http))
        client = factory.create(card)
        task: Task | None = None
        states: list[int] = []
        async for response in client.send_message(request):
            if response.HasField("task"):
                task = response.task
                states.append(task.status.state)
            elif response.HasField("status_update"):
                states.append(response.status_update.status.state)
        assert task is not None
        if streaming:
            # The stream ends at the terminal state; the task itself is read once more.
            task = await client.get_task(GetTaskRequest(id=task.id))
        await client.close()
        return task, states


def _status_text(task: Task) -> str:
    return " ".join(get_text_parts(task.status.message.parts))


async def test_a_client_verifies_the_card_and_buys_the_result_with_escrow(
    exchange: RunningExchange, exchange_keys: AgentKeys
):
    provider = await serving_provider(exchange)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    buyer_before, provider_before = await _available(buyer), await _available(provider)
    async with _gateway(exchange, buyer, exchange_keys) as gateway:
        card = await _card(gateway.base_url, CAPABILITY, exchange.worker.exchange_id)
        assert [skill.id for skill in card.skills] == [CAPABILITY]
        assert list(card.skills[0].examples) == ['{"text": "hello"}']
        assert card.supported_interfaces[0].url == f"{gateway.base_url}/agents/{CAPABILITY}"
        # The same card checked against another id, or changed, does not verify.
        with pytest.raises(SignatureVerificationError):
            verify_agent_card(card, AgentKeys.generate().agent_id)
        tampered = AgentCard()
        tampered.CopyFrom(card)
        tampered.supported_interfaces[0].url = "http://127.0.0.1:1/agents/text.upper"
        with pytest.raises(SignatureVerificationError):
            verify_agent_card(tampered, exchange.worker.exchange_id)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            index = await A2ACardResolver(http, gateway.base_url).get_agent_card(
                signature_verifier=card_verifier(exchange.worker.exchange_id)
            )
        assert [skill.id for skill in index.skills] == [CAPABILITY]

        task, _ = await _send(card, _message(new_data_part({"text": "hello"})))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED, _status_text(task)
        assert get_data_parts(task.artifacts[0].parts) == [{"upper": "HELLO"}]
        contract_id = task.artifacts[0].metadata["contract_id"]
        assert gateway.budget.spent_millicredits == PRICE_MILLICREDITS
        assert gateway.budget.reserved_millicredits == 0
    contract = await buyer.contract(contract_id)
    assert contract.state.value == "released"
    assert await _available(buyer) == buyer_before - PRICE_MILLICREDITS
    net_millicredits = PRICE_MILLICREDITS - contract.fee_millicredits
    assert await _available(provider) == provider_before + net_millicredits
    await exchange.check_invariants()


async def test_text_parts_fill_the_text_field_and_the_stream_shows_each_state(
    exchange: RunningExchange, exchange_keys: AgentKeys
):
    await serving_provider(exchange)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    async with _gateway(exchange, buyer, exchange_keys) as gateway:
        card = await _card(gateway.base_url, CAPABILITY, exchange.worker.exchange_id)
        request = _message(new_text_part("shout"))
        task, states = await _send(card, request, streaming=True)
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, _status_text(task)
    assert get_data_parts(task.artifacts[0].parts) == [{"upper": "SHOUT"}]
    assert states[0] == TaskState.TASK_STATE_SUBMITTED
    assert TaskState.TASK_STATE_WORKING in states
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    await exchange.check_invariants()


async def test_bad_messages_end_rejected_or_failed_and_spend_nothing(
    exchange: RunningExchange, exchange_keys: AgentKeys
):
    await serving_provider(exchange)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    before = await _available(buyer)
    async with _gateway(exchange, buyer, exchange_keys) as gateway:
        card = await _card(gateway.base_url, CAPABILITY, exchange.worker.exchange_id)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            missing = await http.get(
                f"{gateway.base_url}/agents/no.such/.well-known/agent-card.json"
            )
        assert missing.status_code == 404
        index = AgentCard()
        index.CopyFrom(card)
        index.supported_interfaces[0].url = f"{gateway.base_url}/"
        unknown, _ = await _send(
            index, _message(new_data_part({"text": "x"}), metadata={"capability": "no.such"})
        )
        assert unknown.status.state == TaskState.TASK_STATE_REJECTED
        assert "no active listing for 'no.such'" in _status_text(unknown)
        too_long, _ = await _send(card, _message(new_data_part({"text": "x" * 200})))
        assert too_long.status.state == TaskState.TASK_STATE_FAILED
        assert "does not match the listing's input schema" in _status_text(too_long)
        assert "input schema: text: " in _status_text(too_long)
        mixed, _ = await _send(card, _message(new_data_part({"text": "a"}), new_text_part("b")))
        assert mixed.status.state == TaskState.TASK_STATE_FAILED
        assert gateway.budget.spent_millicredits == 0
    async with _gateway(exchange, buyer, exchange_keys, max_price_millicredits=1_000) as gateway:
        card = await _card(gateway.base_url, CAPABILITY, exchange.worker.exchange_id)
        dear, _ = await _send(card, _message(new_data_part({"text": "hi"})))
        assert dear.status.state == TaskState.TASK_STATE_REJECTED
        assert "--max-price-credits" in _status_text(dear)
    async with _gateway(exchange, buyer, exchange_keys, budget_millicredits=3_000) as gateway:
        card = await _card(gateway.base_url, CAPABILITY, exchange.worker.exchange_id)
        first, _ = await _send(card, _message(new_data_part({"text": "one"})))
        assert first.status.state == TaskState.TASK_STATE_COMPLETED, _status_text(first)
        second, _ = await _send(card, _message(new_data_part({"text": "two"})))
        assert second.status.state == TaskState.TASK_STATE_REJECTED
        assert "lifetime budget (--budget-credits) has 1000 of 3000" in _status_text(second)
    assert await _available(buyer) == before - PRICE_MILLICREDITS
    await exchange.check_invariants()


async def test_more_tasks_than_the_bound_at_once_are_rejected(
    exchange: RunningExchange, exchange_keys: AgentKeys
):
    held = HeldUpper()
    await serving_provider(exchange, held)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    limits = GatewayLimits(tasks_running_max=1)
    async with _gateway(exchange, buyer, exchange_keys, limits=limits) as gateway:
        card = await _card(gateway.base_url, CAPABILITY, exchange.worker.exchange_id)
        first = asyncio.create_task(_send(card, _message(new_data_part({"text": "one"}))))
        await asyncio.wait_for(held.started.wait(), HTTP_TIMEOUT_S)
        busy, _ = await _send(card, _message(new_data_part({"text": "two"})))
        assert busy.status.state == TaskState.TASK_STATE_REJECTED
        assert "at most 1 tasks at once" in _status_text(busy)
        held.release.set()
        done, _ = await first
        assert done.status.state == TaskState.TASK_STATE_COMPLETED, _status_text(done)
    await exchange.check_invariants()


async def test_a_cancel_before_the_hire_spends_nothing_and_after_it_the_contract_runs_on(
    exchange: RunningExchange, exchange_keys: AgentKeys
):
    held = HeldUpper()
    silent = await exchange.agent()
    await silent.advertise("text.silent", description="Never quotes.", price_millicredits=1_000)
    await serving_provider(exchange, held)
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    limits = GatewayLimits(quote_timeout_s=5.0)
    async with (
        _gateway(exchange, buyer, exchange_keys, limits=limits) as gateway,
        httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http,
    ):
        factory = ClientFactory(ClientConfig(streaming=False, polling=True, httpx_client=http))
        silent_card = await _card(gateway.base_url, "text.silent", exchange.worker.exchange_id)
        client = factory.create(silent_card)
        request = _message(new_data_part({"x": 1}))
        [response] = [each async for each in client.send_message(request)]
        canceled = await client.cancel_task(CancelTaskRequest(id=response.task.id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        assert "nothing was spent" in _status_text(canceled)
        card = await _card(gateway.base_url, CAPABILITY, exchange.worker.exchange_id)
        client = factory.create(card)
        request = _message(new_data_part({"text": "late"}))
        [response] = [each async for each in client.send_message(request)]
        await asyncio.wait_for(held.started.wait(), HTTP_TIMEOUT_S)
        await asyncio.sleep(0.2)
        canceled = await client.cancel_task(CancelTaskRequest(id=response.task.id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        assert "was hired" in _status_text(canceled)
        held.release.set()
        # The gateway follows the contract to its end: the delivery is accepted.
        for _ in range(600):
            if gateway.budget.reserved_millicredits == 0:
                break
            await asyncio.sleep(0.05)
        assert gateway.budget.spent_millicredits == PRICE_MILLICREDITS
    assert await _available(buyer) == BUYER_GRANT_MILLICREDITS - PRICE_MILLICREDITS
    await exchange.check_invariants()


async def test_oversized_requests_are_refused_before_any_handler(
    exchange: RunningExchange, exchange_keys: AgentKeys
):
    buyer = await exchange.funded_agent(BUYER_GRANT_MILLICREDITS)
    limits = GatewayLimits()
    body = b"{" + b" " * limits.request_bytes_max + b"}"
    async with (
        _gateway(exchange, buyer, exchange_keys, limits=limits) as gateway,
        httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http,
    ):
        response = await http.post(f"{gateway.base_url}/agents/{CAPABILITY}", content=body)
    assert response.status_code == 413


async def test_agentx_a2a_runs_as_a_subprocess_and_sells_through_signed_cards(
    exchange: RunningExchange, exchange_keys: AgentKeys, tmp_path: Path
):
    provider = await serving_provider(exchange)
    buyer_keys = AgentKeys.generate()
    buyer_keys.save(tmp_path / "buyer.seed")
    exchange_keys.save(tmp_path / "exchange.seed")
    operator = await exchange.agent(exchange.operator_keys)
    await OperatorClient(operator).mint(buyer_keys.agent_id, BUYER_GRANT_MILLICREDITS, reason="t")
    address = ExchangeAddress(nats_url=exchange.nats_url, exchange_id=exchange.worker.exchange_id)
    write_exchange_address(tmp_path / "exchange.json", address)
    provider_before = await _available(provider)
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "exchange.entrypoints.cli", "a2a"],
        *["--key", str(tmp_path / "buyer.seed"), "--card-key", str(tmp_path / "exchange.seed")],
        *["--address-file", str(tmp_path / "exchange.json"), "--budget-credits", "5"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), PROCESS_TIMEOUT_S)
        assert line, (await process.stderr.read()).decode() if process.stderr else ""
        base_url = line.decode().rsplit(" ", 1)[-1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        card = await _card(base_url, CAPABILITY, exchange.worker.exchange_id)
        task, _ = await _send(card, _message(new_data_part({"text": "far"})))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED, _status_text(task)
        assert get_data_parts(task.artifacts[0].parts) == [{"upper": "FAR"}]
        contract_id = task.artifacts[0].metadata["contract_id"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        return_code = await asyncio.wait_for(process.wait(), PROCESS_TIMEOUT_S)
    assert return_code == 0
    buyer = await exchange.agent(buyer_keys)
    contract = await buyer.contract(contract_id)
    assert await _available(buyer) == BUYER_GRANT_MILLICREDITS - PRICE_MILLICREDITS
    net_millicredits = PRICE_MILLICREDITS - contract.fee_millicredits
    assert await _available(provider) == provider_before + net_millicredits
    await exchange.check_invariants()


async def test_a_hire_above_the_approval_threshold_waits_in_auth_required_for_the_human(
    harness: Harness, exchange_keys: AgentKeys
):
    user, buyer = await buyer_needing_approval(harness, approval_threshold_millicredits=1_000)
    limits = GatewayLimits(approval_poll_interval_s=0.2)
    config = GatewayConfig(budget_millicredits=10_000, max_price_millicredits=5_000, limits=limits)
    gateway = A2AGateway(buyer, exchange_keys, config)
    await gateway.start()
    try:
        card = await _card(gateway.base_url, CAPABILITY, harness.worker.exchange_id)
        waiting, _ = await _send(card, _message(new_data_part({"text": "please"})))
        assert waiting.status.state == TaskState.TASK_STATE_AUTH_REQUIRED, _status_text(waiting)
        assert "approve it in the portal" in _status_text(waiting)
        assert (await buyer.balance()).held_millicredits == 0
        await approve_the_waiting_hire(harness, user)
        done = await _wait_terminal(card, waiting.id)
        assert done.status.state == TaskState.TASK_STATE_COMPLETED, _status_text(done)
        assert get_data_parts(done.artifacts[0].parts) == [{"upper": "PLEASE"}]
    finally:
        await gateway.stop()
    assert await _available(buyer) == BUYER_GRANT_MILLICREDITS - PRICE_MILLICREDITS
    await harness.check_invariants()


async def _wait_terminal(card: AgentCard, task_id: str) -> Task:
    terminal = {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_CANCELED,
    }
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
        client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
        for _ in range(300):
            task = await client.get_task(GetTaskRequest(id=task_id))
            if task.status.state in terminal:
                return task
            await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} did not end")


# --- the pure parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "state"),
    [
        (PurchaseStep.RFQ_SENT, TaskState.TASK_STATE_SUBMITTED),
        (PurchaseStep.WAITING_FOR_APPROVAL, TaskState.TASK_STATE_AUTH_REQUIRED),
        (PurchaseStep.HIRED, TaskState.TASK_STATE_WORKING),
        (PurchaseStep.RELEASED, TaskState.TASK_STATE_COMPLETED),
        (PurchaseStep.NO_QUOTE, TaskState.TASK_STATE_FAILED),
        (PurchaseStep.REFUNDED, TaskState.TASK_STATE_FAILED),
        (PurchaseStep.DELIVERY_FAILED, TaskState.TASK_STATE_FAILED),
        (PurchaseStep.BAD_TASK, TaskState.TASK_STATE_FAILED),
        (PurchaseStep.OVER_CEILING, TaskState.TASK_STATE_REJECTED),
        (PurchaseStep.OVER_BUDGET, TaskState.TASK_STATE_REJECTED),
        (PurchaseStep.REFUSED_BY_CONTROLS, TaskState.TASK_STATE_REJECTED),
        (PurchaseStep.UNKNOWN_CAPABILITY, TaskState.TASK_STATE_REJECTED),
        (PurchaseStep.BUSY, TaskState.TASK_STATE_REJECTED),
        (PurchaseStep.CANCELED_BEFORE_HIRE, TaskState.TASK_STATE_CANCELED),
    ],
)
def test_each_purchase_step_is_one_task_state(step: PurchaseStep, state: int):
    assert task_state_for(step) == state
    assert TaskState.TASK_STATE_INPUT_REQUIRED not in {
        task_state_for(each) for each in PurchaseStep
    }


def test_parts_become_the_task_or_say_why_not():
    data = task_input([new_data_part({"count": 3, "items": [1.5, 2]})], parts_max=8)
    assert data.data == {"count": 3, "items": [1.5, 2]}
    assert type(data.data["count"]) is int
    text = task_input([new_text_part("a"), new_text_part("b")], parts_max=8)
    assert task_for_schema(text, INPUT_SCHEMA) == {"text": "a\nb"}
    with pytest.raises(BadMessage, match="structured input"):
        task_for_schema(TaskInput(text="a"), {"type": "object", "properties": {"n": {}}})
    with pytest.raises(BadMessage, match="no parts"):
        task_input([], parts_max=8)
    with pytest.raises(BadMessage, match="at most 2"):
        task_input([new_text_part("a")] * 3, parts_max=2)


def test_a_task_is_checked_against_the_input_schema_in_bounded_work():
    assert schema_problem({"text": "ok"}, INPUT_SCHEMA, time_budget_s=2.0) is None
    pattern = {"properties": {"text": {"pattern": "^[a-z]+$"}}}
    problem = schema_problem({"text": "a1"}, pattern, time_budget_s=2.0)
    assert problem == (
        "the task does not match the listing's input schema: text: 'a1' does not match '^[a-z]+$'"
    )
    # Exponential for jsonschema (both branches evaluate the rest): stopped at its deadline.
    exploding = {"anyOf": [{"not": {"items": {"$ref": "#"}}}, {"items": {"$ref": "#"}}]}
    deep: list[Any] = []
    for _ in range(18):
        deep = [deep]
    problem = schema_problem(deep, exploding, time_budget_s=0.05)
    assert problem == (
        "the listing's input schema is too complex to check: the check took over 0.05 s"
    )
    backreference = {"pattern": r"(a)\1"}
    problem = schema_problem("aa", backreference, time_budget_s=2.0)
    assert problem is not None
    assert problem.startswith("the listing's input schema cannot be checked: RE2")


def test_the_lifetime_budget_counts_held_and_spent_money():
    budget = LifetimeBudget(5_000)
    first = Reservation(budget, 3_000)
    assert budget.available_millicredits == 2_000
    first.shrink_to(2_000)
    assert budget.available_millicredits == 3_000
    first.spend()
    second = Reservation(budget, 3_000)
    second.release()
    assert (budget.spent_millicredits, budget.reserved_millicredits) == (2_000, 0)
    with pytest.raises(AssertionError):
        Reservation(budget, 3_001)


async def test_the_task_store_forgets_the_oldest_finished_tasks_first():
    store = BoundedTaskStore(2)
    context = ServerCallContext()
    running = Task(
        id="running", context_id="c", status=TaskStatus(state=TaskState.TASK_STATE_WORKING)
    )
    await store.save(running, context)
    for index in range(3):
        done = TaskStatus(state=TaskState.TASK_STATE_COMPLETED)
        await store.save(Task(id=f"done-{index}", context_id="c", status=done), context)
    assert await store.get("running", context) is not None
    assert await store.get("done-0", context) is None
    assert await store.get("done-1", context) is None
    assert await store.get("done-2", context) is not None


def test_a_card_json_round_trip_keeps_its_signature_valid(exchange_keys: AgentKeys):
    from a2a.client.card_resolver import parse_agent_card
    from a2a.server.request_handlers.response_helpers import agent_card_to_dict

    from agent_client.bridges.a2a_cards import capability_card, sign_card
    from agent_client.protocol import Listing

    listing = Listing(
        listing_id="l1",
        provider_id=exchange_keys.agent_id,
        capability="text.upper",
        description="Upper-cases — ünïcode text.",
        price_millicredits=500,
        input_schema=INPUT_SCHEMA,
        output_schema={},
        version="1.0.0",
        status="active",
        updated_at_ms=1,
    )
    card = sign_card(capability_card([listing], base_url="http://127.0.0.1:9"), exchange_keys)
    served = json.loads(json.dumps(agent_card_to_dict(card)))
    verify_agent_card(parse_agent_card(served), exchange_keys.agent_id)
    header = json.loads(_b64url_decode(served["signatures"][0]["protected"]))
    assert header == {"alg": "EdDSA", "kid": exchange_keys.agent_id, "typ": "JOSE"}


def _b64url_decode(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
