"""Pages: linked agents (link codes, unlinking, budgets, the freeze button) and approvals.

A refused form comes back filled in with each mistake beside its field
(``form_state``); unlinking is asked again on a page that says what it
means; the freeze is a button of its own that leaves the budget as it is;
a decided approval is confirmed in words, from the approval as it stands.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from human_portal.controls import (
    Approval,
    approvals_for_user,
    checked_limit,
    decide_approval,
    set_controls,
    set_owner_freeze,
)
from human_portal.errors import Conflict, InvalidInput, LimitExceeded, NotFound
from human_portal.linking import LinkedAgent, issue_link_code, linked_agents, unlink_agent
from human_portal.money_rules import format_millicredits, parse_credits
from human_portal.reports import AgentSummary, agent_summaries
from human_portal.web.common import PortalWeb, Web, short_id
from human_portal.web.form_state import (
    BLANK,
    Checks,
    Confirmation,
    FormState,
    confirmed,
    failed_form,
    failure_status,
)

__all__ = ["agent_router"]

APPROVALS_SHOWN_MAX = 100
BUDGET_FIELDS = ("daily_limit", "contract_limit", "approval_threshold")

agent_router = APIRouter(include_in_schema=False)


@agent_router.get("/agents")
async def agents_page(request: Request, web: PortalWeb) -> Response:
    return await _agents(web, request)


@agent_router.post("/agents/link-code")
async def link_code_form(request: Request, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    label = form.get("label", "")
    try:
        issued = await issue_link_code(web.context, session.user, label=label)
    except (InvalidInput, LimitExceeded) as error:
        state = failed_form(
            "link",
            error,
            values={"label": label},
            fields=("label",),
            default_field="label",
            nothing_done="no code was made",
        )
        return await _agents(web, request, form_state=state, status_code=failure_status(error))
    return await _agents(web, request, issued=issued, status_code=201)


@agent_router.get("/agents/{agent_id}/unlink")
async def unlink_page(request: Request, agent_id: str, web: PortalWeb) -> Response:
    return await _unlink_confirmation(web, request, agent_id)


@agent_router.post("/agents/{agent_id}/unlink")
async def unlink_form(request: Request, agent_id: str, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    if not confirmed(form):
        return await _unlink_confirmation(web, request, agent_id)
    await unlink_agent(web.context, session.user, agent_id)
    return RedirectResponse("/agents?notice=unlinked", status_code=303)


@agent_router.post("/agents/{agent_id}/controls")
async def controls_form(request: Request, agent_id: str, web: PortalWeb) -> Response:
    """Save the budget; the freeze is left as it is (it has its own button)."""
    session, form = await web.checked_form(request)
    values = {name: form.get(name, "") for name in BUDGET_FIELDS}
    try:
        checks = Checks()
        limits = {
            name: checks.run(partial(_limit, values, name), otherwise=None)
            for name in BUDGET_FIELDS
        }
        checks.done()
        await set_controls(
            web.context,
            session.user,
            agent_id,
            daily_limit_millicredits=limits["daily_limit"],
            contract_limit_millicredits=limits["contract_limit"],
            approval_threshold_millicredits=limits["approval_threshold"],
            frozen=None,
        )
    except InvalidInput as error:
        state = failed_form(f"budget-{agent_id}", error, values=values, fields=BUDGET_FIELDS)
        return await _agents(web, request, form_state=state, status_code=failure_status(error))
    return RedirectResponse(f"/agents?notice=controls_saved#agent-{agent_id}", status_code=303)


@agent_router.post("/agents/{agent_id}/freeze")
async def freeze_form(request: Request, agent_id: str, web: PortalWeb) -> Response:
    """The freeze button; the budget stays as it is."""
    return await _set_freeze(web, request, agent_id, frozen=True)


@agent_router.post("/agents/{agent_id}/unfreeze")
async def unfreeze_form(request: Request, agent_id: str, web: PortalWeb) -> Response:
    return await _set_freeze(web, request, agent_id, frozen=False)


@agent_router.get("/approvals")
async def approvals_page(request: Request, web: PortalWeb) -> Response:
    return await _approvals(web, request)


@agent_router.post("/approvals/{contract_id}/{decision}")
async def decide_form(
    request: Request, contract_id: str, decision: str, web: PortalWeb
) -> Response:
    session, _ = await web.checked_form(request)
    if decision not in ("approve", "reject"):
        return RedirectResponse("/approvals", status_code=303)
    try:
        await decide_approval(web.context, session.user, contract_id, approve=decision == "approve")
    except (Conflict, NotFound) as error:
        state = failed_form(
            "decide", error, values={}, fields=(), nothing_done="nothing was changed"
        )
        return await _approvals(web, request, form_state=state, status_code=error.http_status)
    return RedirectResponse(
        f"/approvals?notice={decision}d&contract={quote(contract_id)}", status_code=303
    )


async def _set_freeze(web: Web, request: Request, agent_id: str, *, frozen: bool) -> Response:
    session, _ = await web.checked_form(request)
    await set_owner_freeze(web.context, session.user, agent_id, frozen=frozen)
    notice = "frozen" if frozen else "unfrozen"
    return RedirectResponse(
        f"/agents?notice={notice}&agent={quote(agent_id)}#agent-{agent_id}", status_code=303
    )


async def _agents(
    web: Web,
    request: Request,
    *,
    issued: object = None,
    form_state: FormState = BLANK,
    status_code: int = 200,
) -> Response:
    session = await web.require_session(request)
    summaries = await web.context.read(
        lambda connection: agent_summaries(web.context, connection, session.user.user_id)
    )
    notice = request.query_params.get("notice")
    return await web.render(
        request,
        "agents.html",
        status_code=status_code,
        summaries=summaries,
        issued=issued,
        notice=notice,
        notice_agent=_summary_of(summaries, request.query_params.get("agent", "")),
        form_state=form_state,
        nats_url=web.context.config.nats_url or "nats://127.0.0.1:4222",
    )


async def _unlink_confirmation(web: Web, request: Request, agent_id: str) -> Response:
    session = await web.require_session(request)
    summaries = await web.context.read(
        lambda connection: agent_summaries(web.context, connection, session.user.user_id)
    )
    summary = _summary_of(summaries, agent_id)
    if summary is None:
        raise NotFound("linked agent")
    name = f"'{summary.link.label}'" if summary.link.label else short_id(agent_id)
    credits = format_millicredits(summary.available_millicredits + summary.held_millicredits)
    confirmation = Confirmation(
        title=f"Unlink {name}?",
        consequences=(
            f"{name} keeps its {credits} credits; you stop controlling its spending.",
            "Its budget and your freeze are removed, and the purchases waiting for your "
            "approval are rejected. You can no longer top it up or cash it out here.",
            "To link it again, the agent signs a new link code with its key.",
        ),
        action=f"/agents/{agent_id}/unlink",
        button=f"Unlink {name}",
        cancel_url=f"/agents#agent-{agent_id}",
    )
    return await web.render(request, "confirm.html", confirmation=confirmation)


async def _approvals(
    web: Web, request: Request, *, form_state: FormState = BLANK, status_code: int = 200
) -> Response:
    session = await web.require_session(request)
    user_id = session.user.user_id

    async def load(connection: AsyncConnection) -> tuple[list[Approval], list[LinkedAgent]]:
        found = await approvals_for_user(connection, user_id, limit=APPROVALS_SHOWN_MAX)
        return found, await linked_agents(connection, user_id)

    approvals, links = await web.context.read(load)
    notice = request.query_params.get("notice")
    # The confirmation is worded from the approval as it stands (a row of this
    # human's own list), never from text carried in the address.
    decided_id = request.query_params.get("contract", "")
    decided = next((a for a in approvals if a.contract_id == decided_id), None)
    return await web.render(
        request,
        "approvals.html",
        status_code=status_code,
        approvals=approvals,
        own_labels={link.agent_id: link.label for link in links},
        now_ms=web.context.now_ms(),
        decided_text=_decided_text(decided) if notice in ("approved", "rejected") else "",
        form_state=form_state,
    )


def _decided_text(approval: Approval | None) -> str:
    if approval is None or approval.status.value == "pending":
        return ""
    what = f"{approval.capability} for {format_millicredits(approval.price_millicredits)} credits"
    by = f"'{approval.agent_label}'" if approval.agent_label else short_id(approval.agent_id)
    if approval.status.value == "approved":
        return f"Approved: {what} by {by}; the agent can now retry and the contract opens."
    return f"Rejected: {what} by {by}; the exchange refuses it when the agent retries."


def _summary_of(summaries: list[AgentSummary], agent_id: str) -> AgentSummary | None:
    return next((s for s in summaries if s.link.agent_id == agent_id), None)


def _limit(values: dict[str, str], name: str) -> int | None:
    text = values[name].strip()
    if not text:
        return None
    return checked_limit(parse_credits(text, field=name), field=name)
