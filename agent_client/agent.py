"""The ``Agent``: what an agent author uses to sell and buy services.

A provider advertises a capability and serves it::

    agent = await Agent.connect(url, AgentKeys.load("provider.seed"))
    await agent.advertise("text.upper", description="Upper-cases text", price_millicredits=500)
    await agent.serve("text.upper", handler, pricing=500)

A buyer asks for quotes, hires the best one, checks and accepts the result::

    quotes = await agent.request_quotes(
        QuoteRequest("text.upper", "shout this", budget_millicredits=1_000)
    )
    contract = await agent.hire(quotes[0], {"text": "hello"})
    delivery = await contract.wait_delivery(timeout_s=10)
    await contract.accept_delivery(delivery)

Negotiation (RFQ and quotes) travels peer to peer; contracts, escrow and
settlement go through the exchange, which checks every signature again.
The provider's side lives in :mod:`agent_client.providing`, the handle on
one contract in :mod:`agent_client.contracts`, and the operator's requests
in :mod:`agent_client.operator`; all of them send through this agent's one
signed request path (:meth:`Agent._signed_request`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from msgspec import Struct

from agent_client import limits, subjects
from agent_client.contracts import Contract, Delivery
from agent_client.errors import (
    AgentClientError,
    AgentClosed,
    ExchangeError,
    ProtocolError,
    RefusedError,
    RequestTimeout,
    SignatureRejected,
    exchange_error,
)
from agent_client.goods import (
    GoodsListing,
    GoodsNotices,
    GoodsPurchase,
    buy_goods,
    download_access,
    get_goods,
    goods_item_id,
    list_goods,
    next_version,
    open_access,
    publish_version,
    verify_licence,
)
from agent_client.keys import AgentKeys
from agent_client.metering import (
    MeteredHandler,
    MeteredSession,
    ReceivedMeteredOffer,
    UnitsOf,
    open_metered_session,
    request_metered_offer,
)
from agent_client.negotiation import BuyerDesk
from agent_client.notice_acks import NoticeAcks
from agent_client.offers import QuoteCollection, QuoteRequest, ReceivedQuote
from agent_client.protocol import (
    SETTLED_STATES,
    AcceptDelivery,
    AcknowledgeNotices,
    Advertise,
    AnalyticsReply,
    BalanceReply,
    CancelContract,
    CashOut,
    CashOutReply,
    ContractOpenedNotice,
    ContractRecord,
    ContractReply,
    ContractState,
    ContractUpdatedNotice,
    ContractView,
    DeliveredNotice,
    Document,
    Envelope,
    ErrorCode,
    ErrorReply,
    EvidenceReply,
    FeesReply,
    GetAnalytics,
    GetBalance,
    GetContract,
    GetEvidence,
    GetFees,
    GetListingHistory,
    GetMeteredEvidence,
    GetReputation,
    GoodsAccessReply,
    GoodsKind,
    GoodsLicence,
    GoodsListReply,
    GoodsNotice,
    GoodsView,
    Header,
    InfoReply,
    LinkedReply,
    LinkHuman,
    Listing,
    ListingHistoryReply,
    ListingReply,
    ListTransactions,
    MeteredEvidenceReply,
    MeteredNotice,
    MeteredView,
    NoticesAckedReply,
    NoticesReply,
    OpenContract,
    PlanView,
    RateContract,
    RatingReply,
    RejectDelivery,
    Reply,
    ReputationReply,
    SearchCatalog,
    SearchReply,
    SearchSort,
    SetListingStatus,
    SubscribeNotices,
    SubscriptionEvent,
    SubscriptionNotice,
    SubscriptionsReply,
    SubscriptionToken,
    SubscriptionView,
    TransactionEntry,
    TransactionsReply,
    Transfer,
    TransferReply,
    endpoint_of,
    json_encoder,
)
from agent_client.providing import Pricing, ProviderDesk, TaskHandler
from agent_client.replies import ANY_AUDIENCE, expect_reply, open_reply
from agent_client.retries import REQUEST_TRIES_DEFAULT, RETRIED_REQUESTS, with_retries
from agent_client.sealing import open_sealed
from agent_client.signing import (
    Clock,
    ReplayGuard,
    SystemClock,
    b64decode,
    make_header,
    new_nonce,
    open_envelope,
    open_envelope_struct,
    seal,
    sha256_hex,
    verify_evidence,
)
from agent_client.stored_results import fetch_result
from agent_client.strategies import BuyerStrategy, ProviderStrategy, Ranking, rank_quotes
from agent_client.subscribing import SubscriptionDesk, verify_subscription_token
from agent_client.transport import IncomingMessage, NatsConnection

__all__ = [
    "Agent",
    "AgentOptions",
    "Contract",
    "Delivery",
    "Pricing",
    "ReceivedQuote",
    "fetch_exchange_info",
]

log = logging.getLogger(__name__)

EXCHANGE_AUDIENCE = "exchange"
PENDING_NOTICES_MAX = 10_000
NOTICE_NONCES_MAX = 200_000
# How long closing waits for the last acknowledgements of notices.
NOTICE_ACKS_CLOSING_S = 2.0
DELIVERY_POLL_INTERVAL_S = 3.0


class AgentState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class AgentOptions:
    request_timeout_s: float = limits.REQUEST_TIMEOUT_DEFAULT_S
    handler_concurrency_max: int = limits.AGENT_HANDLER_CONCURRENCY_MAX
    connect_timeout_s: float = 5.0
    # Pin the exchange's id to refuse any other signer of replies, records
    # and notices; when None it is learned from the exchange's signed info
    # reply over the authenticated connection (only the exchange's key may
    # answer there). Pin it when the NATS server itself is not trusted.
    exchange_id: str | None = None
    name: str = "agentx-agent"
    # On close, hired tasks still running get this long to deliver.
    close_grace_s: float = 5.0
    # Tries of a request whose answer was lost, when its repeat is safe
    # (agent_client/retries.py); 1: never ask again.
    request_tries: int = REQUEST_TRIES_DEFAULT

    def __post_init__(self) -> None:
        assert 0 < self.request_timeout_s <= limits.REQUEST_TIMEOUT_MAX_S
        assert 0 < self.handler_concurrency_max <= 10_000
        assert 1 <= self.request_tries <= 10


@dataclass(slots=True)
class _Notices:
    """Deliveries and settlements that arrived, waiting for the code that asks.

    Bounded: when full, the oldest entries go first (answered ones before
    ones still awaited), so an agent that never asks does not grow forever.
    """

    deliveries: OrderedDict[str, asyncio.Future[DeliveredNotice]] = field(
        default_factory=OrderedDict
    )
    settlements: OrderedDict[str, asyncio.Future[ContractUpdatedNotice]] = field(
        default_factory=OrderedDict
    )

    def future_for(self, table: OrderedDict[str, asyncio.Future[Any]], contract_id: str) -> Any:
        if contract_id not in table:
            if len(table) >= PENDING_NOTICES_MAX:
                _evict_oldest(table)
            table[contract_id] = asyncio.get_running_loop().create_future()
        return table[contract_id]


def _evict_oldest(table: OrderedDict[str, asyncio.Future[Any]]) -> None:
    for contract_id, future in table.items():
        if future.done():
            del table[contract_id]
            return
    table.popitem(last=False)


class Agent:
    """An agent connected to the exchange. Create it with :meth:`connect`."""

    def __init__(
        self,
        connection: NatsConnection,
        keys: AgentKeys,
        /,
        *,
        options: AgentOptions,
        exchange_id: str,
        portal_id: str | None,
        clock: Clock,
        previous_exchange_ids: frozenset[str] = frozenset(),
    ) -> None:
        self._connection = connection
        self._keys = keys
        self._options = options
        self._clock = clock
        # Notices live days, RFQs seconds: separate caches (the provider desk
        # keeps the RFQ one), so that remembered notices never crowd out RFQ
        # nonces (or the reverse).
        self._notice_guard = ReplayGuard(entries_max=NOTICE_NONCES_MAX)
        # Within the exchange's per-agent limit, however many tasks ask at once.
        self._requests_in_flight = asyncio.Semaphore(limits.REQUESTS_IN_FLIGHT_MAX)
        self._notices = _Notices()
        self._state = AgentState.OPEN
        self._buyer_desk = BuyerDesk(connection, keys, clock=clock)
        self._provider = ProviderDesk(
            connection,
            keys,
            clock=clock,
            request=self._request,
            verify_record=self._verify_record,
            handler_concurrency_max=options.handler_concurrency_max,
        )
        self._subscriptions = SubscriptionDesk(self._request)
        self._goods_notices = GoodsNotices()
        self._notice_acks = NoticeAcks(self._acknowledge_notices)
        self.agent_id = keys.agent_id
        self.exchange_id = exchange_id
        self.portal_id = portal_id
        self._evidence_signers = previous_exchange_ids | {exchange_id}

    @classmethod
    async def connect(
        cls,
        url: str,
        keys: AgentKeys,
        /,
        *,
        options: AgentOptions | None = None,
        clock: Clock | None = None,
    ) -> Agent:
        """Connect, learn (or check) the exchange's id, and listen for notices."""
        options = options or AgentOptions()
        clock = clock or SystemClock()
        connection = await NatsConnection.connect(
            url, keys, name=options.name, connect_timeout_s=options.connect_timeout_s
        )
        try:
            info = await fetch_exchange_info(
                connection,
                pinned_exchange_id=options.exchange_id,
                timeout_s=options.request_timeout_s,
                clock=clock,
            )
            agent = cls(
                connection,
                keys,
                options=options,
                exchange_id=info.exchange_id,
                portal_id=info.portal_id,
                previous_exchange_ids=frozenset(info.previous_exchange_ids),
                clock=clock,
            )
            await agent._listen_for_notices()
        except BaseException:
            await connection.close()
            raise
        return agent

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop serving, let running handlers finish, and disconnect."""
        if self._state is AgentState.CLOSED:
            return
        # What is handled by now is acknowledged, if the exchange answers soon; a
        # notice handled later comes again to the next process of this agent.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NOTICE_ACKS_CLOSING_S):
                await self._notice_acks.close()
        self._state = AgentState.CLOSED
        # Hired tasks in flight get a short grace period to deliver.
        await self._provider.close(grace_s=self._options.close_grace_s)
        await self._connection.close()

    # --- catalog ---------------------------------------------------------------

    async def advertise(
        self,
        capability: str,
        /,
        *,
        description: str,
        price_millicredits: int,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        version: str = "1.0.0",
        active: bool = True,
        tags: Sequence[str] = (),
    ) -> Listing:
        """Publish a listing, or revise it: any changed field makes a new revision."""
        reply = await self._request(
            Advertise,
            lambda header: Advertise(
                header=header,
                capability=capability,
                description=description,
                price_millicredits=price_millicredits,
                input_schema=input_schema or {},
                output_schema=output_schema or {},
                version=version,
                status="active" if active else "inactive",
                tags=list(tags),
            ),
        )
        return expect_reply(reply, ListingReply).listing

    async def search(
        self,
        *,
        capability: str | None = None,
        text: str | None = None,
        price_max_millicredits: int | None = None,
        limit: int = 20,
        offset: int = 0,
        price_min_millicredits: int | None = None,
        tags: Sequence[str] = (),
        rating_min: float | None = None,
        settled_count_min: int | None = None,
        sort: SearchSort = "price",
    ) -> SearchReply:
        """Active listings matching every filter given; each carries its reputation.

        ``text`` matches whole words (stemmed) of the capability, description
        and tags; ``tags`` must all be on a listing; ``sort`` is ``price``
        (cheapest first), ``rating``, ``settled`` or ``newest``. Page with
        ``offset`` while ``has_more``.
        """
        reply = await self._request(
            SearchCatalog,
            lambda header: SearchCatalog(
                header=header,
                capability=capability,
                text=text,
                price_max_millicredits=price_max_millicredits,
                limit=limit,
                offset=offset,
                price_min_millicredits=price_min_millicredits,
                tags=list(tags),
                rating_min=rating_min,
                settled_count_min=settled_count_min,
                sort=sort,
            ),
        )
        return expect_reply(reply, SearchReply)

    async def deactivate(self, capability: str, /) -> Listing:
        """Hide this agent's listing from search and refuse new contracts for it (a new
        revision). An operator hides another provider's listing through
        :meth:`OperatorClient.deactivate_listing
        <agent_client.operator.OperatorClient.deactivate_listing>`."""
        return await self._set_listing_status(capability, "inactive", None)

    async def reactivate(self, capability: str, /) -> Listing:
        return await self._set_listing_status(capability, "active", None)

    async def _set_listing_status(
        self, capability: str, status: Literal["active", "inactive"], provider_id: str | None
    ) -> Listing:
        """The one path for (de)activating a listing, this agent's or (as an operator,
        naming ``provider_id``) another provider's."""
        reply = await self._request(
            SetListingStatus,
            lambda header: SetListingStatus(
                header=header, capability=capability, status=status, provider_id=provider_id
            ),
        )
        return expect_reply(reply, ListingReply).listing

    async def listing_history(
        self,
        provider_id: str,
        capability: str,
        /,
        *,
        limit: int = 20,
        before_revision: int | None = None,
    ) -> ListingHistoryReply:
        """A listing's revisions, newest first; page with ``before_revision``."""
        reply = await self._request(
            GetListingHistory,
            lambda header: GetListingHistory(
                header=header,
                provider_id=provider_id,
                capability=capability,
                limit=limit,
                before_revision=before_revision,
            ),
        )
        return expect_reply(reply, ListingHistoryReply)

    async def reputation(
        self, provider_id: str, /, *, capability: str | None = None, ratings_limit: int = 10
    ) -> ReputationReply:
        """A provider's reputation from settled contracts, with its latest ratings."""
        reply = await self._request(
            GetReputation,
            lambda header: GetReputation(
                header=header,
                provider_id=provider_id,
                capability=capability,
                ratings_limit=ratings_limit,
            ),
        )
        return expect_reply(reply, ReputationReply)

    # --- providing (agent_client/providing.py) -----------------------------------

    async def serve(
        self,
        capability: str,
        handler: TaskHandler,
        /,
        *,
        pricing: Pricing,
        negotiation: ProviderStrategy | None = None,
        quote_validity_s: float = limits.QUOTE_VALIDITY_DEFAULT_S,
    ) -> None:
        """Answer RFQs for ``capability`` and run ``handler`` for hired tasks.

        ``handler`` receives the task (decoded JSON) and returns the result
        (any JSON value); it runs when the exchange says the price is held,
        and its result is delivered (retried until the deadline while the
        failure may pass later). ``pricing`` sets the first quote; with a
        ``negotiation`` strategy (for example
        :class:`~agent_client.strategies.ConcedingProvider`) the agent also
        answers counter-offers, otherwise it declines them. Every quote it
        signs binds it until ``quote_validity_s`` has passed. A handler that
        cannot do a task raises :class:`~agent_client.errors.TaskDeclined`:
        the agent cancels the contract at once and the buyer is refunded.
        """
        self._check_open()
        await self._provider.serve(
            capability,
            handler,
            pricing=pricing,
            negotiation=negotiation,
            quote_validity_s=quote_validity_s,
        )

    async def metered_evidence(
        self, contract_id: str, /, *, limit: int = 50, before_units: int | None = None
    ) -> MeteredEvidenceReply:
        """A metered session's evidence (parties and operators): the signed offer and
        acceptance, and its claims with their receipts, newest first."""
        reply = await self._request(
            GetMeteredEvidence,
            lambda header: GetMeteredEvidence(
                header=header, contract_id=contract_id, limit=limit, before_units=before_units
            ),
        )
        return expect_reply(reply, MeteredEvidenceReply)

    async def analytics(self, *, days: int = 30, capability: str | None = None) -> AnalyticsReply:
        """This agent's own figures as a provider, per listing, over the last ``days``
        days; naming a ``capability`` adds its figures per day."""
        reply = await self._request(
            GetAnalytics,
            lambda header: GetAnalytics(header=header, days=days, capability=capability),
        )
        return expect_reply(reply, AnalyticsReply)

    async def fees(self) -> FeesReply:
        """The fee table in force: what each kind of payment costs, before paying."""
        reply = await self._request(GetFees, lambda header: GetFees(header=header))
        return expect_reply(reply, FeesReply)

    # --- subscriptions (agent_client/subscribing.py) ---------------------------

    async def publish_plan(
        self,
        capability: str,
        plan: str,
        /,
        *,
        price_millicredits: int,
        period_s: int,
        trial_s: int = 0,
        description: str = "",
    ) -> PlanView:
        """Provider: offer a plan (a price per period, an optional free trial) on a
        capability this agent lists. Its terms never change; a new price is a new plan."""
        return await self._subscriptions.publish_plan(
            capability,
            plan,
            price_millicredits=price_millicredits,
            period_s=period_s,
            trial_s=trial_s,
            description=description,
        )

    async def withdraw_plan(self, plan: PlanView, /) -> PlanView:
        """Provider: take no new subscribers on ``plan`` (running subscriptions go on)."""
        return await self._subscriptions.publish_plan(
            plan.capability,
            plan.plan,
            price_millicredits=plan.price_millicredits,
            period_s=plan.period_s,
            trial_s=plan.trial_s,
            description=plan.description,
            active=False,
        )

    async def plans(
        self, *, provider_id: str | None = None, capability: str | None = None
    ) -> list[PlanView]:
        """The active plans of a provider, or on a capability."""
        return await self._subscriptions.plans(provider_id=provider_id, capability=capability)

    async def subscribe(
        self, plan: PlanView, /, *, request_id: str | None = None
    ) -> SubscriptionView:
        """Buyer: subscribe; the first period is charged now (or when the trial ends)
        and each later one by the exchange, under the human's spending controls."""
        return await self._subscriptions.subscribe(plan, request_id=request_id)

    async def cancel_subscription(self, subscription_id: str, /) -> SubscriptionView:
        """Buyer or provider: cancel at the end of the paid period (no refund, no renewal)."""
        return await self._subscriptions.cancel(subscription_id)

    async def subscription(self, subscription_id: str, /) -> SubscriptionView:
        return await self._subscriptions.get(subscription_id)

    async def subscriptions(
        self, *, role: str = "buyer", after_id: str | None = None, limit: int = 50
    ) -> SubscriptionsReply:
        """This agent's subscriptions as ``buyer`` or ``provider``, by id, one page."""
        return await self._subscriptions.page(role=role, after_id=after_id, limit=limit)

    async def subscription_token(self, subscription_id: str, /) -> Envelope:
        """Buyer: a fresh signed token (minutes long) to show the provider."""
        return await self._subscriptions.token(subscription_id)

    def check_subscription_token(
        self, token: Envelope, /, *, capability: str | None = None
    ) -> SubscriptionToken:
        """Provider: check a buyer's token offline (SignatureRejected when it fails)."""
        return verify_subscription_token(
            token,
            exchange_ids=self._evidence_signers,
            provider_id=self.agent_id,
            clock=self._clock,
            capability=capability,
        )

    async def wait_subscription_event(
        self, subscription_id: str, event: SubscriptionEvent, /, *, timeout_s: float = 30.0
    ) -> SubscriptionView:
        """Wait for a subscription's notice of ``event`` (``renewed``, ``lapsed``, ...)."""
        return await self._subscriptions.wait_event(subscription_id, event, timeout_s=timeout_s)

    # --- digital goods (agent_client/goods.py) ---------------------------------

    async def publish_goods(
        self,
        slug: str,
        artifact: bytes,
        /,
        *,
        title: str,
        capability: str,
        price_millicredits: int,
        artifact_kind: GoodsKind = "package",
        description: str = "",
        terms: str = "",
        updates_included: int | None = None,
        version: int | None = None,
    ) -> GoodsView:
        """Provider: sell ``artifact`` as the next version of item ``slug`` (version 1
        creates it). It is encrypted here with a fresh key; the exchange stores only the
        ciphertext and the key sealed to itself. ``updates_included`` is how many later
        versions a licence sold from now on covers (None: all)."""
        self._check_open()
        item_id = goods_item_id(self.agent_id, slug)
        next_version_number = version or await next_version(self._request, item_id)
        listing = GoodsListing(
            title=title,
            capability=capability,
            price_millicredits=price_millicredits,
            artifact_kind=artifact_kind,
            description=description,
            terms=terms,
            updates_included=updates_included,
        )
        return await publish_version(
            self._request,
            slug,
            artifact,
            listing=listing,
            version=next_version_number,
            exchange_id=self.exchange_id,
        )

    async def buy_goods(self, item_id: str, /, *, price_millicredits: int) -> GoodsPurchase:
        """Buyer: pay ``price_millicredits`` (refused with ``price_changed`` if the item now
        costs otherwise), and get the licence and the current version, decrypted. Buying
        again is safe: a holder gets its licence back and pays nothing."""
        self._check_open()
        access = await buy_goods(self._request, item_id, price_millicredits=price_millicredits)
        return await self._open_goods(access)

    async def download_goods(self, item_id: str, /, version: int | None = None) -> GoodsPurchase:
        """Holder: a version its licence covers (None: the newest), decrypted."""
        self._check_open()
        return await self._open_goods(await download_access(self._request, item_id, version))

    async def goods(self, item_id: str, /) -> GoodsView:
        """An item's public view: its newest version, price and terms (never a key)."""
        return await get_goods(self._request, item_id)

    async def list_goods(
        self, *, provider_id: str | None = None, limit: int = 20, offset: int = 0
    ) -> GoodsListReply:
        return await list_goods(self._request, provider_id=provider_id, limit=limit, offset=offset)

    def verify_licence(self, licence: Envelope, /) -> GoodsLicence:
        """Check a licence offline: signed by this exchange (or a key it retired)."""
        return verify_licence(
            licence,
            self.exchange_id,
            clock=self._clock,
            retired_exchange_ids=frozenset(self._evidence_signers),
        )

    async def next_goods_notice(self, *, timeout_s: float = 30.0) -> GoodsNotice:
        """The next ``notice.goods`` that arrived: a new version this agent's licence
        covers (``version``), or a sale of its item (``sold``)."""
        return await self._goods_notices.next(timeout_s=timeout_s)

    async def _open_goods(self, access: GoodsAccessReply) -> GoodsPurchase:
        return await open_access(
            self._request,
            self._keys,
            access,
            exchange_id=self.exchange_id,
            clock=self._clock,
            retired_exchange_ids=frozenset(self._evidence_signers),
        )

    # --- metered calls (agent_client/metering.py) ------------------------------

    async def serve_metered(
        self,
        capability: str,
        handler: MeteredHandler,
        /,
        *,
        unit_price_millicredits: int,
        units_per_price: int = 1,
        units_of: UnitsOf = lambda _input, _output: 1,
        unpaid_units_max: int = 1,
        offer_validity_s: float = limits.QUOTE_VALIDITY_DEFAULT_S,
    ) -> None:
        """Sell ``capability`` per call: answer offer requests and run ``handler``
        for each call of an open session (``units_of`` says what a call consumed).

        A buyer whose signed receipts lag more than ``unpaid_units_max`` units
        behind what it received gets no more calls. Claim with
        :meth:`claim_usage` (as often as you like) or :meth:`close_metered`.
        """
        self._check_open()
        self._provider.metered.add(
            capability,
            handler,
            unit_price_millicredits=unit_price_millicredits,
            units_per_price=units_per_price,
            units_of=units_of,
            unpaid_units_max=unpaid_units_max,
            offer_validity_s=offer_validity_s,
        )
        await self._provider.listen_direct()

    async def claim_usage(self, contract_id: str, /) -> MeteredView:
        """Provider: capture what the latest receipt of the session owes."""
        self._check_open()
        return await self._provider.metered.claim(contract_id)

    async def close_metered(self, contract_id: str, /) -> MeteredView:
        """Provider: claim the latest receipt and end the session now."""
        self._check_open()
        return await self._provider.metered.close(contract_id)

    async def metered_offer(
        self, provider_id: str, capability: str, /, *, timeout_s: float = 10.0
    ) -> ReceivedMeteredOffer:
        """Buyer: ask a provider for its signed metered terms."""
        self._check_open()
        return await request_metered_offer(
            self._connection,
            self._keys,
            provider_id,
            capability,
            clock=self._clock,
            timeout_s=timeout_s,
        )

    async def open_metered(
        self,
        offer: ReceivedMeteredOffer,
        /,
        *,
        ceiling_millicredits: int,
        session_s: int = limits.METERED_SESSION_DEFAULT_S,
    ) -> MeteredSession:
        """Buyer: hold ``ceiling_millicredits`` and open the session; call through it."""
        self._check_open()
        view = await open_metered_session(
            offer,
            ceiling_millicredits=ceiling_millicredits,
            session_s=session_s,
            request=self._request,
        )
        return MeteredSession(
            view,
            connection=self._connection,
            keys=self._keys,
            clock=self._clock,
            request=self._request,
        )

    async def deliver(
        self, contract_id: str, result: Any, /, *, seal_for: str | None = None
    ) -> ContractView:
        """Send a contract's result (any JSON value) with its hash.

        ``serve`` does this for you; call it directly to deliver work done
        outside a handler. ``seal_for`` (the buyer's id, when the buyer asked
        for it) seals the result so that only the buyer can read it. A result
        over the inline limit is uploaded to the exchange first, in chunks.
        """
        return await self._provider.deliver(contract_id, result, seal_for=seal_for)

    # --- buying ----------------------------------------------------------------

    async def request_quotes(
        self,
        request: QuoteRequest,
        /,
        *,
        ranking: Ranking = rank_quotes,
        reputation: Mapping[str, float] | None = None,
    ) -> list[ReceivedQuote]:
        """Publish an RFQ and collect valid quotes, best first (see :meth:`call_for_quotes`)."""
        collection = await self.call_for_quotes(request, ranking=ranking, reputation=reputation)
        return list(collection.quotes)

    async def call_for_quotes(
        self,
        request: QuoteRequest,
        /,
        *,
        ranking: Ranking = rank_quotes,
        reputation: Mapping[str, float] | None = None,
    ) -> QuoteCollection:
        """Publish an RFQ; return the valid quotes, ranked, and the providers' declines.

        Collection stops at the request's ``timeout_s`` (the RFQ's quote
        deadline) or after its ``quotes_max`` quotes. ``ranking`` orders the
        quotes (the default weighs price, promised delivery time and, if
        ``reputation`` maps provider ids to scores in 0..1, reputation).
        Answers that fail verification are logged and left out.
        """
        self._check_open()
        return await self._buyer_desk.call_for_quotes(
            request, ranking=ranking, reputation=reputation
        )

    async def counter(
        self,
        quote: ReceivedQuote,
        price_millicredits: int,
        /,
        *,
        validity_s: float = limits.COUNTER_VALIDITY_DEFAULT_S,
        timeout_s: float = limits.COUNTER_REPLY_TIMEOUT_DEFAULT_S,
    ) -> ReceivedQuote:
        """Send a counter-offer; return the provider's quote of the next round.

        Raises :class:`~agent_client.errors.OfferDeclined` (with the
        provider's code, e.g. ``quote_expired``) when the provider declines.
        """
        self._check_open()
        return await self._buyer_desk.counter(
            quote, price_millicredits, validity_s=validity_s, timeout_s=timeout_s
        )

    async def walk_away(self, quote: ReceivedQuote, /, *, reason: str = "") -> None:
        """Leave a negotiation: a signed ``reject`` of the provider's latest quote."""
        self._check_open()
        await self._buyer_desk.walk_away(quote, reason=reason)

    async def negotiate(
        self,
        request: QuoteRequest,
        /,
        *,
        strategy: BuyerStrategy,
        ranking: Ranking = rank_quotes,
        reputation: Mapping[str, float] | None = None,
        counter_timeout_s: float = limits.COUNTER_REPLY_TIMEOUT_DEFAULT_S,
    ) -> ReceivedQuote:
        """Call for quotes and bargain, best ranked provider first, until one deal.

        ``strategy`` (for example :class:`~agent_client.strategies.TargetPriceBuyer`)
        decides at each offer; no quote is accepted above its budget or the
        request's. Returns the agreed quote, to pass to :meth:`hire`; raises
        :class:`~agent_client.errors.NoDeal` (with every decline) if no
        provider agreed.
        """
        self._check_open()
        return await self._buyer_desk.negotiate(
            request,
            strategy=strategy,
            ranking=ranking,
            reputation=reputation,
            counter_timeout_s=counter_timeout_s,
        )

    async def hire(
        self, quote: ReceivedQuote, task: Any, /, *, seal_result: bool = False
    ) -> Contract:
        """Accept a quote: the exchange holds the price in escrow and opens the contract.

        ``seal_result`` asks the provider to seal the result to this agent's
        key, so the exchange never sees it (nor checks it against a schema).
        """
        task_bytes = json_encoder.encode(task)
        if len(task_bytes) > limits.TASK_BYTES_MAX:
            raise ProtocolError(ErrorCode.PAYLOAD_TOO_LARGE, f"task over {limits.TASK_BYTES_MAX} B")
        try:
            reply = await self._request(
                OpenContract,
                lambda header: OpenContract(
                    header=header,
                    quote=quote.envelope,
                    task=msgspec.Raw(task_bytes),
                    history=quote.history,
                    seal_result=seal_result,
                ),
            )
            view = expect_reply(reply, ContractReply).contract
        except RefusedError as refused:
            # This quote opened a contract already: an earlier try whose answer
            # was lost (retried), or an earlier hire. It is this buyer's: read it.
            if refused.code != ErrorCode.QUOTE_ALREADY_ACCEPTED or refused.contract_id is None:
                raise
            view = await self.contract(refused.contract_id)
        return Contract(self, self._verify_record(view.record))

    async def wait_delivery(self, contract_id: str, /, *, timeout_s: float = 30.0) -> Delivery:
        """Wait for the provider's result, checked against its hash.

        The delivery notice usually arrives first; if it was missed (the agent
        was disconnected), asking the exchange every few seconds finds it.
        """
        future = self._notices.future_for(self._notices.deliveries, contract_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        delivered: DeliveredNotice | ContractView | None = None
        while delivered is None and (remaining_s := deadline - loop.time()) > 0:
            try:
                wait_s = min(remaining_s, DELIVERY_POLL_INTERVAL_S)
                delivered = await asyncio.wait_for(asyncio.shield(future), wait_s)
            except TimeoutError:
                view = await self._poll_contract(contract_id)
                if view is not None and view.result_sha256 is not None:
                    delivered = view
        self._notices.deliveries.pop(contract_id, None)
        if delivered is None or delivered.result_sha256 is None:
            raise RequestTimeout(f"delivery of {contract_id}", timeout_s)
        return await self._open_delivery(contract_id, delivered)

    async def _open_delivery(
        self, contract_id: str, delivered: DeliveredNotice | ContractView
    ) -> Delivery:
        """Fetch (if stored), check the hash, open (if sealed) and decode a result."""
        assert delivered.result_sha256 is not None
        reference = delivered.result_ref
        if reference is None:
            result_bytes = bytes(delivered.result)
        else:
            result_bytes = await fetch_result(self._request, contract_id, reference)
        if sha256_hex(result_bytes) != delivered.result_sha256:
            raise ProtocolError(
                ErrorCode.HASH_MISMATCH, "the delivered result does not match its hash"
            )
        sealed = (
            delivered.sealed if isinstance(delivered, DeliveredNotice) else delivered.seal_result
        )
        if sealed:
            ciphertext = b64decode(msgspec.json.decode(result_bytes, type=str))
            result_bytes = open_sealed(self._keys, ciphertext)
        return Delivery(contract_id, msgspec.json.decode(result_bytes), delivered.result_sha256)

    async def _poll_contract(self, contract_id: str) -> ContractView | None:
        """One look at a contract while waiting; a transient failure just waits on."""
        try:
            return await self.contract(contract_id)
        except RequestTimeout:
            return None
        except ExchangeError as exc:
            if exc.code == ErrorCode.UNAVAILABLE:
                return None
            raise

    async def accept_delivery(self, delivery: Delivery, /) -> ContractView:
        """Accept a delivery: the exchange releases the price to the provider."""
        try:
            reply = await self._request(
                AcceptDelivery,
                lambda header: AcceptDelivery(
                    header=header,
                    contract_id=delivery.contract_id,
                    result_sha256=delivery.result_sha256,
                ),
            )
        except RefusedError as refused:
            # Released already: by an earlier try whose answer was lost, or by
            # the review window's auto-release. Either way, what was asked holds.
            if refused.code != ErrorCode.INVALID_STATE:
                raise
            view = await self.contract(delivery.contract_id)
            if view.state is not ContractState.RELEASED:
                raise
            return view
        return expect_reply(reply, ContractReply).contract

    async def rate(self, contract_id: str, stars: int, /, comment: str = "") -> RatingReply:
        """Rate a released contract you bought, 1 to 5 stars, once."""
        reply = await self._request(
            RateContract,
            lambda header: RateContract(
                header=header, contract_id=contract_id, stars=stars, comment=comment
            ),
        )
        return expect_reply(reply, RatingReply)

    async def contract(self, contract_id: str, /) -> ContractView:
        """The contract as the exchange holds it now, with its task and result."""
        reply = await self._request(
            GetContract, lambda header: GetContract(header=header, contract_id=contract_id)
        )
        return expect_reply(reply, ContractReply).contract

    async def wait_settled(
        self, contract_id: str, /, *, timeout_s: float = 30.0
    ) -> ContractUpdatedNotice:
        """Wait until the exchange says the contract settled (released, refunded or resolved)."""
        future = self._notices.future_for(self._notices.settlements, contract_id)
        try:
            notice: ContractUpdatedNotice = await asyncio.wait_for(
                asyncio.shield(future), timeout_s
            )
        except TimeoutError as exc:
            raise RequestTimeout(f"settlement of {contract_id}", timeout_s) from exc
        self._notices.settlements.pop(contract_id, None)
        return notice

    async def reject_delivery(self, contract_id: str, /, *, reason: str) -> ContractView:
        """Refuse a delivery: the contract goes to dispute and the price stays held."""
        reply = await self._request(
            RejectDelivery,
            lambda header: RejectDelivery(header=header, contract_id=contract_id, reason=reason),
        )
        return expect_reply(reply, ContractReply).contract

    async def cancel(self, contract_id: str, /, *, reason: str = "") -> ContractView:
        """Before delivery. A provider's cancel refunds the buyer; a buyer's cancel is
        a request that refunds once the provider cancels too."""
        reply = await self._request(
            CancelContract,
            lambda header: CancelContract(header=header, contract_id=contract_id, reason=reason),
        )
        return expect_reply(reply, ContractReply).contract

    async def evidence(self, contract_id: str, /) -> EvidenceReply:
        """The contract's evidence bundle (parties and operators)."""
        reply = await self._request(
            GetEvidence,
            lambda header: GetEvidence(header=header, contract_id=contract_id),
        )
        return expect_reply(reply, EvidenceReply)

    # --- wallet ----------------------------------------------------------------

    async def balance(self) -> BalanceReply:
        return expect_reply(await self._request(GetBalance, _balance_request), BalanceReply)

    async def transactions(
        self, *, limit: int = 50, before_timestamp_us: int | None = None
    ) -> list[TransactionEntry]:
        reply = await self._request(
            ListTransactions,
            lambda header: ListTransactions(
                header=header, limit=limit, before_timestamp_us=before_timestamp_us
            ),
        )
        return expect_reply(reply, TransactionsReply).entries

    async def transfer(
        self,
        to_agent_id: str,
        amount_millicredits: int,
        /,
        *,
        transfer_id: str | None = None,
        memo: str = "",
    ) -> TransferReply:
        """Pay another agent directly; the payee gets the amount less the transfer fee.

        Pass the same ``transfer_id`` when retrying after a timeout: the
        exchange then returns the first outcome instead of paying again.
        """
        key = transfer_id or new_nonce()
        reply = await self._request(
            Transfer,
            lambda header: Transfer(
                header=header,
                transfer_id=key,
                payee_id=to_agent_id,
                amount_millicredits=amount_millicredits,
                memo=memo,
            ),
        )
        return expect_reply(reply, TransferReply)

    # --- the human portal -------------------------------------------------------

    async def link_human(self, code: str, /) -> LinkedReply:
        """Link this agent to the portal account that shows ``code`` (one use).

        Signing the code proves to the portal that whoever holds this agent's
        key agrees; the human then funds it, sets its budget and watches it.
        """
        reply = await self._portal_request(
            subjects.PORTAL_LINK_SUBJECT_FORMAT, lambda header: LinkHuman(header=header, code=code)
        )
        return expect_reply(reply, LinkedReply)

    async def cash_out(self, credits: int, /, *, request_id: str | None = None) -> CashOutReply:
        """Cash out whole credits to the linked human's Stripe account.

        Needs the human's standing permission (set in the portal). Pass the same
        ``request_id`` when retrying after a timeout: the portal then returns
        the first payout instead of making a second one.
        """
        key = request_id or new_nonce()
        reply = await self._portal_request(
            subjects.PORTAL_CASH_OUT_SUBJECT_FORMAT,
            lambda header: CashOut(header=header, request_id=key, credits=credits),
        )
        return expect_reply(reply, CashOutReply)

    # --- plumbing --------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is AgentState.CLOSED:
            raise AgentClosed()

    def _header(self, *, audience: str, subject: str, lifetime_s: float) -> Header:
        return make_header(
            self._keys, audience=audience, subject=subject, lifetime_s=lifetime_s, clock=self._clock
        )

    async def _request(
        self, document_type: type[Struct], build: Callable[[Header], Document]
    ) -> Reply:
        """A signed request to the exchange (its endpoint is the document's tag);
        its signed reply, verified."""
        subject = subjects.exchange_request(self.agent_id, endpoint_of(document_type))

        async def send() -> Reply:
            return await self._signed_request(subject, EXCHANGE_AUDIENCE, self.exchange_id, build)

        if document_type not in RETRIED_REQUESTS:
            return await send()
        return await with_retries(send, what=subject, tries=self._options.request_tries)

    async def _portal_request(
        self, subject_format: str, build: Callable[[Header], Document]
    ) -> Reply:
        """A signed request to the human portal, whose id the exchange's info named."""
        if self.portal_id is None:
            # Not transient: this exchange was started without a portal.
            raise exchange_error(ErrorCode.NOT_FOUND, "this exchange runs no human portal")
        subject = subject_format.format(agent_id=self.agent_id)
        return await self._signed_request(subject, subjects.PORTAL_AUDIENCE, self.portal_id, build)

    async def _signed_request(
        self, subject: str, audience: str, signer_id: str, build: Callable[[Header], Document]
    ) -> Reply:
        """Sign, send, and believe the answer only once it verifies (agent_client/replies.py).

        This is the one path of every request to the exchange and the portal.
        A typed error reply raises the :class:`ExchangeError` subclass its code
        calls for (:func:`~agent_client.errors.exchange_error`); a reply that
        does not verify raises SignatureRejected, whatever it says.
        """
        self._check_open()
        timeout_s = self._options.request_timeout_s
        # The document lives a little longer than the request's timeout, so a
        # slow but successful answer does not see it expire mid-flight.
        lifetime_s = min(timeout_s + 5, limits.REQUEST_LIFETIME_MAX_S)
        async with self._requests_in_flight:
            header = self._header(audience=audience, subject=subject, lifetime_s=lifetime_s)
            payload = json_encoder.encode(seal(build(header), self._keys))
            reply_bytes = await self._connection.request(subject, payload, timeout_s=timeout_s)
        _, reply = open_reply(
            reply_bytes,
            signer_id=signer_id,
            audience=self.agent_id,
            request_subject=subject,
            request_payload=payload,
            clock=self._clock,
        )
        if isinstance(reply, ErrorReply):
            raise exchange_error(reply.code, reply.message, contract_id=reply.contract_id)
        return reply

    def _verify_record(self, envelope: Envelope, /) -> ContractRecord:
        """A contract record the exchange signed (with its current or a retired key)."""
        verified = verify_evidence(
            open_envelope_struct(envelope),
            expected_type=ContractRecord,
            audience=None,
            clock=self._clock,
            lifetime_max_s=limits.CONTRACT_RECORD_LIFETIME_S,
        )
        record = verified.document
        assert isinstance(record, ContractRecord)
        self._check_evidence_signer(record)
        return record

    def _check_evidence_signer(self, document: Document) -> None:
        """Records and notices come from the exchange's key, or from a key it retired
        (its signed ``info`` names those), so evidence outlives a key rotation."""
        if document.header.issuer not in self._evidence_signers:
            raise SignatureRejected(ErrorCode.SIGNER_MISMATCH, "not signed by the exchange")

    async def _listen_for_notices(self) -> None:
        # Listen first, then ask: the exchange answers notices.subscribe by
        # sending again what this agent has not acknowledged, and those must
        # find the subscription in place. The subject lies inside this agent's
        # own inbox prefix: nobody else may receive there.
        await self._connection.subscribe(
            subjects.notice_deliver_subject(self.agent_id),
            self._on_notice_message,
            queue=subjects.notice_queue_group(self.agent_id),
            concurrency_max=self._options.handler_concurrency_max,
        )
        await self._ask_for_notices()
        # Notices sent while the connection was down were lost on the way:
        # asking again has them sent again.
        self._connection.when_reconnected(self._ask_for_notices_again)

    async def _ask_for_notices(self) -> None:
        reply = expect_reply(
            await self._request(SubscribeNotices, _subscribe_notices_request), NoticesReply
        )
        if reply.deliver_subject != subjects.notice_deliver_subject(self.agent_id):
            raise ProtocolError(
                ErrorCode.MALFORMED, "notices must arrive on this agent's notice subject"
            )

    async def _ask_for_notices_again(self) -> None:
        if self._state is AgentState.CLOSED:
            return
        try:
            await self._ask_for_notices()
        except AgentClientError as exc:
            # The exchange sends unacknowledged notices again after its ack wait anyway.
            log.warning("could not ask for missed notices after a reconnect: %s", exc)

    async def _acknowledge_notices(self, notice_ids: list[str]) -> None:
        expect_reply(
            await self._request(
                AcknowledgeNotices,
                lambda header: AcknowledgeNotices(header=header, notice_ids=notice_ids),
            ),
            NoticesAckedReply,
        )

    async def _on_notice_message(self, message: IncomingMessage) -> None:
        notice_id = await self._on_notice(message)
        if notice_id is not None:
            # Acknowledged once handled, even if the handler failed: a notice
            # that breaks a handler would break it again.
            self._notice_acks.add(notice_id)

    async def _on_notice(self, message: IncomingMessage) -> str | None:
        """Handle one notice; its id if it was the exchange's (new or a repeat)."""
        verified = self._verified_notice(message)
        if verified is None:
            return None
        notice, first_time = verified
        if not first_time:
            return notice.header.nonce
        try:
            await self._handle_notice(notice)
        except Exception:
            log.exception("a notice handler failed for %s", type(notice).__name__)
        return notice.header.nonce

    async def _handle_notice(self, notice: Document) -> None:
        if isinstance(notice, ContractOpenedNotice):
            # The task may run long; the notice is acknowledged now and the
            # exchange refuses a second delivery if it ever came again.
            self._provider.start_performing(notice)
        elif isinstance(notice, DeliveredNotice):
            _resolve(self._notices.future_for(self._notices.deliveries, notice.contract_id), notice)
        elif isinstance(notice, ContractUpdatedNotice) and notice.state in SETTLED_STATES:
            _resolve(
                self._notices.future_for(self._notices.settlements, notice.contract_id), notice
            )
        elif isinstance(notice, MeteredNotice):
            self._provider.metered.observe(notice.metered)
        elif isinstance(notice, GoodsNotice):
            self._goods_notices.add(notice)
        elif isinstance(notice, SubscriptionNotice):
            await self._subscriptions.observe(notice)

    def _verified_notice(self, message: IncomingMessage) -> tuple[Document, bool] | None:
        """A notice signed by the exchange for this agent, and whether it is the first
        time it came (the exchange sends again what it has not heard acknowledged)."""
        try:
            opened = open_envelope(message.data)
            if not isinstance(opened.document, _NOTICE_TYPES):
                raise SignatureRejected(ErrorCode.WRONG_KIND, "not a notice")
            verified = verify_evidence(
                opened,
                expected_type=type(opened.document),
                audience=self.agent_id,
                expected_subject=subjects.notifications(self.agent_id),
                clock=self._clock,
                lifetime_max_s=limits.NOTICE_LIFETIME_MAX_S,
            )
            self._check_evidence_signer(verified.document)
        except SignatureRejected as exc:
            log.warning("ignored a notice: %s", exc)
            return None
        header = verified.document.header
        # The nonce makes each notice count once.
        if self._notice_guard.seen(header.issuer, header.nonce):
            return verified.document, False
        self._notice_guard.remember(
            header.issuer, header.nonce, header.expires_at_ms, now_ms=self._clock.now_ms()
        )
        return verified.document, True


_NOTICE_TYPES = (
    ContractOpenedNotice,
    DeliveredNotice,
    ContractUpdatedNotice,
    MeteredNotice,
    SubscriptionNotice,
    GoodsNotice,
)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _balance_request(header: Header) -> Document:
    return GetBalance(header=header)


def _subscribe_notices_request(header: Header) -> Document:
    return SubscribeNotices(header=header)


async def fetch_exchange_info(
    connection: NatsConnection, *, pinned_exchange_id: str | None, timeout_s: float, clock: Clock
) -> InfoReply:
    """The exchange's signed ``info``, answering this very request (a fresh nonce).

    Only the exchange's key may serve the info subject, so over the
    authenticated connection the signer is the exchange; a pinned id must
    match it as well.
    """
    payload = new_nonce().encode()
    reply_bytes = await connection.request(subjects.EXCHANGE_INFO, payload, timeout_s=timeout_s)
    signer_id, reply = open_reply(
        reply_bytes,
        signer_id=pinned_exchange_id,
        audience=ANY_AUDIENCE,
        request_subject=subjects.EXCHANGE_INFO,
        request_payload=payload,
        clock=clock,
    )
    info = expect_reply(reply, InfoReply)
    if info.exchange_id != signer_id:
        raise SignatureRejected(ErrorCode.SIGNER_MISMATCH, "info names another exchange")
    return info
