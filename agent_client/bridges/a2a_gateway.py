"""The A2A gateway: signed Agent Cards for the exchange's listings; A2A messages buy them.

An HTTP server (Starlette under uvicorn, on loopback unless told otherwise)
built on the official ``a2a-sdk``::

    GET  /.well-known/agent-card.json                     the gateway's card: every capability
    GET  /agents/<capability>/.well-known/agent-card.json one capability's card
    POST /agents/<capability>                             JSON-RPC: message/send, message/stream,
                                                          tasks/get, tasks/cancel
    POST /                                                the same, the capability named in the
                                                          message metadata {"capability": ...}

The cards come from ``Agent.search`` (refreshed every ``refresh_interval_s``,
at most ``listings_max`` listings) and are signed with the card key
(:mod:`agent_client.bridges.a2a_cards`). A message becomes one purchase
under the gateway's own buyer key: its parts become the task
(:func:`~agent_client.bridges.a2a_tasks.task_input`), checked against each
listing's input schema; an RFQ goes out with the budget left
(``--max-price-credits`` per task, ``--budget-credits`` for the gateway's
life); the cheapest valid quote is hired; the delivery is awaited until the
contract's deadline, accepted, and returned as the task's artifact. The task
states follow :func:`~agent_client.bridges.a2a_tasks.task_state_for`.

Once a hire is sent it runs to its end in a task of its own, shielded from
the A2A client's cancel: the money a contract holds is always followed to
its outcome and counted against the lifetime budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from a2a.helpers import new_data_part, new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import DefaultServerCallContextBuilder, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskStore, TaskUpdater
from a2a.types import AgentCard, ListTasksRequest, ListTasksResponse, Task, TaskState
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_client import limits
from agent_client.agent import Agent
from agent_client.bridges.a2a_cards import (
    capability_card,
    capability_card_path,
    index_card,
    sign_card,
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
from agent_client.contracts import Contract
from agent_client.errors import (
    AgentClientError,
    ProtocolError,
    RefusedError,
    RejectedError,
    RequestTimeout,
)
from agent_client.http_listeners import listening_socket
from agent_client.keys import AgentKeys
from agent_client.offers import QuoteRequest, ReceivedQuote
from agent_client.protocol import ContractState, ErrorCode, Listing

__all__ = ["A2AGateway", "GatewayConfig", "GatewayLimits"]

logger = logging.getLogger(__name__)

_TERMINAL_STATES = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_REJECTED,
    }
)
# Refusals by the human's portal controls or the wallet: nothing was spent.
_CONTROL_REFUSALS = frozenset(
    {
        ErrorCode.BUDGET_EXCEEDED,
        ErrorCode.AGENT_FROZEN,
        ErrorCode.APPROVAL_REJECTED,
        ErrorCode.INSUFFICIENT_FUNDS,
    }
)


@dataclass(frozen=True, kw_only=True)
class GatewayLimits:
    """Every bound of the gateway, in one place."""

    tasks_running_max: int = 16
    tasks_kept_max: int = 1000
    # A JSON-RPC request: the task (at most TASK_BYTES_MAX) and its envelope.
    request_bytes_max: int = 4 * limits.TASK_BYTES_MAX
    parts_max: int = 8
    listings_max: int = 200
    refresh_interval_s: float = 30.0
    quote_timeout_s: float = 2.0
    delivery_within_s: int = 60
    # Past the contract's deadline, how long to wait for the delivery or refund.
    deadline_grace_s: float = 10.0
    schema_check_timeout_s: float = 2.0
    # A hire waiting for the human's approval is sent again this often, this long
    # (the quote binds its provider for QUOTE_VALIDITY_DEFAULT_S).
    approval_poll_interval_s: float = 2.0
    approval_wait_s: float = float(limits.QUOTE_VALIDITY_DEFAULT_S)
    request_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        assert 1 <= self.tasks_running_max <= self.tasks_kept_max
        assert self.request_bytes_max > limits.TASK_BYTES_MAX
        assert self.parts_max >= 1
        assert 1 <= self.listings_max <= limits.SEARCH_OFFSET_MAX
        assert 0 < self.quote_timeout_s <= limits.REQUEST_LIFETIME_MAX_S
        assert 1 <= self.delivery_within_s <= limits.DELIVERY_DEADLINE_MAX_S


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    budget_millicredits: int
    max_price_millicredits: int
    limits: GatewayLimits = field(default_factory=GatewayLimits)

    def __post_init__(self) -> None:
        assert self.budget_millicredits >= 0
        assert 1 <= self.max_price_millicredits <= limits.PRICE_MILLICREDITS_MAX


@dataclass(frozen=True, slots=True)
class _Outcome:
    step: PurchaseStep
    text: str
    result: Any = None
    has_result: bool = False
    # On the result's artifact: which contract bought it, at what price.
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to buy: the task each eligible provider gets, and the RFQ budget."""

    tasks_by_provider: dict[str, Any]
    cheapest_millicredits: int


