"""Pages: linked agents (link codes, unlinking, budgets, freeze) and approvals."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from human_portal.controls import approvals_for_user, decide_approval, set_controls
from human_portal.linking import issue_link_code, unlink_agent
from human_portal.money_rules import parse_credits
from human_portal.reports import agent_summaries
from human_portal.web.common import PortalWeb, Web

__all__ = ["agent_router"]

APPROVALS_SHOWN_MAX = 100

agent_router = APIRouter(include_in_schema=False)


@agent_router.get("/agents")
async def agents_page(request: Request, web: PortalWeb) -> Response:
    return await _agents(web, request, issued=None)


@agent_router.post("/agents/link-code")
async def link_code_form(request: Request, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    issued = await issue_link_code(web.context, session.user, label=form.get("label", ""))
    return await _agents(web, request, issued=issued, status_code=201)


@agent_router.post("/agents/{agent_id}/unlink")
async def unlink_form(request: Request, agent_id: str, web: PortalWeb) -> Response:
    session, _ = await web.checked_form(request)
    await unlink_agent(web.context, session.user, agent_id)
    return RedirectResponse("/agents?notice=unlinked", status_code=303)


@agent_router.post("/agents/{agent_id}/controls")
async def controls_form(request: Request, agent_id: str, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    await set_controls(
        web.context,
        session.user,
        agent_id,
        daily_limit_millicredits=_credits_or_none(form, "daily_limit"),
        contract_limit_millicredits=_credits_or_none(form, "contract_limit"),
        approval_threshold_millicredits=_credits_or_none(form, "approval_threshold"),
        frozen=form.get("frozen") == "on",
    )
    return RedirectResponse("/agents?notice=controls_saved", status_code=303)


@agent_router.get("/approvals")
async def approvals_page(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    approvals = await web.context.read(
        lambda connection: approvals_for_user(
            connection, session.user.user_id, limit=APPROVALS_SHOWN_MAX
        )
    )
    return await web.render(
        request, "approvals.html", approvals=approvals, now_ms=web.context.now_ms()
    )


@agent_router.post("/approvals/{contract_id}/{decision}")
async def decide_form(
    request: Request, contract_id: str, decision: str, web: PortalWeb
) -> Response:
    session, _ = await web.checked_form(request)
    if decision not in ("approve", "reject"):
        return RedirectResponse("/approvals", status_code=303)
    await decide_approval(web.context, session.user, contract_id, approve=decision == "approve")
    return RedirectResponse(f"/approvals?notice={decision}d", status_code=303)


async def _agents(
    web: Web, request: Request, *, issued: object, status_code: int = 200
) -> Response:
    session = await web.require_session(request)
    summaries = await web.context.read(
        lambda connection: agent_summaries(web.context, connection, session.user.user_id)
    )
    return await web.render(
        request,
        "agents.html",
        status_code=status_code,
        summaries=summaries,
        issued=issued,
        notice=request.query_params.get("notice"),
        nats_url=web.context.config.nats_url or "nats://127.0.0.1:4222",
    )


def _credits_or_none(form: dict[str, str], name: str) -> int | None:
    text = form.get(name, "").strip()
    return parse_credits(text, field=name) if text else None
