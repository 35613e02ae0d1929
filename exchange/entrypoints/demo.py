"""``agentx demo``: agents trade on the embedded stack and the ledger is checked.

Half the agents (at least one) are providers, each serving one of a few small
capabilities at its own price; the rest are buyers, funded by an operator
mint. Each deal: the buyer sends an RFQ, collects quotes, hires the cheapest,
receives and checks the result, accepts it, and the escrow releases the price
(minus the fee) to the provider. At the end every balance is printed and the
ledger invariants are checked; the demo succeeds only if every deal settled
and the books balance.

Scenarios follow the deals, each in its own function and each told in
plain words; the demo succeeds only if each reached the outcome it
intends. The negotiation scenario: a buyer with a target price makes
counter-offers to a provider that concedes step by step toward a floor,
they agree, and the contract settles at the agreed price.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_client import (
    Agent,
    AgentClientError,
    AgentKeys,
    ConcedingProvider,
    ContractState,
    OperatorClient,
    QuoteRequest,
    ReceivedQuote,
    TargetPriceBuyer,
)
from agent_client.protocol import Counter, Quote
from agent_client.signing import open_envelope_struct
from exchange.adapters.contract_invariants import check_exchange_invariants
from exchange.bootstrap.stack import EmbeddedStack, StackConfig
from exchange.entrypoints.demo_goods import goods_scenario
from exchange.entrypoints.demo_lifecycle import dispute_scenario, refund_scenario
from exchange.entrypoints.demo_metered import metered_scenario
from exchange.entrypoints.demo_subscriptions import subscription_scenario
from exchange.use_cases.exchange_accounts import ESCROW_ACCOUNT_ID, REVENUE_ACCOUNT_ID
from wallet import MILLICREDITS_PER_CREDIT, InvariantViolation, SqlLedger

__all__ = ["DemoOptions", "run_demo"]

AGENTS_MAX = 200
DEALS_MAX = 100_000
BUYER_GRANT_MILLICREDITS = 1_000 * MILLICREDITS_PER_CREDIT
QUOTE_TIMEOUT_S = 2.0
DELIVERY_TIMEOUT_S = 10.0

Say = Callable[[str], None]


async def _upper(task: Any) -> Any:
    return {"text": str(task.get("text", "")).upper()}


async def _reverse(task: Any) -> Any:
    return {"text": str(task.get("text", ""))[::-1]}


async def _word_count(task: Any) -> Any:
    return {"words": len(str(task.get("text", "")).split())}


@dataclass(frozen=True, slots=True)
class DemoService:
    capability: str
    description: str
    base_price_millicredits: int
    handler: Callable[[Any], Awaitable[Any]]
    sample_task: dict[str, Any]


SERVICES = (
    DemoService("text.upper", "Upper-cases text", 2_000, _upper, {"text": "hello agents"}),
    DemoService("text.reverse", "Reverses text", 1_500, _reverse, {"text": "stressed"}),
    DemoService("text.wordcount", "Counts words", 1_000, _word_count, {"text": "one two three"}),
)


AGENTS_DEFAULT = 4
DEALS_DEFAULT = 6
CONCURRENCY_DEFAULT = 1


@dataclass(frozen=True, slots=True)
class DemoOptions:
    agents: int = AGENTS_DEFAULT
    deals: int = DEALS_DEFAULT
    data_dir: Path | None = None
    # Deals run this many at a time; 1 keeps the story easy to read.
    concurrency: int = CONCURRENCY_DEFAULT
    # The human portal's port while the demo runs; None runs no portal.
    portal_port: int | None = None

    def check(self) -> str | None:
        if not 2 <= self.agents <= AGENTS_MAX:
            return f"--agents must be between 2 and {AGENTS_MAX}"
        if not 1 <= self.deals <= DEALS_MAX:
            return f"--deals must be between 1 and {DEALS_MAX}"
        if not 1 <= self.concurrency <= 256:
            return "--concurrency must be between 1 and 256"
        return None


def credits(amount_millicredits: int, /) -> str:
    whole, fraction = divmod(amount_millicredits, MILLICREDITS_PER_CREDIT)
    return f"{whole}.{fraction:03d} cr"


async def run_demo(
    options: DemoOptions,
    /,
    *,
    say: Say = print,
    afterwards: Callable[[EmbeddedStack], Awaitable[None]] | None = None,
) -> bool:
    """Run the demo; True only if every deal settled and the ledger balances.

    ``afterwards`` runs once the demo is done, while the stack (and the
    portal, if ``options.portal_port`` is set) is still up: ``agentx demo
    --keep-running`` waits there for Ctrl-C so a person can look around.
    """
    with _data_dir(options.data_dir) as data_dir:
        config = StackConfig(data_dir=data_dir, portal_port=options.portal_port)
        async with EmbeddedStack(config) as stack:
            exchange_id = stack.exchange_keys.agent_id
            say(f"NATS {stack.nats_url}, data in {data_dir}, exchange {exchange_id}")
            succeeded = await _trade(stack, options, say)
            if afterwards is not None:
                await afterwards(stack)
            return succeeded


@contextlib.contextmanager
def _data_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="agentx-demo-") as temporary:
        yield Path(temporary)


async def _trade(stack: EmbeddedStack, options: DemoOptions, say: Say) -> bool:
    provider_count = max(1, options.agents // 2)
    agents = [
        await Agent.connect(stack.nats_url, AgentKeys.generate()) for _ in range(options.agents)
    ]
    operator = OperatorClient(await Agent.connect(stack.nats_url, stack.operator_keys))
    try:
        providers, buyers = agents[:provider_count], agents[provider_count:]
        names = {agent.agent_id: f"provider-{i + 1}" for i, agent in enumerate(providers)}
        names |= {agent.agent_id: f"buyer-{i + 1}" for i, agent in enumerate(buyers)}
        offered = await _open_shops(providers, names, say)
        for buyer in buyers:
            await operator.mint(buyer.agent_id, BUYER_GRANT_MILLICREDITS, reason="demo grant")
            say(f"operator minted {credits(BUYER_GRANT_MILLICREDITS)} to {names[buyer.agent_id]}")
        settled = await _run_deals(buyers, offered, names, options, say)
        negotiated = await _negotiation_scenario(stack, operator, say)
        refunded = await refund_scenario(stack.nats_url, operator, say)
        split = await dispute_scenario(stack.nats_url, operator, say)
        metered = await metered_scenario(stack.nats_url, operator, say)
        sold = await goods_scenario(stack.nats_url, operator, say)
        subscribed = await subscription_scenario(stack.nats_url, operator, say)
        books_balance = await _report(stack, agents, names, settled, options.deals, say)
        scenarios = {
            "negotiation": negotiated,
            "refund": refunded,
            "dispute": split,
            "metered": metered,
            "goods": sold,
            "subscription": subscribed,
        }
        say(
            "scenarios: "
            + ", ".join(f"{name} {'OK' if ok else 'FAILED'}" for name, ok in scenarios.items())
        )
        return books_balance and all(scenarios.values())
    finally:
        for agent in [*agents, operator.agent]:
            await agent.close()


async def _open_shops(
    providers: list[Agent], names: dict[str, str], say: Say
) -> dict[str, tuple[DemoService, int]]:
    """Each provider serves one service; returns capability -> (service, provider count).

    Providers pair up on services (two per service where there are enough)
    so that buyers see competing quotes at different prices.
    """
    offered: dict[str, tuple[DemoService, int]] = {}
    service_count = min(len(SERVICES), max(1, (len(providers) + 1) // 2))
    for index, provider in enumerate(providers):
        service = SERVICES[index % service_count]
        price = service.base_price_millicredits + 250 * (index // service_count)
        await provider.advertise(
            service.capability, description=service.description, price_millicredits=price
        )
        await provider.serve(service.capability, service.handler, pricing=price)
        previous = offered.get(service.capability, (service, 0))[1]
        offered[service.capability] = (service, previous + 1)
        say(f"{names[provider.agent_id]} offers {service.capability} at {credits(price)}")
    return offered


async def _run_deals(
    buyers: list[Agent],
    offered: dict[str, tuple[DemoService, int]],
    names: dict[str, str],
    options: DemoOptions,
    say: Say,
) -> int:
    capabilities = sorted(offered)
    slots = asyncio.Semaphore(options.concurrency)

    async def one(number: int) -> bool:
        async with slots:
            service, provider_count = offered[capabilities[number % len(capabilities)]]
            buyer = buyers[number % len(buyers)]
            return await _deal(number + 1, buyer, service, provider_count, names, say)

    results = await asyncio.gather(*(one(number) for number in range(options.deals)))
    return sum(results)


async def _deal(
    number: int,
    buyer: Agent,
    service: DemoService,
    provider_count: int,
    names: dict[str, str],
    say: Say,
) -> bool:
    tag = f"deal {number}:"
    buyer_name = names[buyer.agent_id]
    try:
        say(f"{tag} {buyer_name} asks for {service.capability} {service.sample_task}")
        quotes = await buyer.request_quotes(
            QuoteRequest(
                service.capability,
                service.description,
                budget_millicredits=10 * service.base_price_millicredits,
                timeout_s=QUOTE_TIMEOUT_S,
                quotes_max=provider_count,
            )
        )
        if not quotes:
            say(f"{tag} no quotes arrived")
            return False
        offers = ", ".join(
            f"{names[q.provider_id]} {credits(q.price_millicredits)}" for q in quotes
        )
        say(f"{tag} quotes: {offers}")
        best = quotes[0]
        contract = await buyer.hire(best, service.sample_task)
        say(
            f"{tag} agreed {credits(contract.price_millicredits)} with {names[best.provider_id]}; "
            f"escrow locked, contract {contract.contract_id}"
        )
        delivery = await contract.wait_delivery(timeout_s=DELIVERY_TIMEOUT_S)
        say(f"{tag} delivered {delivery.result} (sha256 {delivery.result_sha256[:12]}…)")
        view = await contract.accept_delivery(delivery)
        net = view.price_millicredits - view.fee_millicredits
        say(
            f"{tag} released: {names[best.provider_id]} gets {credits(net)}, "
            f"platform fee {credits(view.fee_millicredits)}"
        )
        return view.state is ContractState.RELEASED
    except AgentClientError as exc:
        say(f"{tag} FAILED: {exc}")
        return False


# --- scenario: a negotiation with counter-offers ------------------------------------

# A capability only this scenario's provider sells, so the RFQ reaches it alone.
NEGOTIATION_CAPABILITY = "text.title"
NEGOTIATION_LIST_PRICE_MILLICREDITS = 2_000
NEGOTIATION_FLOOR_MILLICREDITS = 1_500
NEGOTIATION_STEP_MILLICREDITS = 200
NEGOTIATION_TARGET_MILLICREDITS = 1_200
NEGOTIATION_BUDGET_MILLICREDITS = 1_800


async def _title(task: Any) -> Any:
    return {"text": str(task.get("text", "")).title()}


async def _negotiation_scenario(stack: EmbeddedStack, operator: OperatorClient, say: Say) -> bool:
    """A buyer and a provider haggle, agree, and the contract settles at that price.

    True only if they agreed after at least one counter-offer and the
    contract was released at the agreed price.
    """
    tag = "negotiation:"
    seller = await Agent.connect(stack.nats_url, AgentKeys.generate())
    hunter = await Agent.connect(stack.nats_url, AgentKeys.generate())
    try:
        await seller.advertise(
            NEGOTIATION_CAPABILITY,
            description="Title-cases text",
            price_millicredits=NEGOTIATION_LIST_PRICE_MILLICREDITS,
        )
        await seller.serve(
            NEGOTIATION_CAPABILITY,
            _title,
            pricing=NEGOTIATION_LIST_PRICE_MILLICREDITS,
            negotiation=ConcedingProvider(
                floor_millicredits=NEGOTIATION_FLOOR_MILLICREDITS,
                step_millicredits=NEGOTIATION_STEP_MILLICREDITS,
            ),
        )
        await operator.mint(hunter.agent_id, BUYER_GRANT_MILLICREDITS, reason="demo grant")
        say(
            f"{tag} the seller lists {NEGOTIATION_CAPABILITY} at "
            f"{credits(NEGOTIATION_LIST_PRICE_MILLICREDITS)}, will come down "
            f"{credits(NEGOTIATION_STEP_MILLICREDITS)} per round but never below "
            f"{credits(NEGOTIATION_FLOOR_MILLICREDITS)} (and opens at a buyer's budget "
            "when that is lower than its list price)"
        )
        say(
            f"{tag} the bargain hunter wants to pay {credits(NEGOTIATION_TARGET_MILLICREDITS)} "
            f"and will pay at most {credits(NEGOTIATION_BUDGET_MILLICREDITS)}, "
            "the budget ceiling of its call for quotes"
        )
        agreed = await hunter.negotiate(
            QuoteRequest(
                NEGOTIATION_CAPABILITY,
                "Title-case a headline",
                budget_millicredits=NEGOTIATION_BUDGET_MILLICREDITS,
                timeout_s=QUOTE_TIMEOUT_S,
                quotes_max=1,
            ),
            strategy=TargetPriceBuyer(
                target_millicredits=NEGOTIATION_TARGET_MILLICREDITS,
                budget_millicredits=NEGOTIATION_BUDGET_MILLICREDITS,
            ),
        )
        for line in _negotiation_story(agreed):
            say(f"{tag} {line}")
        return await _settle_negotiated(hunter, agreed, tag, say)
    except AgentClientError as exc:
        say(f"{tag} FAILED: {exc}")
        return False
    finally:
        await hunter.close()
        await seller.close()


def _negotiation_story(agreed: ReceivedQuote) -> list[str]:
    """Each offer of the negotiation, in order, from the signed documents themselves."""
    story = []
    for envelope in (*agreed.history, agreed.envelope):
        document = open_envelope_struct(envelope).document
        if isinstance(document, Counter):
            price = credits(document.price_millicredits)
            story.append(f"the bargain hunter makes a counter-offer of {price}")
        elif isinstance(document, Quote):
            story.append(
                f"the seller quotes {credits(document.price_millicredits)} (round {document.round})"
            )
    counters = agreed.round
    story.append(
        f"agreed at {credits(agreed.price_millicredits)} after {counters} "
        f"counter-offer{'s' if counters != 1 else ''}"
    )
    return story


async def _settle_negotiated(buyer: Agent, agreed: ReceivedQuote, tag: str, say: Say) -> bool:
    contract = await buyer.hire(agreed, {"text": "agents strike a deal"})
    say(f"{tag} the agreed price is held in escrow, contract {contract.contract_id}")
    delivery = await contract.wait_delivery(timeout_s=DELIVERY_TIMEOUT_S)
    view = await contract.accept_delivery(delivery)
    net = view.price_millicredits - view.fee_millicredits
    say(
        f"{tag} delivered {delivery.result}; released: the seller gets {credits(net)}, "
        f"platform fee {credits(view.fee_millicredits)}"
    )
    return (
        agreed.round >= 1
        and view.state is ContractState.RELEASED
        and view.price_millicredits == agreed.price_millicredits
    )


async def _report(
    stack: EmbeddedStack,
    agents: list[Agent],
    names: dict[str, str],
    settled: int,
    deals: int,
    say: Say,
) -> bool:
    say("balances after trading:")
    for agent in agents:
        balance = await agent.balance()
        say(
            f"  {names[agent.agent_id]:<12} available {credits(balance.available_millicredits)}"
            f", held {credits(balance.held_millicredits)}"
        )
    platform = await SqlLedger(stack.worker.engine).lookup_accounts(
        [REVENUE_ACCOUNT_ID, ESCROW_ACCOUNT_ID]
    )
    revenue = platform[REVENUE_ACCOUNT_ID]
    escrow = platform[ESCROW_ACCOUNT_ID]
    say(f"  platform revenue {credits(revenue.credits_posted - revenue.debits_posted)}")
    say(f"  escrow still held {credits(escrow.credits_pending)}")
    try:
        await check_exchange_invariants(stack.worker.engine)
        say("ledger invariants: OK (debits equal credits, totals match transfers, none overdrawn)")
        books_balance = True
    except InvariantViolation as exc:
        say(f"ledger invariants: VIOLATED: {exc}")
        books_balance = False
    say(f"{settled} of {deals} deals settled")
    return books_balance and settled == deals