@dataclass(slots=True)
class _Hire:
    """A hire sent (or about to be) for one A2A task; it runs to its end."""

    contract: Contract | None = None
    # Set when the exchange answered pending_approval (the human must approve).
    approval_asked: asyncio.Event = field(default_factory=asyncio.Event)


# --- the catalog and its cards -------------------------------------------------------


class CardCatalog:
    """The active listings, grouped by capability, and their signed cards (as JSON)."""

    def __init__(
        self, agent: Agent, card_keys: AgentKeys, /, *, base_url: str, listings_max: int
    ) -> None:
        self._agent = agent
        self._card_keys = card_keys
        self._base_url = base_url
        self._listings_max = listings_max
        self._listings: dict[str, list[Listing]] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._index: dict[str, Any] = self._signed(index_card([], base_url=base_url))

    async def refresh(self) -> None:
        found: list[Listing] = []
        while len(found) < self._listings_max:
            page_size = min(limits.SEARCH_PAGE_SIZE_MAX, self._listings_max - len(found))
            page = await self._agent.search(limit=page_size, offset=len(found))
            found.extend(page.listings)
            if not page.has_more or not page.listings:
                break
        grouped: dict[str, list[Listing]] = {}
        for listing in found:
            grouped.setdefault(listing.capability, []).append(listing)
        self._listings = grouped
        self._cards = {
            capability: self._signed(capability_card(group, base_url=self._base_url))
            for capability, group in grouped.items()
        }
        cheapest = [min(group, key=_price) for group in grouped.values()]
        self._index = self._signed(index_card(cheapest, base_url=self._base_url))

    def _signed(self, card: AgentCard) -> dict[str, Any]:
        return agent_card_to_dict(sign_card(card, self._card_keys))

    async def listings_for(self, capability: str) -> list[Listing]:
        """The capability's listings; one not seen at the last refresh is looked up."""
        cached = self._listings.get(capability)
        if cached:
            return cached
        page = await self._agent.search(capability=capability, limit=limits.SEARCH_PAGE_SIZE_MAX)
        return [listing for listing in page.listings if listing.capability == capability]

    def card_json(self, capability: str) -> dict[str, Any] | None:
        return self._cards.get(capability)

    def index_json(self) -> dict[str, Any]:
        return self._index


def _price(listing: Listing) -> int:
    return listing.price_millicredits


# --- the task store ------------------------------------------------------------------


class BoundedTaskStore(TaskStore):
    """The SDK's in-memory store, keeping at most ``tasks_kept_max`` tasks.

    Past the bound, the oldest finished tasks are forgotten first; running
    tasks are bounded by the executor's own limit, so they always fit.
    """

    def __init__(self, tasks_kept_max: int, /) -> None:
        self._store = InMemoryTaskStore()
        self._tasks_kept_max = tasks_kept_max
        self._contexts: OrderedDict[str, ServerCallContext] = OrderedDict()
        self._finished: set[str] = set()

    async def save(self, task: Task, context: ServerCallContext) -> None:
        await self._store.save(task, context)
        self._contexts[task.id] = context
        self._contexts.move_to_end(task.id)
        if task.status.state in _TERMINAL_STATES:
            self._finished.add(task.id)
        while len(self._contexts) > self._tasks_kept_max:
            finished = (task_id for task_id in self._contexts if task_id in self._finished)
            oldest = next(finished, None)
            if oldest is None:
                break
            await self.delete(oldest, self._contexts[oldest])

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        return await self._store.get(task_id, context)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        return await self._store.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        await self._store.delete(task_id, context)
        self._contexts.pop(task_id, None)
        self._finished.discard(task_id)


