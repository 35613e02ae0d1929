"""``/api/v1``: the portal's JSON API, authenticated by personal API tokens.

``Authorization: Bearer agx_...`` (created and revoked on the account page).
Errors are ``{"error": {"code": ..., "message": ...}}`` with the HTTP status
of the error; the codes are those of ``human_portal.errors``. The OpenAPI
document is at ``/api/v1/openapi.json`` and rendered at ``/api/v1/docs``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client.errors import SignatureRejected
from agent_client.protocol import Envelope, OpenContract
from agent_client.signing import open_envelope_struct
from exchange.domain.search_plans import SearchQuery, text_terms
from exchange.use_cases.catalog import search_catalog
from human_portal import limits
from human_portal.accounts import User
from human_portal.api_tokens import user_for_api_token
from human_portal.errors import AuthenticationFailed, InvalidInput, ServiceUnavailable
from human_portal.exchange_relay import ExchangeRelay
from human_portal.linking import linked_agents, owner_of
from human_portal.money_rules import top_up_quote
from human_portal.own_agent_transfers import transfer_between_own_agents
from human_portal.payouts import request_cash_out
from human_portal.portal_context import PortalContext
from human_portal.reports import TransactionFilter, agent_summaries, transactions
from human_portal.topups import start_top_up
from human_portal.web.common import PortalWeb

__all__ = ["api_router"]

SERVICES_PAGE_SIZE_MAX = 100


class AgentBalance(BaseModel):
    agent_id: str
    label: str
    available_millicredits: int
    held_millicredits: int
    frozen: bool


class BalanceResponse(BaseModel):
    agents: list[AgentBalance]


class Transaction(BaseModel):
    agent_id: str
    transfer_id: str
    timestamp_us: int
    kind: str
    direction: Literal["in", "out"]
    amount_millicredits: int
    is_hold: bool
    counterparty_account_id: str
    reference: str


class TransactionsResponse(BaseModel):
    transactions: list[Transaction]


class TransferRequest(BaseModel):
    from_agent_id: str = Field(max_length=56)
    to_agent_id: str = Field(max_length=56)
    amount_millicredits: int = Field(ge=1, le=limits.BUDGET_MILLICREDITS_MAX)
    idempotency_key: str = Field(min_length=1, max_length=64)


class TransferResponse(BaseModel):
    transfer_id: str
    amount_millicredits: int
    fee_millicredits: int
    net_millicredits: int
    replayed: bool


class PurchaseRequest(BaseModel):
    agent_id: str = Field(max_length=56)
    package: str = Field(description="starter, builder, fleet or custom", max_length=16)
    amount_cents: int | None = Field(
        default=None,
        ge=limits.CUSTOM_TOPUP_CENTS_MIN,
        le=limits.CUSTOM_TOPUP_CENTS_MAX,
        description="for the custom package only",
    )


class PurchaseResponse(BaseModel):
    topup_id: str
    payment_intent_id: str
    client_secret: str = Field(description="confirm the payment with Stripe.js or the card holder")
    price_cents: int
    fee_cents: int
    total_cents: int
    credits_millicredits: int
    pay_url: str


class ConvertRequest(BaseModel):
    agent_id: str = Field(max_length=56)
    credits: int = Field(ge=limits.CASH_OUT_CREDITS_MIN, le=limits.CASH_OUT_CREDITS_PER_MONTH_MAX)


class ConvertResponse(BaseModel):
    payout_id: str
    status: Literal["pending", "paid", "failed"]
    credits: int
    gross_cents: int
    fee_cents: int
    net_cents: int
    failure_reason: str | None


class Service(BaseModel):
    listing_id: str
    provider_id: str
    capability: str
    description: str
    price_millicredits: int


class ServicesResponse(BaseModel):
    services: list[Service]


class SignedEnvelope(BaseModel):
    doc: str = Field(max_length=700_000)
    sig: str = Field(max_length=200)


class PurchaseServiceRequest(BaseModel):
    acceptance: SignedEnvelope = Field(
        description="a contract.open request signed by one of your agents (see docs/PROTOCOL.md)"
    )


async def api_user(request: Request, authorization: Annotated[str, Header()] = "") -> User:
    """The owner of the request's bearer token (the app keeps the context in its state)."""
    context: PortalContext = request.app.state.portal_context
    scheme, _, secret = authorization.partition(" ")
    user = await user_for_api_token(context, secret.strip()) if scheme == "Bearer" else None
    if user is None:
        raise AuthenticationFailed("send Authorization: Bearer <a live API token>")
    return user


ApiUser = Annotated[User, Depends(api_user)]


async def _exchange_relay(request: Request) -> ExchangeRelay | None:
    """The app's relay to the exchange (set by ``create_app``); None when not connected."""
    relay: ExchangeRelay | None = request.app.state.exchange_relay
    return relay


_Relay = Annotated[ExchangeRelay | None, Depends(_exchange_relay)]

api_router = APIRouter(prefix="/api/v1", tags=["api"])


@api_router.get("/credits/balance", response_model=BalanceResponse)
async def balance(user: ApiUser, web: PortalWeb) -> BalanceResponse:
    summaries = await web.context.read(
        lambda connection: agent_summaries(web.context, connection, user.user_id)
    )
    return BalanceResponse(
        agents=[
            AgentBalance(
                agent_id=summary.link.agent_id,
                label=summary.link.label,
                available_millicredits=summary.available_millicredits,
                held_millicredits=summary.held_millicredits,
                frozen=summary.controls is not None and summary.controls.frozen,
            )
            for summary in summaries
        ]
    )


