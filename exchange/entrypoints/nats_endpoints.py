"""The exchange's NATS endpoints: each request document bound to its use case.

A new endpoint is one document type and one line here: its name and
subject come from the document's tag (``agentx.v2.x.<agent id>.<tag>``).
The signed-request service (broker/signed_service.py) does the rest:
admission, verification (the answer receives the document verified and of
its type), error mapping and signed answers. Every worker serves every
endpoint in one queue group, as a NATS micro service (so ``$SRV.PING``,
``$SRV.INFO`` and ``$SRV.STATS`` work for free).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.aio.client import Client

from agent_client import subjects
from agent_client.limits import PROTOCOL_VERSION
from agent_client.protocol import (
    EXCHANGE_REQUEST_TYPES,
    AcceptDelivery,
    AcknowledgeNotices,
    Advertise,
    BuyGoods,
    CancelContract,
    CancelSubscription,
    ClaimUsage,
    CloseMetered,
    ContractReply,
    ContractView,
    Deliver,
    Document,
    DownloadGoods,
    ErrorCode,
    ErrorReply,
    GetAnalytics,
    GetBalance,
    GetContract,
    GetEvidence,
    GetFees,
    GetGoods,
    GetGoodsChunk,
    GetListingHistory,
    GetMetered,
    GetMeteredEvidence,
    GetReputation,
    GetResult,
    GetSubscription,
    GetSubscriptionToken,
    GoodsReply,
    GoodsView,
    InfoReply,
    ListGoods,
    Listing,
    ListingReply,
    ListPlans,
    ListSubscriptions,
    ListTransactions,
    MeteredReply,
    MeteredView,
    Mint,
    OpenContract,
    OpenMetered,
    PlanReply,
    PlanView,
    PublishGoods,
    PublishPlan,
    RateContract,
    RejectDelivery,
    Reply,
    Resolve,
    SearchCatalog,
    SetFees,
    SetListingStatus,
    Subscribe,
    SubscribeNotices,
    SubscriptionReply,
    SubscriptionView,
    TransactionEntry,
    TransactionsReply,
    Transfer,
    UploadGoods,
    UploadResult,
    endpoint_of,
)
from agent_client.signing import Clock, VerifiedDocument
from broker.admission import DEFAULT_ADMISSION, AdmissionLimits, AgentAdmission
from broker.service_observer import NO_OBSERVER, RequestObserver
from broker.signed_service import (
    AgentEvictor,
    OpenRoute,
    Route,
    ServiceIdentity,
    SignedRequestService,
)
from exchange.errors import ExchangeError
from exchange.limits import (
    INFO_REQUEST_BYTES_MAX,
    INFO_REQUEST_BYTES_MIN,
    REQUEST_CONCURRENCY_MAX,
)
from exchange.use_cases import (
    AccountUseCases,
    CatalogUseCases,
    ContractUseCases,
    ExchangeContext,
    ReputationUseCases,
    TransferUseCases,
)
from exchange.use_cases.digital_goods import GoodsUseCases
from exchange.use_cases.fee_settings import FeeSettings
from exchange.use_cases.metered_sessions import MeteredUseCases
from exchange.use_cases.notices import NoticeDelivery
from exchange.use_cases.provider_analytics import AnalyticsUseCases
from exchange.use_cases.results import ResultUseCases
from exchange.use_cases.subscriptions import SubscriptionUseCases
from wallet import LedgerUnavailable, UnsupportedDatabase, ValueOutOfRange

__all__ = ["ExchangeEndpoints", "map_exchange_error"]

log = logging.getLogger(__name__)

SERVICE = ServiceIdentity(
    name="agentx-exchange",
    version="0.2.0",
    description="Agent Exchange: catalog, contracts, escrow, wallets",
    queue_group=subjects.EXCHANGE_QUEUE_GROUP,
    audience="exchange",
)

_D = TypeVar("_D", bound=Document)


class ExchangeEndpoints:
    """Binds the use cases to their document types, served by one signed-request service."""

    def __init__(
        self,
        client: Client,
        context: ExchangeContext,
        notices: NoticeDelivery,
        /,
        *,
        clock: Clock,
        escrow_fee_bps: int,
        portal_id: str | None = None,
        previous_exchange_ids: frozenset[str] = frozenset(),
        admission: AdmissionLimits = DEFAULT_ADMISSION,
        concurrency_max: int = REQUEST_CONCURRENCY_MAX,
        evictor: AgentEvictor | None = None,
        observer: RequestObserver = NO_OBSERVER,
    ) -> None:
        routes = _routes(context, notices)
        # One route per request document type of the protocol, in its order.
        assert tuple(route.document_type for route in routes) == EXCHANGE_REQUEST_TYPES
        info = InfoReply(
            exchange_id=context.exchange_id,
            protocol_version=PROTOCOL_VERSION,
            escrow_fee_bps=escrow_fee_bps,
            endpoints=list(subjects.EXCHANGE_ENDPOINTS),
            portal_id=portal_id,
            previous_exchange_ids=sorted(previous_exchange_ids),
        )
        self._service = SignedRequestService(
            client,
            context.keys,
            identity=SERVICE,
            routes=routes,
            open_routes=[
                OpenRoute(
                    "info",
                    subjects.EXCHANGE_INFO,
                    info,
                    INFO_REQUEST_BYTES_MIN,
                    INFO_REQUEST_BYTES_MAX,
                )
            ],
            map_error=map_exchange_error,
            admission=AgentAdmission(admission),
            clock=clock,
            concurrency_max=concurrency_max,
            evictor=evictor,
            observer=observer,
        )

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()


def _routes(context: ExchangeContext, notices: NoticeDelivery) -> list[Route[Any]]:
    """Each request document and the use case that answers it, in the protocol's order."""
    catalog = CatalogUseCases(context)
    contracts = ContractUseCases(context)
    wallets = AccountUseCases(context)
    reputation = ReputationUseCases(context, contracts)
    # The product plan's escrow fee is also the fee of a direct transfer.
    transfers = TransferUseCases(context)
    fees = FeeSettings(context)
    analytics = AnalyticsUseCases(context)
    results = ResultUseCases(context)
    metered = MeteredUseCases(context)
    return [
        _route(Advertise, lambda by, v: _listing(catalog.advertise(by, v.document))),
        _route(SearchCatalog, lambda by, v: catalog.search(v.document)),
        _route(SetListingStatus, lambda by, v: _listing(catalog.set_status(by, v.document))),
        _route(GetListingHistory, lambda by, v: catalog.history(v.document)),
        _route(GetReputation, lambda by, v: reputation.reputation(v.document)),
        _route(OpenContract, lambda by, v: _contract(contracts.open_contract(by, v))),
        _route(Deliver, lambda by, v: _contract(contracts.deliver(by, v.document))),
        _route(UploadResult, lambda by, v: results.upload(by, v.document)),
        _route(GetResult, lambda by, v: results.read(by, v.document)),
        _route(AcceptDelivery, lambda by, v: _contract(contracts.accept_delivery(by, v.document))),
        _route(
            GetContract, lambda by, v: _contract(contracts.get_contract(by, v.document.contract_id))
        ),
        _route(RejectDelivery, lambda by, v: _contract(contracts.reject_delivery(by, v.document))),
        _route(CancelContract, lambda by, v: _contract(contracts.cancel(by, v.document))),
        _route(GetEvidence, lambda by, v: contracts.evidence(by, v.document.contract_id)),
        _route(Resolve, lambda by, v: _contract(contracts.resolve(by, v.document))),
        _route(RateContract, lambda by, v: reputation.rate(by, v.document)),
        _route(GetBalance, lambda by, v: wallets.balance(by)),
        _route(ListTransactions, lambda by, v: _entries(wallets.transactions(by, v.document))),
        _route(Transfer, lambda by, v: transfers.transfer(by, v.document)),
        _route(Mint, lambda by, v: wallets.mint(by, v.document)),
        _route(SubscribeNotices, lambda by, v: notices.subscribe(by)),
        _route(AcknowledgeNotices, lambda by, v: notices.acknowledge(by, v.document)),
        _route(OpenMetered, lambda by, v: _metered(metered.open(by, v))),
        _route(ClaimUsage, lambda by, v: _metered(metered.claim(by, v.document))),
        _route(CloseMetered, lambda by, v: _metered(metered.close(by, v.document))),
        _route(GetMetered, lambda by, v: _metered(metered.get(by, v.document.contract_id))),
        _route(GetFees, lambda by, v: fees.get()),
        _route(SetFees, lambda by, v: fees.set(by, v.document)),
        _route(GetAnalytics, lambda by, v: analytics.analytics(by, v.document)),
        _route(GetMeteredEvidence, lambda by, v: metered.evidence(by, v.document)),
        *_subscription_routes(SubscriptionUseCases(context)),
        *_goods_routes(GoodsUseCases(context)),
    ]