class _CapabilityContextBuilder(DefaultServerCallContextBuilder):
    """Puts the capability of the request's path (``/agents/<capability>``) in its state."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state["capability"] = request.path_params.get("capability")
        return context


def _capability_of(context: RequestContext) -> str | None:
    from_path = context.call_context.state.get("capability")
    if isinstance(from_path, str):
        return from_path
    message = context.message
    named = message.metadata["capability"] if message and "capability" in message.metadata else None
    return named if isinstance(named, str) else None


# --- the executor: one A2A task, one purchase -----------------------------------------


class GatewayExecutor(AgentExecutor):
    """Buys what each A2A message asks for, within the gateway's budget and bounds."""

    def __init__(
        self, agent: Agent, catalog: CardCatalog, budget: LifetimeBudget, config: GatewayConfig
    ) -> None:
        self._agent = agent
        self._catalog = catalog
        self._budget = budget
        self._config = config
        self._limits = config.limits
        self._running = 0
        self._hires: dict[str, _Hire] = {}
        self._settlements: set[asyncio.Task[_Outcome]] = set()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = _ids(context)
        updater = TaskUpdater(event_queue, task_id, context_id)
        if context.current_task is None:
            history = [context.message] if context.message is not None else []
            state = TaskState.TASK_STATE_SUBMITTED
            await event_queue.enqueue_event(new_task(task_id, context_id, state, history=history))
        elif context.current_task.status.state in _TERMINAL_STATES:
            return
        if self._running >= self._limits.tasks_running_max:
            text = (
                f"the gateway runs at most {self._limits.tasks_running_max} tasks at once; "
                "send the message again later (nothing was spent)"
            )
            await _finish(updater, _Outcome(PurchaseStep.BUSY, text))
            return
        self._running += 1
        try:
            outcome = await self._purchase(context, updater, task_id)
        finally:
            self._running -= 1
        await _finish(updater, outcome)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = _ids(context)
        hire = self._hires.get(task_id)
        if hire is None:
            outcome = _Outcome(
                PurchaseStep.CANCELED_BEFORE_HIRE, "canceled before a hire: nothing was spent"
            )
        else:
            outcome = _Outcome(PurchaseStep.CANCELED_AFTER_HIRE, await _cancel_contract(hire))
        await _finish(TaskUpdater(event_queue, task_id, context_id), outcome)

    async def drain(self) -> None:
        """Wait for every hire sent to reach its end (at shutdown)."""
        if self._settlements:
            await asyncio.gather(*self._settlements, return_exceptions=True)

    async def _purchase(
        self, context: RequestContext, updater: TaskUpdater, task_id: str
    ) -> _Outcome:
        capability = _capability_of(context)
        if capability is None:
            return _Outcome(
                PurchaseStep.UNKNOWN_CAPABILITY,
                "name the capability: send to /agents/<capability>, or put "
                '{"capability": ...} in the message metadata',
            )
        listings = await self._catalog.listings_for(capability)
        if not listings:
            text = f"no active listing for {capability!r} on the exchange"
            return _Outcome(PurchaseStep.UNKNOWN_CAPABILITY, text)
        try:
            parts = context.message.parts if context.message is not None else []
            requested = task_input(parts, parts_max=self._limits.parts_max)
        except BadMessage as exc:
            return _Outcome(PurchaseStep.BAD_TASK, f"{exc} (nothing was spent)")
        plan = await self._plan(capability, listings, requested)
        if isinstance(plan, _Outcome):
            return plan
        # Decided again here, with no await before the reservation: other tasks
        # may have reserved part of the budget while the schemas were checked.
        budget_millicredits = self._budget_for_task()
        if plan.cheapest_millicredits > budget_millicredits:
            return self._over_budget(capability, plan.cheapest_millicredits)
        reservation = Reservation(self._budget, budget_millicredits)
        handed_over = False
        try:
            text = f"RFQ sent for {capability}, budget {budget_millicredits} millicredits"
            await _report(updater, PurchaseStep.RFQ_SENT, text)
            quote = await self._best_quote(capability, plan, budget_millicredits, task_id)
            if quote is None:
                text = f"no provider of {capability} quoted within the budget (nothing was spent)"
                return _Outcome(PurchaseStep.NO_QUOTE, text)
            handed_over = True
            task = plan.tasks_by_provider[quote.provider_id]
            return await self._hire_and_follow(task_id, quote, task, reservation, updater)
        finally:
            if not handed_over:
                reservation.release()

    async def _plan(
        self, capability: str, listings: Sequence[Listing], requested: TaskInput
    ) -> _Plan | _Outcome:
        """Which listings the task may go to, within the ceiling and the budget left."""
        ceiling = self._config.max_price_millicredits
        cheapest = min(map(_price, listings))
        if cheapest > ceiling:
            text = (
                f"the cheapest listing of {capability} costs {cheapest} millicredits, above the "
                f"gateway's ceiling of {ceiling} per task (--max-price-credits); nothing was spent"
            )
            return _Outcome(PurchaseStep.OVER_CEILING, text)
        budget_millicredits = self._budget_for_task()
        if cheapest > budget_millicredits:
            return self._over_budget(capability, cheapest)
        tasks: dict[str, Any] = {}
        problems: list[str] = []
        for listing in sorted(listings, key=_price):
            if listing.price_millicredits > budget_millicredits:
                continue
            problem, task = await self._task_for(listing, requested)
            if problem is None:
                tasks.setdefault(listing.provider_id, task)
            else:
                problems.append(problem)
        if not tasks:
            return _Outcome(PurchaseStep.BAD_TASK, f"{problems[0]} (nothing was spent)")
        eligible = [listing for listing in listings if listing.provider_id in tasks]
        return _Plan(tasks, min(map(_price, eligible)))

    def _budget_for_task(self) -> int:
        return min(self._config.max_price_millicredits, self._budget.available_millicredits)

    def _over_budget(self, capability: str, cheapest_millicredits: int) -> _Outcome:
        text = (
            "the gateway's lifetime budget (--budget-credits) has "
            f"{self._budget.available_millicredits} of {self._budget.total_millicredits} "
            f"millicredits left and {capability} costs {cheapest_millicredits}; nothing was spent"
        )
        return _Outcome(PurchaseStep.OVER_BUDGET, text)

    async def _task_for(self, listing: Listing, requested: TaskInput) -> tuple[str | None, Any]:
        try:
            task = task_for_schema(requested, listing.input_schema)
        except BadMessage as exc:
            return str(exc), None
        # The check stops itself at its deadline, so the thread never outlives it.
        problem = await asyncio.to_thread(
            schema_problem,
            task,
            listing.input_schema,
            time_budget_s=self._limits.schema_check_timeout_s,
        )
        return problem, task

    async def _best_quote(
        self, capability: str, plan: _Plan, budget_millicredits: int, task_id: str
    ) -> ReceivedQuote | None:
        request = QuoteRequest(
            capability,
            f"A2A task {task_id[:64]} through the A2A gateway",
            budget_millicredits=budget_millicredits,
            delivery_within_s=self._limits.delivery_within_s,
            timeout_s=self._limits.quote_timeout_s,
            quotes_max=min(len(plan.tasks_by_provider), limits.QUOTES_PER_RFQ_MAX),
        )
        quotes = await self._agent.request_quotes(request)
        eligible = [
            quote
            for quote in quotes
            if quote.provider_id in plan.tasks_by_provider
            and quote.price_millicredits <= budget_millicredits
        ]
        return min(eligible, key=lambda quote: quote.price_millicredits, default=None)

    async def _hire_and_follow(
        self,
        task_id: str,
        quote: ReceivedQuote,
        task: Any,
        reservation: Reservation,
        updater: TaskUpdater,
    ) -> _Outcome:
        """Hire in a task of its own (an A2A cancel does not stop it), report, await it."""
        hire = _Hire()
        hired: asyncio.Future[Contract | None] = asyncio.get_running_loop().create_future()
        self._hires[task_id] = hire
        settling = self._hire_and_settle(hire, quote, task, reservation, hired)
        settlement = asyncio.create_task(settling)
        self._settlements.add(settlement)
        settlement.add_done_callback(self._settlements.discard)
        settlement.add_done_callback(lambda _: self._hires.pop(task_id, None))
        asked = asyncio.create_task(hire.approval_asked.wait())
        try:
            # asyncio.wait never cancels what it waits for: an A2A cancel stops only this.
            waits: list[asyncio.Future[Any]] = [hired, asked]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not hired.done():
                await _report(updater, PurchaseStep.WAITING_FOR_APPROVAL, _APPROVAL_TEXT)
        finally:
            asked.cancel()
        contract = await asyncio.shield(hired)
        if contract is not None:
            text = (
                f"hired contract {contract.contract_id} from {quote.provider_id}: "
                f"{contract.price_millicredits} millicredits held in escrow"
            )
            await _report(updater, PurchaseStep.HIRED, text)
        return await asyncio.shield(settlement)

    async def _hire_and_settle(
        self,
        hire: _Hire,
        quote: ReceivedQuote,
        task: Any,
        reservation: Reservation,
        hired: asyncio.Future[Contract | None],
    ) -> _Outcome:
        try:
            hire.contract = await self._hire_once_approved(hire, quote, task)
        except RequestTimeout as exc:
            # The contract may have opened: count its price as spent, to stay under the cap.
            reservation.shrink_to(quote.price_millicredits)
            reservation.spend()
            text = f"the hire got no answer ({exc}); its price is counted as spent"
            return _Outcome(PurchaseStep.DELIVERY_FAILED, text)
        except AgentClientError as exc:
            reservation.release()
            return _refused_hire(exc)
        finally:
            if not hired.done():
                hired.set_result(hire.contract)
        contract = hire.contract
        reservation.shrink_to(contract.price_millicredits)
        return await self._settle(contract, reservation)

    async def _hire_once_approved(self, hire: _Hire, quote: ReceivedQuote, task: Any) -> Contract:
        """Hire; while the human's approval is pending, send the same hire again.

        The exchange derives the contract id from the quote, so the approval
        the human gives in the portal covers exactly this hire.
        """
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + self._limits.approval_wait_s
        while True:
            try:
                return await self._agent.hire(quote, task)
            except RefusedError as exc:
                if exc.code != ErrorCode.PENDING_APPROVAL or loop.time() >= deadline_s:
                    raise
                hire.approval_asked.set()
                await asyncio.sleep(self._limits.approval_poll_interval_s)

    async def _settle(self, contract: Contract, reservation: Reservation) -> _Outcome:
        """Wait for the delivery until the deadline, accept it; else follow the refund."""
        deadline_s = contract.record.delivery_deadline_ms / 1000 - time.time()
        wait_s = max(deadline_s, 0.0) + self._limits.deadline_grace_s
        contract_id = contract.contract_id
        try:
            delivery = await contract.wait_delivery(timeout_s=wait_s)
            await contract.accept_delivery(delivery)
        except RequestTimeout:
            state = await _state_now(contract)
            if state is ContractState.REFUNDED:
                reservation.release()
                text = f"no delivery by the deadline: contract {contract_id} was refunded"
                return _Outcome(PurchaseStep.REFUNDED, text)
            reservation.spend()
            text = f"no delivery of {contract_id} in time (state {state}); counted as spent"
            return _Outcome(PurchaseStep.DELIVERY_FAILED, text)
        except AgentClientError as exc:
            if isinstance(exc, ProtocolError):
                with contextlib.suppress(AgentClientError):
                    await contract.reject_delivery(reason=f"the delivery failed a check: {exc}")
            reservation.spend()
            text = f"the delivery of contract {contract_id} failed: {exc}; counted as spent"
            return _Outcome(PurchaseStep.DELIVERY_FAILED, text)
        reservation.spend()
        text = (
            f"contract {contract_id} released: {contract.price_millicredits} millicredits "
            "paid for the accepted result"
        )
        metadata = {"contract_id": contract_id, "price_millicredits": contract.price_millicredits}
        return _Outcome(
            PurchaseStep.RELEASED, text, result=delivery.result, has_result=True, metadata=metadata
        )


