"""Pages: the dashboard, top-ups (Stripe.js), the Stripe webhook, history and CSV, payouts."""

from __future__ import annotations

import json
import time
from typing import NamedTuple

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.domain.spending_rules import ApprovalStatus
from human_portal import limits
from human_portal.controls import Approval, approvals_for_user
from human_portal.errors import InvalidInput, PortalError
from human_portal.linking import LinkedAgent, linked_agents
from human_portal.money_rules import (
    CUSTOM_PACKAGE_CODE,
    PACKAGES,
    parse_dollars,
    top_up_quote,
)
from human_portal.payouts import (
    Payout,
    allow_agent_cash_out,
    connect_onboarding_url,
    payouts_of,
    refresh_connect_status,
    request_cash_out,
)
from human_portal.reports import (
    AgentSummary,
    ContractLine,
    TransactionFilter,
    TransactionLine,
    agent_summaries,
    chart_days,
    recent_contracts,
    spending_chart_svg,
    transactions,
    transactions_csv,
)
from human_portal.topups import (
    TopUp,
    confirm_offline_card,
    handle_webhook,
    recent_top_ups,
    start_top_up,
    top_up_of,
)
from human_portal.web.common import CSRF_HEADER, PortalWeb, Web, checked_csrf, read_body

__all__ = ["money_router"]

RECENT_ROWS_MAX = 20

money_router = APIRouter(include_in_schema=False)


