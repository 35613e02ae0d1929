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

The story is told line by line through ``say``; ``progress`` hears how far
the demo is (for a progress bar); the balances and the verdict come back as
one ``DemoSummary`` for the caller to show. With ``DemoOptions.keep_seeds``
the named agents' seeds are kept in ``<data dir>/demo-agents/`` (mode 0600,
reused on the next run), so a person can link them to a portal account.
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
from exchange.bootstrap.stack import EmbeddedStack, StackConfig, load_or_create_keys
from exchange.entrypoints.demo_goods import goods_scenario
from exchange.entrypoints.demo_lifecycle import credits_text, dispute_scenario, refund_scenario
from exchange.entrypoints.demo_metered import metered_scenario
from exchange.entrypoints.demo_subscriptions import subscription_scenario
from exchange.use_cases.exchange_accounts import ESCROW_ACCOUNT_ID, REVENUE_ACCOUNT_ID
from wallet import MILLICREDITS_PER_CREDIT, InvariantViolation, SqlLedger

__all__ = [
    "DEMO_SEEDS_DIR_NAME",
    "AgentBalance",
    "DemoOptions",
    "DemoSummary",
    "demo_seed_path",
    "run_demo",
]

AGENTS_MAX = 200
DEALS_MAX = 100_000
BUYER_GRANT_MILLICREDITS = 1_000 * MILLICREDITS_PER_CREDIT
QUOTE_TIMEOUT_S = 2.0
DELIVERY_TIMEOUT_S = 10.0

# Where the named agents' seeds are kept, inside the data directory.
DEMO_SEEDS_DIR_NAME = "demo-agents"

Say = Callable[[str], None]
# How far the demo is: a description, the steps done, and the steps in all.
Progress = Callable[[str, int, int], None]


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
    # Keep the named agents' seeds in <data dir>/demo-agents/ (else keys live in memory).
    keep_seeds: bool = False
    # Emails that become portal operators when they sign up.
    operator_emails: frozenset[str] = frozenset()

    def check(self) -> str | None:
        if not 2 <= self.agents <= AGENTS_MAX:
            return f"--agents must be between 2 and {AGENTS_MAX}"
        if not 1 <= self.deals <= DEALS_MAX:
            return f"--deals must be between 1 and {DEALS_MAX}"
        if not 1 <= self.concurrency <= 256:
            return "--concurrency must be between 1 and 256"
        return None


@dataclass(frozen=True, slots=True)
class AgentBalance:
    name: str
    agent_id: str
    available_millicredits: int
    held_millicredits: int


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """The balances after trading and each check of the verdict."""

    balances: list[AgentBalance]
    platform_revenue_millicredits: int
    escrow_held_millicredits: int
    # None when the ledger invariants hold, else what is wrong.
    invariants_problem: str | None
    settled: int
    deals: int
    scenarios: dict[str, bool]

    @property
    def succeeded(self) -> bool:
        return (
            self.invariants_problem is None
            and self.settled == self.deals
            and all(self.scenarios.values())
        )

    def lines(self) -> list[str]:
        """The summary as plain lines of text."""
        lines = ["balances after trading:"]
        lines += [
            f"  {balance.name:<12} available {credits_text(balance.available_millicredits)}"
            f", held {credits_text(balance.held_millicredits)}"
            for balance in self.balances
        ]
        lines.append(f"  platform revenue {credits_text(self.platform_revenue_millicredits)}")
        lines.append(f"  escrow still held {credits_text(self.escrow_held_millicredits)}")
        if self.invariants_problem is None:
            lines.append(
                "ledger invariants: OK (debits equal credits, totals match transfers, "
                "none overdrawn)"
            )
        else:
            lines.append(f"ledger invariants: VIOLATED: {self.invariants_problem}")
        lines.append(f"{self.settled} of {self.deals} deals settled")
        outcomes = (f"{name} {'OK' if ok else 'FAILED'}" for name, ok in self.scenarios.items())
        lines.append("scenarios: " + ", ".join(outcomes))
        return lines


def demo_seed_path(data_dir: Path, name: str, /) -> Path:
    """Where ``DemoOptions.keep_seeds`` keeps the seed of the agent called ``name``."""
    return data_dir / DEMO_SEEDS_DIR_NAME / f"{name}.seed"


StackHook = Callable[[EmbeddedStack], Awaitable[None]]


