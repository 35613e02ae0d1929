"""Pages: the dashboard, top-ups (Stripe.js), the Stripe webhook, history and CSV, payouts."""

from __future__ import annotations

import json
import time
from typing import NamedTuple
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.domain.spending_rules import ApprovalStatus
from human_portal import limits
from human_portal.controls import Approval, approvals_for_user
from human_portal.errors import InvalidInput, LimitExceeded, NotFound, PortalError
from human_portal.headline import ContractInWords, Headline, contracts_in_words, load_headline
from human_portal.linking import LinkedAgent, linked_agents
from human_portal.money_rules import (
    CUSTOM_PACKAGE_CODE,
    PACKAGES,
    CashOutQuote,
    format_cents,
    format_millicredits,
    parse_dollars,
    top_up_quote,
)
from human_portal.payouts import (
    Payout,
    allow_agent_cash_out,
    cash_out_preview,
    connect_onboarding_url,
    payouts_of,
    refresh_connect_status,
    request_cash_out,
)
from human_portal.reports import (
    AgentSummary,
    TransactionFilter,
    TransactionLine,
    agent_summaries,
    chart_days,
    spending_chart_svg,
    transactions,
    transactions_csv,
)
from human_portal.statement import (
    StatementEntry,
    StatementPage,
    StatementQuery,
    What,
    describe_entries,
    export_lines,
    statement_entries,
    statement_page,
)
from human_portal.topups import (
    TopUp,
    confirm_offline_card,
    handle_webhook,
    recent_top_ups,
    start_top_up,
    top_up_of,
)
from human_portal.web.common import (
    CSRF_HEADER,
    PortalWeb,
    Web,
    checked_csrf,
    read_body,
    short_id,
)
from human_portal.web.form_state import (
    BLANK,
    Confirmation,
    FormState,
    confirmed,
    failed_form,
    failure_status,
)

__all__ = ["money_router"]

RECENT_ROWS_MAX = 20

money_router = APIRouter(include_in_schema=False)