_APPROVAL_TEXT = (
    "the hire is above the approval threshold the human set for the gateway's key: "
    "they must approve it in the portal (Approvals); the gateway hires as soon as they do"
)


def _refused_hire(exc: AgentClientError) -> _Outcome:
    code = getattr(exc, "code", None)
    if isinstance(exc, RefusedError) and code == ErrorCode.PENDING_APPROVAL:
        text = "the human did not approve the hire in time (portal, Approvals); nothing was spent"
        return _Outcome(PurchaseStep.REFUSED_BY_CONTROLS, text)
    if isinstance(exc, RefusedError) and code in _CONTROL_REFUSALS:
        text = f"the exchange refused the hire ({exc}); nothing was spent"
        return _Outcome(PurchaseStep.REFUSED_BY_CONTROLS, text)
    if isinstance(exc, RejectedError | ProtocolError):
        return _Outcome(PurchaseStep.BAD_TASK, f"the hire was rejected ({exc}); nothing was spent")
    return _Outcome(PurchaseStep.NO_QUOTE, f"the hire failed ({exc}); nothing was spent")


async def _state_now(contract: Contract) -> ContractState | None:
    try:
        return (await contract.view()).state
    except AgentClientError:
        return None


async def _cancel_contract(hire: _Hire) -> str:
    if hire.contract is None:
        return "canceled while the hire was being sent: the gateway follows it to its end"
    contract_id = hire.contract.contract_id
    with contextlib.suppress(AgentClientError):
        await hire.contract.cancel(reason="the A2A client canceled the task")
    return (
        f"canceled after contract {contract_id} was hired: the gateway asked the exchange to "
        "cancel it, which refunds once the provider cancels too; otherwise the gateway "
        "accepts the delivery when it comes (see docs/BRIDGES.md)"
    )


