"""Operator pages: revenue by fee type, frozen agents, receivables, refunds, disputes,
listings, audit."""

from __future__ import annotations

import re
from typing import Annotated, NamedTuple, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import Agent, AgentClientError, AgentKeys, OperatorClient, is_agent_id
from exchange.errors import ExchangeError
from exchange.use_cases.fee_settings import FeeChange, change_fees
from human_portal.accounts import Session
from human_portal.errors import InvalidInput, PaymentProviderFailed
from human_portal.money_rules import parse_dollars
from human_portal.operator_actions import (
    AuditEntry,
    FrozenAgent,
    Receivable,
    audit_log,
    freeze_agent,
    frozen_agents,
    receivables,
    require_operator,
    unfreeze_agent,
)
from human_portal.reports import DisputeCase, Revenue, disputes_to_resolve, revenue
from human_portal.topups import TopUp, recent_top_ups, refund_top_up
from human_portal.web.common import PortalWeb, Web
from wallet import BASIS_POINTS_PER_WHOLE, FeeKind, FeeSchedule

__all__ = ["DisputeResolver", "ExchangeDisputeResolver", "operator_router"]

DISPUTES_SHOWN_MAX = 50
TOP_UPS_SHOWN_MAX = 50


class DisputeResolver(Protocol):
    async def resolve(self, contract_id: str, /, *, provider_share_bps: int, note: str) -> str:
        """Ask the exchange to end a dispute; returns the contract's new state."""
        ...

    async def set_listing_active(
        self, provider_id: str, capability: str, /, *, active: bool
    ) -> str:
        """Ask the exchange to (de)activate a provider's listing; returns its new status."""
        ...


class ExchangeDisputeResolver:
    """Resolves disputes through the exchange, signed with an operator's key."""

    def __init__(self, nats_url: str, keys: AgentKeys, /) -> None:
        self._nats_url = nats_url
        self._keys = keys

    async def resolve(self, contract_id: str, /, *, provider_share_bps: int, note: str) -> str:
        try:
            async with await Agent.connect(self._nats_url, self._keys) as operator:
                view = await OperatorClient(operator).resolve(
                    contract_id, provider_share_bps=provider_share_bps, note=note
                )
        except AgentClientError as exc:
            raise PaymentProviderFailed(f"the exchange refused: {exc}", retryable=False) from exc
        return view.state

    async def set_listing_active(
        self, provider_id: str, capability: str, /, *, active: bool
    ) -> str:
        try:
            async with await Agent.connect(self._nats_url, self._keys) as agent:
                operator = OperatorClient(agent)
                change = operator.reactivate_listing if active else operator.deactivate_listing
                listing = await change(provider_id, capability)
        except AgentClientError as exc:
            raise PaymentProviderFailed(f"the exchange refused: {exc}", retryable=False) from exc
        return listing.status


class _OperatorView(NamedTuple):
    revenue: Revenue
    frozen: list[FrozenAgent]
    receivables: list[Receivable]
    top_ups: list[TopUp]
    disputes: list[DisputeCase]
    audit: list[AuditEntry]
    fees: FeeSchedule


async def _dispute_resolver(request: Request) -> DisputeResolver | None:
    """The app's resolver (set by ``create_app``); None without an operator key."""
    resolver: DisputeResolver | None = request.app.state.dispute_resolver
    return resolver


_Resolver = Annotated[DisputeResolver | None, Depends(_dispute_resolver)]

operator_router = APIRouter(include_in_schema=False)


@operator_router.get("/operator")
async def operator_page(request: Request, web: PortalWeb, resolver: _Resolver) -> Response:
    session = await web.require_session(request)
    require_operator(session.user)
    context = web.context

    async def load(connection: AsyncConnection) -> _OperatorView:
        return _OperatorView(
            await revenue(context, connection),
            await frozen_agents(connection),
            await receivables(connection),
            await recent_top_ups(connection, user_id=None, limit=TOP_UPS_SHOWN_MAX),
            await disputes_to_resolve(connection, limit=DISPUTES_SHOWN_MAX),
            await audit_log(connection),
            await context.fee_schedule(connection),
        )

    view = await context.read(load)
    return await web.render(
        request,
        "operator.html",
        view=view,
        can_resolve=resolver is not None,
        notice=request.query_params.get("notice"),
    )


@operator_router.post("/operator/freeze")
async def freeze_form(request: Request, web: PortalWeb) -> Response:
    session, form = await _operator_form(web, request)
    await freeze_agent(
        web.context, session.user, form.get("agent_id", "").strip(), form.get("reason", "")
    )
    return RedirectResponse("/operator?notice=frozen", status_code=303)


