"""Pages: every subscription of the human's agents, and a cancel for those they buy."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from human_portal.subscription_reports import (
    SUBSCRIPTIONS_SHOWN_PER_AGENT_MAX,
    cancel_subscription,
    subscriptions_report,
)
from human_portal.web.common import PortalWeb

__all__ = ["subscriptions_router"]

subscriptions_router = APIRouter(include_in_schema=False)


@subscriptions_router.get("/subscriptions")
async def subscriptions_page(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    report = await subscriptions_report(web.context, session.user.user_id)
    notice = request.query_params.get("notice")
    # The confirmation is worded from the subscription as it stands now (a
    # line of this human's own page), never from text carried in the address.
    cancelled_id = request.query_params.get("subscription", "") if notice == "cancelled" else ""
    return await web.render(
        request,
        "subscriptions.html",
        report=report,
        limit_per_agent=SUBSCRIPTIONS_SHOWN_PER_AGENT_MAX,
        notice=notice,
        cancelled_id=cancelled_id,
        cancelled=report.bought_line(cancelled_id) if cancelled_id else None,
    )


@subscriptions_router.post("/subscriptions/{subscription_id}/cancel")
async def cancel_form(request: Request, subscription_id: str, web: PortalWeb) -> Response:
    session, _ = await web.checked_form(request)
    marked = await cancel_subscription(web.context, session.user, subscription_id)
    return RedirectResponse(
        f"/subscriptions?notice=cancelled&subscription={quote(marked.subscription_id)}",
        status_code=303,
    )