def _ids(context: RequestContext) -> tuple[str, str]:
    assert context.task_id is not None and context.context_id is not None
    return context.task_id, context.context_id


async def _report(updater: TaskUpdater, step: PurchaseStep, text: str) -> None:
    message = updater.new_agent_message([new_text_part(text)])
    await updater.update_status(task_state_for(step), message=message)


async def _finish(updater: TaskUpdater, outcome: _Outcome) -> None:
    if outcome.has_result:
        result = outcome.result
        part = new_text_part(result) if isinstance(result, str) else new_data_part(result)
        await updater.add_artifact([part], name="result", metadata=outcome.metadata)
    await _report(updater, outcome.step, outcome.text)


# --- the HTTP server -----------------------------------------------------------------


class _BodyLimit:
    """Refuses a request body over ``bytes_max`` with 413, before any handler reads it."""

    def __init__(self, app: ASGIApp, bytes_max: int) -> None:
        self._app = app
        self._bytes_max = bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self._bytes_max):
            await self._too_large(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self._bytes_max:
                # A chunked body over the bound ends the connection.
                return {"type": "http.disconnect"}
            return message

        await self._app(scope, limited_receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        text = f"the request is over {self._bytes_max} bytes"
        await JSONResponse({"error": text}, status_code=413)(scope, receive, send)


class A2AGateway:
    """The gateway's server. ``await start()`` listens and returns the base URL."""

    def __init__(
        self,
        agent: Agent,
        card_keys: AgentKeys,
        config: GatewayConfig,
        /,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._agent = agent
        self._config = config
        self._socket = listening_socket(host, port)
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self.budget = LifetimeBudget(config.budget_millicredits)
        self.catalog = CardCatalog(
            agent, card_keys, base_url=self.base_url, listings_max=config.limits.listings_max
        )
        self._executor = GatewayExecutor(agent, self.catalog, self.budget, config)
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def app(self) -> ASGIApp:
        limits_ = self._config.limits
        index_card_unsigned = index_card([], base_url=self.base_url)
        handler = DefaultRequestHandler(
            self._executor, BoundedTaskStore(limits_.tasks_kept_max), index_card_unsigned
        )
        builder = _CapabilityContextBuilder()
        routes = [
            Route("/.well-known/agent-card.json", self._index_card, methods=["GET"]),
            Route(capability_card_path("{capability}"), self._capability_card, methods=["GET"]),
            *create_jsonrpc_routes(handler, "/agents/{capability}", context_builder=builder),
            *create_jsonrpc_routes(handler, "/", context_builder=builder),
        ]
        return _BodyLimit(Starlette(routes=routes), limits_.request_bytes_max)

    async def _index_card(self, request: Request) -> Response:
        return JSONResponse(self.catalog.index_json())

    async def _capability_card(self, request: Request) -> Response:
        card = self.catalog.card_json(request.path_params["capability"])
        if card is None:
            return JSONResponse({"error": "no active listing for this capability"}, 404)
        return JSONResponse(card)

    async def start(self) -> str:
        """Load the cards, then listen; return the base URL."""
        await self.catalog.refresh()
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off")
        self._server = _Server(config)
        self._tasks.append(asyncio.create_task(self._server.serve(sockets=[self._socket])))
        self._tasks.append(asyncio.create_task(self._refresh_forever()))
        while not self._server.started:
            if self._tasks[0].done():
                await self._tasks[0]
                raise RuntimeError("the A2A gateway's server stopped while starting")
            await asyncio.sleep(0.01)
        return self.base_url

    async def wait_closed(self) -> None:
        """Until the server stops (Ctrl-C in the command)."""
        if self._tasks:
            await self._tasks[0]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._executor.drain()
        self._socket.close()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.limits.refresh_interval_s)
            try:
                await self.catalog.refresh()
            except AgentClientError as exc:
                logger.warning("a2a gateway: the catalog refresh failed: %s", exc)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway's owner decides when to stop
    (the command on Ctrl-C or SIGTERM, a test at its end), and stops hires cleanly."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
