"""Operator pages: revenue by fee type, frozen agents, receivables, refunds, disputes,
listings, audit.

A refused operator form comes back as the operator page with the typed
values kept and the mistake beside its field (``form_state``), like every
other form of the portal.
"""

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
from human_portal.errors import (
    Conflict,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PaymentProviderFailed,
    PortalError,
)
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
from human_portal.web.form_state import BLANK, FormState, failed_form, failure_status
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
    return await _operator_view(web, request, resolver)


async def _operator_view(
    web: Web,
    request: Request,
    resolver: DisputeResolver | None,
    *,
    form_state: FormState = BLANK,
    status_code: int = 200,
) -> Response:
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
        status_code=status_code,
        view=view,
        can_resolve=resolver is not None,
        notice=request.query_params.get("notice"),
        form_state=form_state,
    )


async def _refused(
    web: Web,
    request: Request,
    resolver: DisputeResolver | None,
    name: str,
    error: PortalError,
    values: dict[str, str],
    *,
    default_field: str | None = None,
) -> Response:
    """The operator page again, the form called ``name`` as typed and its mistake beside it."""
    state = failed_form(
        name,
        error,
        values=values,
        fields=tuple(values),
        default_field=default_field,
        nothing_done="nothing was changed",
    )
    return await _operator_view(
        web, request, resolver, form_state=state, status_code=failure_status(error)
    )


@operator_router.post("/operator/freeze")
async def freeze_form(request: Request, web: PortalWeb, resolver: _Resolver) -> Response:
    session, form = await _operator_form(web, request)
    values = {"agent_id": form.get("agent_id", ""), "reason": form.get("reason", "")}
    try:
        await freeze_agent(web.context, session.user, values["agent_id"].strip(), values["reason"])
    except (InvalidInput, NotFound, Conflict) as error:
        return await _refused(web, request, resolver, "freeze", error, values)
    return RedirectResponse("/operator?notice=frozen", status_code=303)


@operator_router.post("/operator/agents/{agent_id}/unfreeze")
async def unfreeze_form(request: Request, agent_id: str, web: PortalWeb) -> Response:
    session, _ = await _operator_form(web, request)
    await unfreeze_agent(web.context, session.user, agent_id)
    return RedirectResponse("/operator?notice=unfrozen", status_code=303)


@operator_router.post("/operator/top-ups/{topup_id}/refund")
async def refund_form(
    request: Request, topup_id: str, web: PortalWeb, resolver: _Resolver
) -> Response:
    session, form = await _operator_form(web, request)
    values = {"amount": form.get("amount", "")}
    try:
        amount_cents = parse_dollars(values["amount"], field="amount")
        await refund_top_up(web.context, session.user, topup_id, amount_cents)
    except (InvalidInput, LimitExceeded, Conflict, PaymentProviderFailed) as error:
        name = f"refund-{topup_id}"
        return await _refused(web, request, resolver, name, error, values, default_field="amount")
    return RedirectResponse("/operator?notice=refunded", status_code=303)


@operator_router.post("/operator/disputes/{contract_id}/resolve")
async def resolve_form(
    request: Request, contract_id: str, web: PortalWeb, resolver: _Resolver
) -> Response:
    _, form = await _operator_form(web, request)
    exchange = _required_resolver(resolver)
    values = {name: form.get(name, "") for name in ("provider_share_percent", "note")}
    try:
        share_text = values["provider_share_percent"].strip()
        if not share_text.isdigit() or not 0 <= int(share_text) <= 100:
            raise InvalidInput("provider_share_percent", "enter a whole percentage from 0 to 100")
        await exchange.resolve(
            contract_id, provider_share_bps=int(share_text) * 100, note=values["note"][:500]
        )
    except (InvalidInput, PaymentProviderFailed) as error:
        name = f"resolve-{contract_id}"
        return await _refused(web, request, resolver, name, error, values)
    return RedirectResponse("/operator?notice=resolved", status_code=303)


@operator_router.post("/operator/listings/status")
async def listing_status_form(request: Request, web: PortalWeb, resolver: _Resolver) -> Response:
    _, form = await _operator_form(web, request)
    exchange = _required_resolver(resolver)
    values = {name: form.get(name, "") for name in ("provider_id", "capability", "action")}
    try:
        status = await _set_listing(exchange, values)
    except (InvalidInput, PaymentProviderFailed) as error:
        return await _refused(web, request, resolver, "listings", error, values)
    return RedirectResponse(f"/operator?notice=listing+{status}", status_code=303)


async def _set_listing(exchange: DisputeResolver, values: dict[str, str]) -> str:
    provider_id = values["provider_id"].strip()
    if not is_agent_id(provider_id):
        raise InvalidInput(
            "provider_id", "enter the provider's agent id: U followed by 55 letters and digits"
        )
    action = values["action"]
    if action not in ("deactivate", "reactivate"):
        raise InvalidInput("action", "choose deactivate or reactivate")
    capability = values["capability"].strip()
    return await exchange.set_listing_active(provider_id, capability, active=action == "reactivate")


@operator_router.post("/operator/fees")
async def fees_form(request: Request, web: PortalWeb, resolver: _Resolver) -> Response:
    """Set one kind's rate, or a category's commission (a blank rate removes it)."""
    session, form = await _operator_form(web, request)
    values = {name: form.get(name, "") for name in ("kind", "category", "rate_bps", "reason")}
    try:
        await _change_fees(web, session, _fee_change(form))
    except InvalidInput as error:
        return await _refused(web, request, resolver, "fees", error, values)
    return RedirectResponse("/operator?notice=fees+changed", status_code=303)


async def _change_fees(web: Web, session: Session, change: FeeChange) -> None:
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
        raise InvalidInput("rate_bps", refused.message) from refused


def _fee_change(form: dict[str, str]) -> FeeChange:
    kind = form.get("kind", "").strip()
    rate_text = form.get("rate_bps", "").strip()
    rate = None
    if rate_text:
        if not rate_text.isdigit() or int(rate_text) > BASIS_POINTS_PER_WHOLE:
            raise InvalidInput("rate_bps", "enter whole basis points from 0 to 10000")
        rate = int(rate_text)
    reason = form.get("reason", "")[:200]
    if kind == "category":
        prefix = form.get("category", "").strip()
        if not _CATEGORY.fullmatch(prefix):
            raise InvalidInput("category", "enter a capability prefix such as hosted_app")
        return FeeChange({}, {prefix: rate}, reason)
    if kind not in {fee_kind.value for fee_kind in FeeKind}:
        raise InvalidInput("kind", "choose a fee kind or a category")
    if rate is None:
        raise InvalidInput("rate_bps", "enter a rate: a fee kind needs one")
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