@operator_router.post("/operator/agents/{agent_id}/unfreeze")
async def unfreeze_form(request: Request, agent_id: str, web: PortalWeb) -> Response:
    session, _ = await _operator_form(web, request)
    await unfreeze_agent(web.context, session.user, agent_id)
    return RedirectResponse("/operator?notice=unfrozen", status_code=303)


@operator_router.post("/operator/top-ups/{topup_id}/refund")
async def refund_form(request: Request, topup_id: str, web: PortalWeb) -> Response:
    session, form = await _operator_form(web, request)
    amount_cents = parse_dollars(form.get("amount", ""), field="amount")
    await refund_top_up(web.context, session.user, topup_id, amount_cents)
    return RedirectResponse("/operator?notice=refunded", status_code=303)


@operator_router.post("/operator/disputes/{contract_id}/resolve")
async def resolve_form(
    request: Request, contract_id: str, web: PortalWeb, resolver: _Resolver
) -> Response:
    _, form = await _operator_form(web, request)
    exchange = _required_resolver(resolver)
    share_text = form.get("provider_share_percent", "").strip()
    if not share_text.isdigit() or not 0 <= int(share_text) <= 100:
        raise InvalidInput("provider_share_percent", "is a whole percentage from 0 to 100")
    await exchange.resolve(
        contract_id, provider_share_bps=int(share_text) * 100, note=form.get("note", "")[:500]
    )
    return RedirectResponse("/operator?notice=resolved", status_code=303)


@operator_router.post("/operator/listings/status")
async def listing_status_form(request: Request, web: PortalWeb, resolver: _Resolver) -> Response:
    _, form = await _operator_form(web, request)
    exchange = _required_resolver(resolver)
    provider_id = form.get("provider_id", "").strip()
    if not is_agent_id(provider_id):
        raise InvalidInput("provider_id", "is an agent id (U..., 56 characters)")
    action = form.get("action", "")
    if action not in ("deactivate", "reactivate"):
        raise InvalidInput("action", "is deactivate or reactivate")
    capability = form.get("capability", "").strip()
    status = await exchange.set_listing_active(
        provider_id, capability, active=action == "reactivate"
    )
    return RedirectResponse(f"/operator?notice=listing+{status}", status_code=303)


@operator_router.post("/operator/fees")
async def fees_form(request: Request, web: PortalWeb) -> Response:
    """Set one kind's rate, or a category's commission (a blank rate removes it)."""
    session, form = await _operator_form(web, request)
    change = _fee_change(form)
    context = web.context
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> None:
        await change_fees(
            connection,
            change,
            default=context.config.fees,
            now_ms=now_ms,
            changed_by=f"portal:{session.user.user_id}",
            change_id=f"portal-{session.user.user_id}-{now_ms}",
        )

    try:
        await context.write(work)
    except ExchangeError as refused:
        raise InvalidInput("fees", refused.message) from refused
    return RedirectResponse("/operator?notice=fees+changed", status_code=303)


def _fee_change(form: dict[str, str]) -> FeeChange:
    kind = form.get("kind", "").strip()
    rate_text = form.get("rate_bps", "").strip()
    rate = None
    if rate_text:
        if not rate_text.isdigit() or int(rate_text) > BASIS_POINTS_PER_WHOLE:
            raise InvalidInput("rate_bps", "is a whole number of basis points, 0 to 10000")
        rate = int(rate_text)
    reason = form.get("reason", "")[:200]
    if kind == "category":
        prefix = form.get("category", "").strip()
        if not _CATEGORY.fullmatch(prefix):
            raise InvalidInput("category", "is a capability prefix such as hosted_app")
        return FeeChange({}, {prefix: rate}, reason)
    if kind not in {fee_kind.value for fee_kind in FeeKind}:
        raise InvalidInput("kind", "is a fee kind or category")
    if rate is None:
        raise InvalidInput("rate_bps", "is required for a fee kind")
    return FeeChange({kind: rate}, {}, reason)


_CATEGORY = re.compile(r"[a-z0-9_-]{1,64}(\.[a-z0-9_-]{1,64})*")


async def _operator_form(web: Web, request: Request) -> tuple[Session, dict[str, str]]:
    """An operator's form, with its CSRF token checked; every operator action starts here."""
    session, form = await web.checked_form(request)
    require_operator(session.user)
    return session, form


def _required_resolver(resolver: DisputeResolver | None) -> DisputeResolver:
    if resolver is None:
        raise InvalidInput("resolver", "this portal has no operator key for the exchange")
    return resolver