def _goods_routes(goods: GoodsUseCases) -> list[Route[Any]]:
    return [
        _route(UploadGoods, lambda by, v: goods.upload(by, v.document)),
        _route(PublishGoods, lambda by, v: _goods(goods.publish(by, v.document))),
        _route(BuyGoods, lambda by, v: goods.buy(by, v)),
        _route(DownloadGoods, lambda by, v: goods.download(by, v.document)),
        _route(GetGoodsChunk, lambda by, v: goods.chunk(by, v.document)),
        _route(GetGoods, lambda by, v: _goods(goods.get(v.document.item_id))),
        _route(ListGoods, lambda by, v: goods.list_items(v.document)),
    ]


async def _goods(view: Awaitable[GoodsView]) -> Reply:
    return GoodsReply(goods=await view)


def _subscription_routes(subscriptions: SubscriptionUseCases) -> list[Route[Any]]:
    return [
        _route(PublishPlan, lambda by, v: _plan(subscriptions.publish_plan(by, v.document))),
        _route(ListPlans, lambda by, v: subscriptions.list_plans(v.document)),
        _route(Subscribe, lambda by, v: _subscription(subscriptions.subscribe(by, v))),
        _route(
            CancelSubscription,
            lambda by, v: _subscription(subscriptions.cancel(by, v.document.subscription_id)),
        ),
        _route(
            GetSubscription,
            lambda by, v: _subscription(subscriptions.get(by, v.document.subscription_id)),
        ),
        _route(ListSubscriptions, lambda by, v: subscriptions.listed(by, v.document)),
        _route(
            GetSubscriptionToken,
            lambda by, v: subscriptions.token(by, v.document.subscription_id),
        ),
    ]


