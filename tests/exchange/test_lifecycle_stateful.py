"""Random contract histories against a small pure model of who holds what.

A Hypothesis state machine drives the exchange's contract use cases
(service level, real database, a manual clock, a recording notice port) with
random sequences of open / deliver / accept / reject / resolve / cancel /
clock advances / sweeps / replays. After every step it compares each agent's
ledger balance with the model's expectation and runs the full invariant
check, on SQLite and (when the URL is set) PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import hypothesis.strategies as st
import msgspec
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from agent_client import AgentKeys, subjects
from agent_client.protocol import (
    AcceptDelivery,
    Advertise,
    CancelContract,
    Deliver,
    OpenContract,
    Quote,
    RejectDelivery,
    Resolve,
)
from agent_client.signing import VerifiedDocument, make_header, seal, sha256_hex
from escrow import Escrow
from exchange import check_exchange_invariants, migrate_database
from exchange.errors import ExchangeError
from exchange.use_cases import CatalogUseCases, ContractUseCases, ExchangeContext
from exchange.use_cases.exchange_accounts import (
    ISSUANCE_ACCOUNT_ID,
    agent_account_id,
    ensure_agent_accounts,
    ensure_platform_accounts,
)
from exchange.use_cases.exchange_context import LifecycleSettings, OutboxNotice
from wallet import FeeSchedule, LedgerId, NewTransfer, SqlLedger, TransferCode, open_database

FEE_RATE_BPS = 500
GRANT = 50_000
DELIVERY_WINDOW_MS = 10_000
REVIEW_WINDOW_S = 20
DISPUTE_WINDOW_S = 30
RESULT = b'{"ok":true}'


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def now_ms(self) -> int:
        return self.now


class RecordingPublisher:
    """The notice port's test double: notices are recorded, never lost."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish_notices(self, notices: Sequence[OutboxNotice]) -> list[None]:
        self.published.extend(notice.notice_id for notice in notices)
        return [None] * len(notices)


@dataclass
class ModelContract:
    contract_id: str
    price: int
    state: str = "open"
    due_at_ms: int = 0
    review_deadline_ms: int | None = None


@dataclass
class Model:
    buyer_available: int = GRANT
    buyer_held: int = 0
    provider_available: int = 0
    contracts: list[ModelContract] = field(default_factory=list)

    def settle(self, contract: ModelContract, share_bps: int, state: str) -> None:
        share = contract.price * share_bps // 10_000
        fee = share * FEE_RATE_BPS // 10_000
        self.buyer_held -= contract.price
        self.buyer_available += contract.price - share
        self.provider_available += share - fee
        contract.state, contract.due_at_ms = state, 0


