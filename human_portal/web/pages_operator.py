"""Operator pages: revenue by fee type, frozen agents, receivables, refunds, disputes,
listings, audit."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_client import Agent, AgentClientError, AgentKeys, is_agent_id
from human_portal.errors import InvalidInput, PaymentProviderFailed
from human_portal.money import parse_dollars
from human_portal.operator import (
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
from human_portal.reports import DisputeCase, Revenue, open_disputes, revenue
from human_portal.topups import TopUp, recent_top_ups, refund_top_up
from human_portal.web.common import Web

__all__ = ["DisputeResolver", "ExchangeDisputeResolver", "operator_routes"]

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
                view = await operator.resolve(
                    contract_id, provider_share_bps=provider_share_bps, note=note
                )
        except AgentClientError as exc:
            raise PaymentProviderFailed(f"the exchange refused: {exc}", retryable=False) from exc
        return view.state

    async def set_listing_active(
        self, provider_id: str, capability: str, /, *, active: bool
    ) -> str:
        try:
            async with await Agent.connect(self._nats_url, self._keys) as operator:
                change = operator.reactivate if active else operator.deactivate
                listing = await change(capability, provider_id=provider_id)
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


def operator_routes(web: Web, resolver: DisputeResolver | None) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    context = web.context

    @router.get("/operator")
    async def operator_page(request: Request) -> Response:
        session = await web.require_session(request)
        require_operator(session.user)

        async def load(connection: AsyncConnection) -> _OperatorView:
            return _OperatorView(
                await revenue(context, connection),
                await frozen_agents(connection),
                await receivables(connection),
                await recent_top_ups(connection, user_id=None, limit=TOP_UPS_SHOWN_MAX),
                await open_disputes(connection, limit=DISPUTES_SHOWN_MAX),
                await audit_log(connection),
            )

        view = await context.read(load)
        return await web.render(
            request,
            "operator.html",
            view=view,
            can_resolve=resolver is not None,
            notice=request.query_params.get("notice"),
        )

    @router.post("/operator/freeze")
    async def freeze_form(request: Request) -> Response:
        session, form = await web.checked_form(request)
        await freeze_agent(
            context, session.user, form.get("agent_id", "").strip(), form.get("reason", "")
        )
        return RedirectResponse("/operator?notice=frozen", status_code=303)

    @router.post("/operator/agents/{agent_id}/unfreeze")
    async def unfreeze_form(request: Request, agent_id: str) -> Response:
        session, _ = await web.checked_form(request)
        await unfreeze_agent(context, session.user, agent_id)
        return RedirectResponse("/operator?notice=unfrozen", status_code=303)

    @router.post("/operator/top-ups/{topup_id}/refund")
    async def refund_form(request: Request, topup_id: str) -> Response:
        session, form = await web.checked_form(request)
        require_operator(session.user)
        amount_cents = parse_dollars(form.get("amount", ""), field="amount")
        await refund_top_up(context, session.user, topup_id, amount_cents)
        return RedirectResponse("/operator?notice=refunded", status_code=303)

    @router.post("/operator/disputes/{contract_id}/resolve")
    async def resolve_form(request: Request, contract_id: str) -> Response:
        session, form = await web.checked_form(request)
        require_operator(session.user)
        if resolver is None:
            raise InvalidInput("resolver", "this portal has no operator key for the exchange")
        share_text = form.get("provider_share_percent", "").strip()
        if not share_text.isdigit() or not 0 <= int(share_text) <= 100:
            raise InvalidInput("provider_share_percent", "is a whole percentage from 0 to 100")
        await resolver.resolve(
            contract_id, provider_share_bps=int(share_text) * 100, note=form.get("note", "")[:500]
        )
        return RedirectResponse("/operator?notice=resolved", status_code=303)

    @router.post("/operator/listings/status")
    async def listing_status_form(request: Request) -> Response:
        session, form = await web.checked_form(request)
        require_operator(session.user)
        if resolver is None:
            raise InvalidInput("resolver", "this portal has no operator key for the exchange")
        provider_id = form.get("provider_id", "").strip()
        if not is_agent_id(provider_id):
            raise InvalidInput("provider_id", "is an agent id (U..., 56 characters)")
        action = form.get("action", "")
        if action not in ("deactivate", "reactivate"):
            raise InvalidInput("action", "is deactivate or reactivate")
        capability = form.get("capability", "").strip()
        status = await resolver.set_listing_active(
            provider_id, capability, active=action == "reactivate"
        )
        return RedirectResponse(f"/operator?notice=listing+{status}", status_code=303)

    return router