async def run_demo(
    options: DemoOptions,
    /,
    *,
    say: Say = print,
    progress: Progress | None = None,
    started: StackHook | None = None,
    summarize: Callable[[DemoSummary], None] | None = None,
    afterwards: Callable[[EmbeddedStack, DemoSummary], Awaitable[None]] | None = None,
) -> bool:
    """Run the demo; True only if every deal and scenario settled and the ledger balances.

    ``started`` runs once the stack (and the portal) is up, before trading.
    ``summarize`` shows the summary (default: its lines, through ``say``).
    ``afterwards`` runs once the demo is done, while the stack (and the
    portal, if ``options.portal_port`` is set) is still up: ``agentx demo
    --keep-running`` waits there for Ctrl-C so a person can look around.
    """
    report_progress = progress or (lambda description, completed, total: None)
    with _data_dir(options.data_dir) as data_dir:
        config = StackConfig(
            data_dir=data_dir,
            portal_port=options.portal_port,
            operator_emails=options.operator_emails,
        )
        report_progress("starting NATS, the ledger and the exchange", 0, _steps(options))
        async with EmbeddedStack(config) as stack:
            exchange_id = stack.exchange_keys.agent_id
            say(f"NATS {stack.nats_url}, data in {data_dir}, exchange {exchange_id}")
            if started is not None:
                await started(stack)
            summary = await _trade(stack, options, say, report_progress)
            for line in summary.lines() if summarize is None else []:
                say(line)
            if summarize is not None:
                summarize(summary)
            if afterwards is not None:
                await afterwards(stack, summary)
            return summary.succeeded


@contextlib.contextmanager
def _data_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="agentx-demo-") as temporary:
        yield Path(temporary)


SCENARIO_NAMES = ("negotiation", "refund", "dispute", "metered", "goods", "subscription")


def _steps(options: DemoOptions, /) -> int:
    """The demo's steps in all: each deal, each scenario, and the ledger check."""
    return options.deals + len(SCENARIO_NAMES) + 1