@money_router.get("/dashboard")
async def dashboard(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    user_id = session.user.user_id
    context = web.context
    now_ms = context.now_ms()

    async def load(connection: AsyncConnection) -> _Dashboard:
        headline = await load_headline(context, connection, user_id, now_ms=now_ms)
        links = await linked_agents(connection, user_id)
        lines = await transactions(
            context,
            connection,
            links,
            TransactionFilter(limit=limits.TRANSACTIONS_PAGE_SIZE_MAX),
        )
        recent = statement_entries(lines, links)[:RECENT_ROWS_MAX]
        entries = await describe_entries(connection, recent, links)
        contracts = await contracts_in_words(connection, links)
        approvals = await approvals_for_user(connection, user_id, limit=RECENT_ROWS_MAX)
        top_ups = await recent_top_ups(connection, user_id=user_id, limit=RECENT_ROWS_MAX)
        return _Dashboard(headline, lines, entries, contracts, approvals, top_ups)

    headline, lines, entries, contracts, approvals, top_ups = await context.read(load)
    return await web.render(
        request,
        "dashboard.html",
        headline=headline,
        chart=Markup(spending_chart_svg(chart_days(lines, now_ms))),
        recent_entries=entries,
        contracts=contracts,
        pending_approvals=[
            approval
            for approval in approvals
            if approval.status is ApprovalStatus.PENDING and not approval.is_expired(now_ms)
        ],
        top_ups=top_ups,
        labels={agent.agent_id: agent.label for agent in headline.agents},
    )


@money_router.get("/top-up")
async def top_up_page(request: Request, web: PortalWeb) -> Response:
    return await _top_up_form(web, request)


@money_router.post("/top-up")
async def top_up_form(request: Request, web: PortalWeb) -> Response:
    """Start a payment; a mistake shows the form again as typed, and buys nothing."""
    session, form = await web.checked_form(request)
    values = {name: form.get(name, "") for name in _TOP_UP_FIELDS}
    package = values["package"]
    try:
        custom_text = values["amount"].strip()
        custom_cents = (
            parse_dollars(custom_text, field="amount")
            if package == CUSTOM_PACKAGE_CODE and custom_text
            else None
        )
        fees = await web.context.fee_schedule()
        quote = top_up_quote(package, custom_cents=custom_cents, fees=fees)
        started = await start_top_up(web.context, session.user, values["agent_id"], quote)
    except PortalError as error:
        state = failed_form(
            "top-up",
            error,
            values=values,
            fields=_TOP_UP_FIELDS,
            default_field=_TOP_UP_FIELD_OF.get(type(error)),
            nothing_done="nothing was bought",
        )
        return await _top_up_form(web, request, form_state=state, status_code=failure_status(error))
    return RedirectResponse(f"/top-up/{started.top_up.topup_id}", status_code=303)


_TOP_UP_FIELDS = ("agent_id", "package", "amount")
# Errors that name no field, and the field they are about.
_TOP_UP_FIELD_OF: dict[type[PortalError], str] = {LimitExceeded: "amount", NotFound: "agent_id"}


@money_router.get("/top-up/{topup_id}")
async def pay_page(request: Request, topup_id: str, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    top_up = await top_up_of(web.context, session.user, topup_id)
    links = await web.context.read(lambda c: linked_agents(c, session.user.user_id))
    labels = {link.agent_id: link.label for link in links}
    return await web.render(
        request,
        "pay.html",
        top_up=top_up,
        agent_label=labels.get(top_up.agent_id, short_id(top_up.agent_id)),
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
    query = _selection(request, web.context.now_ms())
    user_id = session.user.user_id

    async def load(connection: AsyncConnection) -> tuple[list[LinkedAgent], StatementPage]:
        links = await linked_agents(connection, user_id)
        return links, await statement_page(web.context, connection, links, query)

    links, page = await web.context.read(load)
    # The filters, kept in every link the page makes (the CSV's, the pages').
    filters = urlencode(
        [(name, value) for name, value in request.query_params.items() if name != "page" and value]
    )
    return await web.render(
        request,
        "transactions.html",
        links=links,
        page=page,
        query=query,
        whats=list(What),
        csv_url="/transactions.csv" + (f"?{filters}" if filters else ""),
        previous_url=_page_url(filters, page.page - 1) if page.page > 1 else None,
        next_url=_page_url(filters, page.page + 1) if page.has_next else None,
        read_max=limits.TRANSACTIONS_PAGE_SIZE_MAX,
    )


@money_router.get("/transactions.csv")
async def transactions_export(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    query = _selection(request, web.context.now_ms())
    lines, details = await _history(web, session.user.user_id, query)
    stamp = time.strftime("%Y%m%d", time.gmtime(web.context.now_ms() // 1000))
    return Response(
        transactions_csv(lines, details=details),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="agentx-{stamp}.csv"'},
    )


@money_router.get("/payouts")
async def payouts_page(request: Request, web: PortalWeb) -> Response:
    return await _payouts(web, request)


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
    """First a page that says what the cash-out pays; the money moves once it is confirmed."""
    session, form = await web.checked_form(request)
    values = {name: form.get(name, "") for name in _CASH_OUT_FIELDS}
    agent_id = values["agent_id"]
    try:
        credits_text = values["credits"].strip().replace(",", "")
        if not credits_text.isdigit() or len(credits_text) > 9:
            raise InvalidInput("credits", "enter a whole number of credits, like 150")
        credits = int(credits_text)
        if not confirmed(form):
            quote = await cash_out_preview(web.context, session.user, agent_id, credits)
            return await _cash_out_confirmation(web, request, agent_id, quote)
        payout = await request_cash_out(
            web.context, session.user, agent_id, credits, requested_by="human"
        )
    except PortalError as error:
        state = failed_form(
            "cash-out",
            error,
            values=values,
            fields=_CASH_OUT_FIELDS,
            default_field="agent_id" if isinstance(error, NotFound) else "credits",
            nothing_done="no credits left the agent",
        )
        return await _payouts(web, request, form_state=state, status_code=failure_status(error))
    return RedirectResponse(f"/payouts?notice=payout_{payout.status.value}", status_code=303)


_CASH_OUT_FIELDS = ("agent_id", "credits")


async def _cash_out_confirmation(
    web: Web, request: Request, agent_id: str, quote: CashOutQuote
) -> Response:
    session = await web.require_session(request)
    links = await web.context.read(
        lambda connection: linked_agents(connection, session.user.user_id)
    )
    label = next((link.label for link in links if link.agent_id == agent_id), "")
    name = f"'{label}'" if label else short_id(agent_id)
    credits_text = format_millicredits(quote.millicredits)
    confirmation = Confirmation(
        title=f"Cash out {credits_text} credits from {name}?",
        consequences=(
            f"You will receive {format_cents(quote.net_cents)} "
            f"(fee {format_cents(quote.fee_cents)}) in your bank; "
            f"{credits_text} credits leave {name}.",
            f"Stripe pays it to your connected account {session.user.stripe_account_id}, "
            "which sends it on to your bank. A cash-out cannot be undone.",
        ),
        action="/payouts",
        button=f"Cash out {credits_text} credits",
        cancel_url="/payouts",
        fields={"agent_id": agent_id, "credits": str(quote.credits)},
    )
    return await web.render(request, "confirm.html", confirmation=confirmation)


async def _top_up_form(
    web: Web, request: Request, *, form_state: FormState = BLANK, status_code: int = 200
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
        form_state=form_state,
        custom_min_cents=limits.CUSTOM_TOPUP_CENTS_MIN,
        custom_max_cents=limits.CUSTOM_TOPUP_CENTS_MAX,
    )


async def _client_secret(web: Web, payment_intent_id: str | None) -> str:
    """The PaymentIntent's client secret for Stripe.js (created again from its id)."""
    if payment_intent_id is None:
        return ""
    return await web.context.payments.client_secret(payment_intent_id)


class _Dashboard(NamedTuple):
    headline: Headline
    lines: list[TransactionLine]
    entries: list[StatementEntry]
    contracts: list[ContractInWords]
    approvals: list[Approval]
    top_ups: list[TopUp]


async def _payouts(
    web: Web, request: Request, *, form_state: FormState = BLANK, status_code: int = 200
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
        form_state=form_state,
        notice=request.query_params.get("notice"),
        cash_out_fee_bps=(await web.context.fee_schedule()).cash_out_bps,
        cash_out_min=limits.CASH_OUT_CREDITS_MIN,
        cash_out_month_max=limits.CASH_OUT_CREDITS_PER_MONTH_MAX,
    )


def _selection(request: Request, now_ms: int) -> StatementQuery:
    """The Transactions page's filters (and the CSV's): checked, or a 422 saying which."""
    query = request.query_params
    since_text = query.get("since_days", "").strip()
    if since_text and not (since_text.isdigit() and 1 <= int(since_text) <= 3660):
        raise InvalidInput("since_days", "is a number of days")
    what_text = query.get("what", "").strip()
    if what_text and what_text not in set(What):
        raise InvalidInput("what", "is one of " + ", ".join(What))
    page_text = query.get("page", "").strip()
    if page_text and not (page_text.isdigit() and len(page_text) <= 9):
        raise InvalidInput("page", "is a page number")
    lines = TransactionFilter(
        agent_id=query.get("agent_id") or None,
        kind=query.get("kind") or None,
        direction=query.get("direction") or None,
        since_ms=now_ms - int(since_text) * 86_400_000 if since_text else None,
        limit=limits.TRANSACTIONS_PAGE_SIZE_MAX,
    )
    return StatementQuery(
        lines, what=What(what_text) if what_text else None, page=int(page_text or "1")
    )


def _page_url(filters: str, page: int) -> str:
    return "/transactions?" + (f"{filters}&" if filters else "") + f"page={page}"


async def _history(
    web: Web, user_id: str, query: StatementQuery
) -> tuple[list[TransactionLine], dict[str, tuple[str, int | None]]]:
    """The CSV's ledger lines, and the statement's words and fee for each."""

    async def load(
        connection: AsyncConnection,
    ) -> tuple[list[TransactionLine], dict[str, tuple[str, int | None]]]:
        links = await linked_agents(connection, user_id)
        return await export_lines(web.context, connection, links, query)

    return await web.context.read(load)