class ContractLifecycleMachine(RuleBasedStateMachine):
    database_url = ""

    @initialize()
    def set_up(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.model = Model()
        self.counter = itertools.count()
        self.buyer, self.provider = AgentKeys.generate(), AgentKeys.generate()
        self.run(self._set_up())

    async def _set_up(self) -> None:
        self.engine = open_database(self.database_url)
        ledger = SqlLedger(self.engine)
        await ensure_platform_accounts(ledger)
        context = ExchangeContext(
            self.engine,
            ledger,
            Escrow(ledger),
            RecordingPublisher(),
            keys=AgentKeys.generate(),
            clock=self.clock,
            operator_ids=frozenset({"operator"}),
            fees=FeeSchedule(escrow_bps=FEE_RATE_BPS),
            lifecycle=LifecycleSettings(
                review_window_s=REVIEW_WINDOW_S, dispute_window_s=DISPUTE_WINDOW_S
            ),
        )
        self.context = context
        self.contracts = ContractUseCases(context)
        advertise = Advertise(
            header=self.header(self.provider, "exchange"),
            capability="model.task",
            description="d",
            price_millicredits=1,
        )
        await CatalogUseCases(context).advertise(self.provider.agent_id, advertise)
        async with self.engine.begin() as connection:
            await ensure_agent_accounts(ledger, [self.buyer.agent_id], connection=connection)
        [outcome] = await ledger.create_transfers(
            [
                NewTransfer(
                    id=f"grant:{self.buyer.agent_id}",
                    debit_account_id=ISSUANCE_ACCOUNT_ID,
                    credit_account_id=agent_account_id(self.buyer.agent_id),
                    amount=GRANT,
                    ledger=LedgerId.CREDITS,
                    code=TransferCode.MINT,
                )
            ]
        )
        assert outcome.result.value == "ok"

    def teardown(self) -> None:
        if hasattr(self, "context"):
            self.run(self.context.close())  # stops the group commit's writer
        if hasattr(self, "engine"):
            self.run(self.engine.dispose())
        self.loop.close()

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    def header(self, keys: AgentKeys, audience: str, subject: str = "s"):  # type: ignore[no-untyped-def]
        return make_header(
            keys, audience=audience, subject=subject, lifetime_s=60, clock=self.clock
        )

    def attempt(self, coroutine) -> bool:  # type: ignore[no-untyped-def]
        try:
            self.run(coroutine)
        except ExchangeError:
            return False
        return True

    def due(self, contract: ModelContract) -> bool:
        return (
            contract.state in ("open", "delivered", "disputed")
            and self.clock.now > contract.due_at_ms
        )

    # --- rules ----------------------------------------------------------------------

    @rule(price=st.integers(min_value=1, max_value=20_000))
    def open_contract(self, price: int) -> None:
        quote = Quote(
            header=self.header(self.provider, self.buyer.agent_id, subjects.rfq("model.task")),
            rfq_id=f"rfq-{next(self.counter)}",
            capability="model.task",
            price_millicredits=price,
            delivery_deadline_ms=self.clock.now + DELIVERY_WINDOW_MS,
        )
        envelope = seal(quote, self.provider)
        acceptance = OpenContract(
            header=self.header(self.buyer, "exchange"), quote=envelope, task=msgspec.Raw(b"{}")
        )
        sealed = seal(acceptance, self.buyer)
        document_bytes = msgspec.json.encode(acceptance)
        verified = VerifiedDocument(acceptance, document_bytes, b"", sealed, verified=True)
        try:
            view = self.run(self.contracts.open_contract(self.buyer.agent_id, verified))
        except ExchangeError as error:
            assert error.code == "insufficient_funds"
            assert self.model.buyer_available < price
            return
        assert self.model.buyer_available >= price
        self.model.buyer_available -= price
        self.model.buyer_held += price
        self.model.contracts.append(
            ModelContract(view.contract_id, price, due_at_ms=self.clock.now + DELIVERY_WINDOW_MS)
        )

    @precondition(lambda self: self.has("open"))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        contract = self.pick(data, "open")
        if contract is None:
            return
        request = Deliver(
            header=self.header(self.provider, "exchange"),
            contract_id=contract.contract_id,
            result=msgspec.Raw(RESULT),
            result_sha256=sha256_hex(RESULT),
        )
        succeeded = self.attempt(self.contracts.deliver(self.provider.agent_id, request))
        expected = contract.state == "open" and not self.due(contract)
        assert succeeded == expected
        if succeeded:
            contract.state = "delivered"
            contract.due_at_ms = self.clock.now + REVIEW_WINDOW_S * 1000

    @precondition(lambda self: self.has("delivered"))
    @rule(data=st.data())
    def accept(self, data: st.DataObject) -> None:
        contract = self.pick(data, "delivered")
        if contract is None:
            return
        request = AcceptDelivery(
            header=self.header(self.buyer, "exchange"),
            contract_id=contract.contract_id,
            result_sha256=sha256_hex(RESULT),
        )
        succeeded = self.attempt(self.contracts.accept_delivery(self.buyer.agent_id, request))
        assert succeeded == (contract.state == "delivered" and not self.due(contract))
        if succeeded:
            self.model.settle(contract, 10_000, "released")

    @precondition(lambda self: self.has("delivered"))
    @rule(data=st.data())
    def reject(self, data: st.DataObject) -> None:
        contract = self.pick(data, "delivered")
        if contract is None:
            return
        request = RejectDelivery(
            header=self.header(self.buyer, "exchange"), contract_id=contract.contract_id, reason="r"
        )
        succeeded = self.attempt(self.contracts.reject_delivery(self.buyer.agent_id, request))
        assert succeeded == (contract.state == "delivered" and not self.due(contract))
        if succeeded:
            contract.state = "disputed"
            contract.due_at_ms = self.clock.now + DISPUTE_WINDOW_S * 1000

    @precondition(lambda self: self.has("disputed"))
    @rule(data=st.data(), share_bps=st.integers(min_value=0, max_value=10_000))
    def resolve(self, data: st.DataObject, share_bps: int) -> None:
        contract = self.pick(data, "disputed")
        if contract is None:
            return
        request = Resolve(
            header=self.header(self.buyer, "exchange"),
            contract_id=contract.contract_id,
            provider_share_bps=share_bps,
        )
        succeeded = self.attempt(self.contracts.resolve("operator", request))
        assert succeeded == (contract.state == "disputed" and not self.due(contract))
        if succeeded:
            self.model.settle(contract, share_bps, "resolved")

    @precondition(lambda self: self.has("open"))
    @rule(data=st.data())
    def provider_cancels(self, data: st.DataObject) -> None:
        contract = self.pick(data, "open")
        if contract is None:
            return
        request = CancelContract(
            header=self.header(self.provider, "exchange"), contract_id=contract.contract_id
        )
        succeeded = self.attempt(self.contracts.cancel(self.provider.agent_id, request))
        assert succeeded == (contract.state == "open" and not self.due(contract))
        if succeeded:
            self.model.settle(contract, 0, "refunded")

    @precondition(lambda self: bool(getattr(self, "model", None) and self.model.contracts))
    @rule(data=st.data())
    def replay_an_acceptance(self, data: st.DataObject) -> None:
        """Any contract, any state: accepting again is refused unless it is due for it."""
        contract = self.pick(data, "released", "refunded", "resolved", "open", "disputed")
        if contract is None:
            return
        request = AcceptDelivery(
            header=self.header(self.buyer, "exchange"),
            contract_id=contract.contract_id,
            result_sha256=sha256_hex(RESULT),
        )
        succeeded = self.attempt(self.contracts.accept_delivery(self.buyer.agent_id, request))
        assert not succeeded

    @rule(seconds=st.integers(min_value=1, max_value=40))
    def advance_clock(self, seconds: int) -> None:
        self.clock.now += seconds * 1000

    @rule()
    def sweep(self) -> None:
        self.run(self.contracts.sweep())
        for contract in self.model.contracts:
            if not self.due(contract):
                continue
            if contract.state == "open":
                self.model.settle(contract, 0, "refunded")
            elif contract.state == "delivered":
                self.model.settle(contract, 10_000, "released")
            else:
                self.model.settle(contract, 5_000, "resolved")

    def has(self, state: str) -> bool:
        model = getattr(self, "model", None)
        return model is not None and any(c.state == state for c in model.contracts)

    def pick(self, data: st.DataObject, *states: str) -> ModelContract | None:
        candidates = [c for c in self.model.contracts if c.state in states]
        if not candidates:
            return None
        return data.draw(st.sampled_from(candidates))

    # --- checks after every step ------------------------------------------------------

    @invariant()
    def balances_match_the_model(self) -> None:
        if not hasattr(self, "contracts"):
            return
        ids = [agent_account_id(self.buyer.agent_id), agent_account_id(self.provider.agent_id)]
        accounts = self.run(SqlLedger(self.engine).lookup_accounts(ids))
        buyer, provider = accounts[ids[0]], accounts[ids[1]]
        assert (buyer.available, buyer.held) == (self.model.buyer_available, self.model.buyer_held)
        assert provider.available == self.model.provider_available

    @invariant()
    def ledger_invariants_hold(self) -> None:
        if hasattr(self, "contracts"):
            self.run(check_exchange_invariants(self.engine))


def test_random_contract_histories_keep_the_books_right(database_url: str) -> None:
    asyncio.new_event_loop().run_until_complete(migrate_database(database_url))
    ContractLifecycleMachine.database_url = database_url
    runner = ContractLifecycleMachine.TestCase
    runner.settings = settings(
        max_examples=20,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    runner().runTest()