def _agent_names(options: DemoOptions, /) -> list[str]:
    provider_count = max(1, options.agents // 2)
    buyer_count = options.agents - provider_count
    return [f"provider-{i + 1}" for i in range(provider_count)] + [
        f"buyer-{i + 1}" for i in range(buyer_count)
    ]


def _agent_keys(data_dir: Path, name: str, /, *, keep: bool) -> AgentKeys:
    if not keep:
        return AgentKeys.generate()
    path = demo_seed_path(data_dir, name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    return load_or_create_keys(path)


async def _trade(
    stack: EmbeddedStack, options: DemoOptions, say: Say, progress: Progress
) -> DemoSummary:
    agent_names = _agent_names(options)
    provider_count = max(1, options.agents // 2)
    agents = [
        await Agent.connect(
            stack.nats_url, _agent_keys(stack.data_dir, name, keep=options.keep_seeds)
        )
        for name in agent_names
    ]
    operator = OperatorClient(await Agent.connect(stack.nats_url, stack.operator_keys))
    try:
        providers, buyers = agents[:provider_count], agents[provider_count:]
        names = {agent.agent_id: name for agent, name in zip(agents, agent_names, strict=True)}
        offered = await _open_shops(providers, names, say)
        for buyer in buyers:
            await operator.mint(buyer.agent_id, BUYER_GRANT_MILLICREDITS, reason="demo grant")
            grant = credits_text(BUYER_GRANT_MILLICREDITS)
            say(f"operator minted {grant} to {names[buyer.agent_id]}")
        settled = await _run_deals(buyers, offered, names, options, say, progress)
        scenarios = await _run_scenarios(stack, operator, options, say, progress)
        progress("checking the ledger", _steps(options) - 1, _steps(options))
        summary = await _report(stack, agents, names, settled, options.deals, scenarios)
        progress("done", _steps(options), _steps(options))
        return summary
    finally:
        for agent in [*agents, operator.agent]:
            await agent.close()


async def _run_scenarios(
    stack: EmbeddedStack,
    operator: OperatorClient,
    options: DemoOptions,
    say: Say,
    progress: Progress,
) -> dict[str, bool]:
    """Each scenario in turn, by name: True if it reached the outcome it intends."""
    url = stack.nats_url
    runs: dict[str, Callable[[], Awaitable[bool]]] = {
        "negotiation": lambda: _negotiation_scenario(stack, operator, say),
        "refund": lambda: refund_scenario(url, operator, say),
        "dispute": lambda: dispute_scenario(url, operator, say),
        "metered": lambda: metered_scenario(url, operator, say),
        "goods": lambda: goods_scenario(url, operator, say),
        "subscription": lambda: subscription_scenario(url, operator, say),
    }
    assert tuple(runs) == SCENARIO_NAMES
    outcomes: dict[str, bool] = {}
    for index, (name, run) in enumerate(runs.items()):
        progress(f"{name} scenario", options.deals + index, _steps(options))
        outcomes[name] = await run()
    return outcomes


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
        say(f"{names[provider.agent_id]} offers {service.capability} at {credits_text(price)}")
    return offered


async def _run_deals(
    buyers: list[Agent],
    offered: dict[str, tuple[DemoService, int]],
    names: dict[str, str],
    options: DemoOptions,
    say: Say,
    progress: Progress,
) -> int:
    capabilities = sorted(offered)
    slots = asyncio.Semaphore(options.concurrency)
    finished = 0

    async def one(number: int) -> bool:
        nonlocal finished
        async with slots:
            service, provider_count = offered[capabilities[number % len(capabilities)]]
            buyer = buyers[number % len(buyers)]
            settled = await _deal(number + 1, buyer, service, provider_count, names, say)
        finished += 1
        progress(f"deals ({finished} of {options.deals})", finished, _steps(options))
        return settled

    progress("deals", 0, _steps(options))
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
            f"{names[q.provider_id]} {credits_text(q.price_millicredits)}" for q in quotes
        )
        say(f"{tag} quotes: {offers}")
        best = quotes[0]
        contract = await buyer.hire(best, service.sample_task)
        price = credits_text(contract.price_millicredits)
        say(
            f"{tag} agreed {price} with {names[best.provider_id]}; "
            f"escrow locked, contract {contract.contract_id}"
        )
        delivery = await contract.wait_delivery(timeout_s=DELIVERY_TIMEOUT_S)
        say(f"{tag} delivered {delivery.result} (sha256 {delivery.result_sha256[:12]}…)")
        view = await contract.accept_delivery(delivery)
        net = view.price_millicredits - view.fee_millicredits
        say(
            f"{tag} released: {names[best.provider_id]} gets {credits_text(net)}, "
            f"platform fee {credits_text(view.fee_millicredits)}"
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
            f"{credits_text(NEGOTIATION_LIST_PRICE_MILLICREDITS)}, will come down "
            f"{credits_text(NEGOTIATION_STEP_MILLICREDITS)} per round but never below "
            f"{credits_text(NEGOTIATION_FLOOR_MILLICREDITS)} (and opens at a buyer's budget "
            "when that is lower than its list price)"
        )
        say(
            f"{tag} the bargain hunter wants to pay "
            f"{credits_text(NEGOTIATION_TARGET_MILLICREDITS)} "
            f"and will pay at most {credits_text(NEGOTIATION_BUDGET_MILLICREDITS)}, "
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
            price = credits_text(document.price_millicredits)
            story.append(f"the bargain hunter makes a counter-offer of {price}")
        elif isinstance(document, Quote):
            price = credits_text(document.price_millicredits)
            story.append(f"the seller quotes {price} (round {document.round})")
    counters = agreed.round
    story.append(
        f"agreed at {credits_text(agreed.price_millicredits)} after {counters} "
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
        f"{tag} delivered {delivery.result}; released: the seller gets {credits_text(net)}, "
        f"platform fee {credits_text(view.fee_millicredits)}"
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
    scenarios: dict[str, bool],
) -> DemoSummary:
    balances = []
    for agent in agents:
        balance = await agent.balance()
        balances.append(
            AgentBalance(
                names[agent.agent_id],
                agent.agent_id,
                balance.available_millicredits,
                balance.held_millicredits,
            )
        )
    platform = await SqlLedger(stack.worker.engine).lookup_accounts(
        [REVENUE_ACCOUNT_ID, ESCROW_ACCOUNT_ID]
    )
    revenue = platform[REVENUE_ACCOUNT_ID]
    escrow = platform[ESCROW_ACCOUNT_ID]
    try:
        await check_exchange_invariants(stack.worker.engine)
        problem = None
    except InvariantViolation as exc:
        problem = str(exc)
    return DemoSummary(
        balances=balances,
        platform_revenue_millicredits=revenue.credits_posted - revenue.debits_posted,
        escrow_held_millicredits=escrow.credits_pending,
        invariants_problem=problem,
        settled=settled,
        deals=deals,
        scenarios=scenarios,
    )