def _route(
    document_type: type[_D], answer: Callable[[str, VerifiedDocument[_D]], Awaitable[Reply]]
) -> Route[_D]:
    return Route(
        document_type, subjects.exchange_request_wildcard(endpoint_of(document_type)), answer
    )


async def _contract(view: Awaitable[ContractView]) -> Reply:
    return ContractReply(contract=await view)


async def _metered(view: Awaitable[MeteredView]) -> Reply:
    return MeteredReply(metered=await view)


async def _plan(plan: Awaitable[PlanView]) -> Reply:
    return PlanReply(plan=await plan)


async def _subscription(subscription: Awaitable[SubscriptionView]) -> Reply:
    return SubscriptionReply(subscription=await subscription)


async def _listing(listing: Awaitable[Listing]) -> Reply:
    return ListingReply(listing=await listing)


async def _entries(entries: Awaitable[list[TransactionEntry]]) -> Reply:
    return TransactionsReply(entries=await entries)


def map_exchange_error(exc: Exception, /) -> ErrorReply | None:
    """The wire error for a refusal of the use cases; None for a bug."""
    if isinstance(exc, ExchangeError):
        return ErrorReply(code=exc.code.value, message=exc.message, contract_id=exc.contract_id)
    if isinstance(exc, LedgerUnavailable | UnsupportedDatabase):
        log.warning("ledger unavailable: %s", exc)
        return ErrorReply(
            code=ErrorCode.UNAVAILABLE.value, message="the ledger is unavailable, retry later"
        )
    if isinstance(exc, ValueOutOfRange):
        return ErrorReply(code=ErrorCode.INVALID_REQUEST.value, message=str(exc))
    return None