@api_router.get("/credits/transactions", response_model=TransactionsResponse)
async def history(
    user: ApiUser,
    web: PortalWeb,
    agent_id: str | None = None,
    kind: str | None = None,
    direction: Literal["in", "out"] | None = None,
    limit: Annotated[int, Query(ge=1, le=limits.TRANSACTIONS_PAGE_SIZE_MAX)] = 100,
) -> TransactionsResponse:
    selection = TransactionFilter(agent_id=agent_id, kind=kind, direction=direction, limit=limit)

    async def load(connection: AsyncConnection) -> TransactionsResponse:
        links = await linked_agents(connection, user.user_id)
        lines = await transactions(web.context, connection, links, selection)
        return TransactionsResponse(
            transactions=[
                Transaction(
                    agent_id=line.agent_id,
                    transfer_id=line.transfer_id,
                    timestamp_us=line.timestamp_us,
                    kind=line.kind,
                    direction="in" if line.direction == "in" else "out",
                    amount_millicredits=line.amount_millicredits,
                    is_hold=line.is_hold,
                    counterparty_account_id=line.counterparty_account_id,
                    reference=line.reference,
                )
                for line in lines
            ]
        )

    return await web.context.read(load)


@api_router.post("/credits/transfer", response_model=TransferResponse)
async def transfer(user: ApiUser, body: TransferRequest, web: PortalWeb) -> TransferResponse:
    moved = await transfer_between_own_agents(
        web.context,
        user,
        from_agent_id=body.from_agent_id,
        to_agent_id=body.to_agent_id,
        amount_millicredits=body.amount_millicredits,
        idempotency_key=body.idempotency_key,
    )
    return TransferResponse(
        transfer_id=moved.transfer_id,
        amount_millicredits=moved.amount_millicredits,
        fee_millicredits=moved.fee_millicredits,
        net_millicredits=moved.net_millicredits,
        replayed=moved.replayed,
    )


@api_router.post("/billing/purchase-credits", response_model=PurchaseResponse)
async def purchase(user: ApiUser, body: PurchaseRequest, web: PortalWeb) -> PurchaseResponse:
    context = web.context
    fees = await context.fee_schedule()
    quote = top_up_quote(body.package, custom_cents=body.amount_cents, fees=fees)
    started = await start_top_up(context, user, body.agent_id, quote)
    top_up = started.top_up
    assert top_up.payment_intent_id is not None
    return PurchaseResponse(
        topup_id=top_up.topup_id,
        payment_intent_id=top_up.payment_intent_id,
        client_secret=started.client_secret,
        price_cents=top_up.price_cents,
        fee_cents=top_up.fee_cents,
        total_cents=top_up.total_cents,
        credits_millicredits=top_up.credits_millicredits,
        pay_url=f"{context.config.public_url}/top-up/{top_up.topup_id}",
    )


@api_router.post("/billing/convert-to-usd", response_model=ConvertResponse)
async def convert(user: ApiUser, body: ConvertRequest, web: PortalWeb) -> ConvertResponse:
    payout = await request_cash_out(
        web.context, user, body.agent_id, body.credits, requested_by="api"
    )
    return ConvertResponse(
        payout_id=payout.payout_id,
        status=payout.status.value,
        credits=payout.credits,
        gross_cents=payout.gross_cents,
        fee_cents=payout.fee_cents,
        net_cents=payout.net_cents,
        failure_reason=payout.failure_reason,
    )


@api_router.get("/marketplace/services", response_model=ServicesResponse)
async def services(
    user: ApiUser,
    web: PortalWeb,
    capability: Annotated[str | None, Query(max_length=64)] = None,
    text: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=SERVICES_PAGE_SIZE_MAX)] = 20,
) -> ServicesResponse:
    del user  # any signed-in holder of a token may browse
    # The exchange's own search (its index and ranking), cheapest first.
    query = SearchQuery(capability=capability or None, text_terms=text_terms(text), limit=limit)
    found = await search_catalog(web.context.engine, query)
    return ServicesResponse(
        services=[
            Service(
                listing_id=listing.listing_id,
                provider_id=listing.provider_id,
                capability=listing.capability,
                description=listing.description,
                price_millicredits=listing.price_millicredits,
            )
            for listing in found.listings
        ]
    )


@api_router.post("/marketplace/purchase-service")
async def purchase_service(
    user: ApiUser, body: PurchaseServiceRequest, web: PortalWeb, relay: _Relay
) -> dict[str, object]:
    """Relay one of your agents' signed acceptances to the exchange; return its reply.

    The portal holds no agent keys: the agent signs ``contract.open`` and
    the exchange checks that signature, the quote, the budgets and funds.
    """
    if relay is None:
        raise ServiceUnavailable("this portal is not connected to the exchange")
    envelope = Envelope(doc=body.acceptance.doc, sig=body.acceptance.sig)
    try:
        opened = open_envelope_struct(envelope)
    except SignatureRejected as exc:
        raise InvalidInput("acceptance", exc.message) from exc
    document = opened.document
    if not isinstance(document, OpenContract):
        raise InvalidInput("acceptance", "must be a contract.open document")
    agent_id = document.header.issuer
    await web.context.read(lambda connection: owner_of(connection, user, agent_id))
    return await relay.open_contract(envelope, agent_id)