@money_router.get("/dashboard")
async def dashboard(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    user_id = session.user.user_id
    context = web.context

    async def load(connection: AsyncConnection) -> _Dashboard:
        summaries = await agent_summaries(context, connection, user_id)
        links = [summary.link for summary in summaries]
        lines = await transactions(
            context,
            connection,
            links,
            TransactionFilter(limit=limits.TRANSACTIONS_PAGE_SIZE_MAX),
        )
        contracts = await recent_contracts(connection, [link.agent_id for link in links])
        approvals = await approvals_for_user(connection, user_id, limit=RECENT_ROWS_MAX)
        top_ups = await recent_top_ups(connection, user_id=user_id, limit=RECENT_ROWS_MAX)
        return _Dashboard(summaries, lines, contracts, approvals, top_ups)

    summaries, lines, contracts, approvals, top_ups = await context.read(load)
    now_ms = context.now_ms()
    return await web.render(
        request,
        "dashboard.html",
        summaries=summaries,
        chart=Markup(spending_chart_svg(chart_days(lines, now_ms))),
        recent_lines=lines[:RECENT_ROWS_MAX],
        contracts=contracts,
        pending_approvals=[
            approval
            for approval in approvals
            if approval.status is ApprovalStatus.PENDING and not approval.is_expired(now_ms)
        ],
        top_ups=top_ups,
        labels={summary.link.agent_id: summary.link.label for summary in summaries},
    )


@money_router.get("/top-up")
async def top_up_page(request: Request, web: PortalWeb) -> Response:
    return await _top_up_form(web, request, problem=None)


@money_router.post("/top-up")
async def top_up_form(request: Request, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    package = form.get("package", "")
    try:
        custom_text = form.get("amount", "").strip()
        custom_cents = (
            parse_dollars(custom_text, field="amount")
            if package == CUSTOM_PACKAGE_CODE and custom_text
            else None
        )
        fees = await web.context.fee_schedule()
        quote = top_up_quote(package, custom_cents=custom_cents, fees=fees)
        started = await start_top_up(web.context, session.user, form.get("agent_id", ""), quote)
    except PortalError as error:
        return await _top_up_form(
            web, request, problem=error.message, status_code=error.http_status
        )
    return RedirectResponse(f"/top-up/{started.top_up.topup_id}", status_code=303)


@money_router.get("/top-up/{topup_id}")
async def pay_page(request: Request, topup_id: str, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    top_up = await top_up_of(web.context, session.user, topup_id)
    return await web.render(
        request,
        "pay.html",
        top_up=top_up,
        stripe_js_url=web.context.config.stripe.js_url,
        publishable_key=web.context.config.stripe.publishable_key,
        client_secret=await _client_secret(web, top_up.payment_intent_id),
    )


@money_router.get("/top-up/{topup_id}/status")
async def top_up_status(request: Request, topup_id: str, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    top_up = await top_up_of(web.context, session.user, topup_id)
    return JSONResponse(
        {"status": top_up.status.value, "credits_millicredits": top_up.credits_millicredits}
    )


@money_router.post("/top-up/{topup_id}/card")
async def offline_card(request: Request, topup_id: str, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    checked_csrf(request.headers.get(CSRF_HEADER, ""), session.csrf_token)
    body = await request.body()
    if len(body) > limits.FORM_BYTES_MAX:
        raise InvalidInput("card", "the request is too large")
    try:
        card_id = str(json.loads(body).get("card_id", ""))
    except (ValueError, AttributeError) as exc:
        raise InvalidInput("card", "send JSON with card_id") from exc
    intent = await confirm_offline_card(web.context, session.user, topup_id, card_id)
    return JSONResponse({"status": intent.status, "client_secret": intent.client_secret})


@money_router.post("/stripe/webhook")
async def stripe_webhook(request: Request, web: PortalWeb) -> Response:
    body = await read_body(
        request,
        bytes_max=limits.WEBHOOK_BYTES_MAX,
        field="body",
        problem="the request is too large",
    )
    outcome = await handle_webhook(web.context, body, request.headers.get("Stripe-Signature"))
    return JSONResponse({"received": True, "outcome": outcome.outcome})


@money_router.get("/transactions")
async def transactions_page(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    selection = _selection(request, web.context.now_ms())
    links, lines = await _history(web, session.user.user_id, selection)
    query = request.url.query
    return await web.render(
        request,
        "transactions.html",
        links=links,
        lines=lines,
        selection=selection,
        csv_url="/transactions.csv" + (f"?{query}" if query else ""),
    )


@money_router.get("/transactions.csv")
async def transactions_export(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    selection = _selection(request, web.context.now_ms())
    _, lines = await _history(web, session.user.user_id, selection)
    stamp = time.strftime("%Y%m%d", time.gmtime(web.context.now_ms() // 1000))
    return Response(
        transactions_csv(lines),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="agentx-{stamp}.csv"'},
    )


@money_router.get("/payouts")
async def payouts_page(request: Request, web: PortalWeb) -> Response:
    return await _payouts(web, request, problem=None)


@money_router.post("/payouts/connect")
async def connect_form(request: Request, web: PortalWeb) -> Response:
    session, _ = await web.checked_form(request)
    url = await connect_onboarding_url(web.context, session.user)
    return RedirectResponse(url, status_code=303)


@money_router.get("/payouts/connected")
async def connect_return(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    enabled = await refresh_connect_status(web.context, session.user)
    notice = "connected" if enabled else "not_connected"
    return RedirectResponse(f"/payouts?notice={notice}", status_code=303)


@money_router.post("/payouts/agent-permission")
async def agent_permission_form(request: Request, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    allowed = form.get("allowed") == "on"
    await allow_agent_cash_out(web.context, session.user, allowed=allowed)
    notice = "agents_allowed" if allowed else "agents_not_allowed"
    return RedirectResponse(f"/payouts?notice={notice}", status_code=303)


@money_router.post("/payouts")
async def cash_out_form(request: Request, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    try:
        credits_text = form.get("credits", "").strip()
        if not credits_text.isdigit() or len(credits_text) > 9:
            raise InvalidInput("credits", "enter whole credits")
        payout = await request_cash_out(
            web.context,
            session.user,
            form.get("agent_id", ""),
            int(credits_text),
            requested_by="human",
        )
    except PortalError as error:
        return await _payouts(web, request, problem=error.message, status_code=error.http_status)
    return RedirectResponse(f"/payouts?notice=payout_{payout.status.value}", status_code=303)


async def _top_up_form(
    web: Web, request: Request, *, problem: str | None, status_code: int = 200
) -> Response:
    session = await web.require_session(request)
    links = await web.context.read(
        lambda connection: linked_agents(connection, session.user.user_id)
    )
    fees = await web.context.fee_schedule()
    quotes = [top_up_quote(package.code, custom_cents=None, fees=fees) for package in PACKAGES]
    return await web.render(
        request,
        "top_up.html",
        status_code=status_code,
        links=links,
        quotes=quotes,
        purchase_fee_bps=fees.purchase_bps,
        problem=problem,
        custom_min_cents=limits.CUSTOM_TOPUP_CENTS_MIN,
        custom_max_cents=limits.CUSTOM_TOPUP_CENTS_MAX,
    )


async def _client_secret(web: Web, payment_intent_id: str | None) -> str:
    """The PaymentIntent's client secret for Stripe.js (created again from its id)."""
    if payment_intent_id is None:
        return ""
    return await web.context.payments.client_secret(payment_intent_id)


class _Dashboard(NamedTuple):
    summaries: list[AgentSummary]
    lines: list[TransactionLine]
    contracts: list[ContractLine]
    approvals: list[Approval]
    top_ups: list[TopUp]


async def _payouts(
    web: Web, request: Request, *, problem: str | None, status_code: int = 200
) -> Response:
    session = await web.require_session(request)
    user_id = session.user.user_id

    async def load(connection: AsyncConnection) -> tuple[list[AgentSummary], list[Payout]]:
        summaries = await agent_summaries(web.context, connection, user_id)
        return summaries, await payouts_of(connection, user_id, limit=RECENT_ROWS_MAX)

    summaries, payouts = await web.context.read(load)
    return await web.render(
        request,
        "payouts.html",
        status_code=status_code,
        summaries=summaries,
        payouts=payouts,
        problem=problem,
        notice=request.query_params.get("notice"),
        cash_out_fee_bps=(await web.context.fee_schedule()).cash_out_bps,
        cash_out_min=limits.CASH_OUT_CREDITS_MIN,
        cash_out_month_max=limits.CASH_OUT_CREDITS_PER_MONTH_MAX,
    )


def _selection(request: Request, now_ms: int) -> TransactionFilter:
    query = request.query_params
    since_text = query.get("since_days", "").strip()
    if since_text and not (since_text.isdigit() and 1 <= int(since_text) <= 3660):
        raise InvalidInput("since_days", "is a number of days")
    return TransactionFilter(
        agent_id=query.get("agent_id") or None,
        kind=query.get("kind") or None,
        direction=query.get("direction") or None,
        since_ms=now_ms - int(since_text) * 86_400_000 if since_text else None,
        limit=limits.TRANSACTIONS_PAGE_SIZE_MAX,
    )


async def _history(
    web: Web, user_id: str, selection: TransactionFilter
) -> tuple[list[LinkedAgent], list[TransactionLine]]:
    async def load(connection: AsyncConnection) -> tuple[list[LinkedAgent], list[TransactionLine]]:
        links = await linked_agents(connection, user_id)
        return links, await transactions(web.context, connection, links, selection)

    return await web.context.read(load)
