"""Pages: sign up, sign in, sign out, the account (password, API tokens).

A refused form comes back filled in (passwords excepted) with each mistake
beside its field (``form_state``). Signing in works whatever cookies the
browser holds: a signed-in visitor is sent on to the dashboard, and the
sign-in and sign-up forms accept the anonymous double-submit token or the
current session's own; a page whose token went stale is shown again with a
fresh one instead of a dead end.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from human_portal.accounts import (
    change_password,
    checked_email,
    checked_password,
    sign_in,
    sign_out,
    sign_up,
)
from human_portal.api_tokens import create_api_token, revoke_api_token, tokens_of
from human_portal.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    LimitExceeded,
    PortalError,
    RateLimited,
)
from human_portal.security import constant_time_equal
from human_portal.web.common import (
    ANONYMOUS_CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    PortalWeb,
    Web,
    read_form,
    safe_next,
)
from human_portal.web.form_state import BLANK, Checks, FormState, failed_form, failure_status

__all__ = ["account_router"]

SIGN_UP_FIELDS = ("email", "password", "password_again")
SIGN_IN_FIELDS = ("email", "password")
PASSWORD_FIELDS = ("current_password", "new_password", "new_password_again")
STALE_FORM = (
    "This page's security token was stale, so nothing was sent; check the form and send it again."
)

account_router = APIRouter(include_in_schema=False)


@account_router.get("/")
async def home(request: Request, web: PortalWeb) -> Response:
    """A visitor sees what the portal is for; a signed-in human goes to the dashboard."""
    session = await web.session(request)
    if session is None:
        return await web.render(request, "landing.html")
    return RedirectResponse("/dashboard", status_code=303)


@account_router.get("/sign-up")
async def sign_up_page(request: Request, web: PortalWeb) -> Response:
    if await web.session(request) is not None:
        return RedirectResponse("/dashboard", status_code=303)
    return await web.render(request, "sign_up.html", form_state=BLANK)


@account_router.post("/sign-up")
async def sign_up_form(request: Request, web: PortalWeb) -> Response:
    form, token_ok = await _anonymous_form(web, request)
    email, password = form.get("email", ""), form.get("password", "")
    values = {"email": email}
    if not token_ok:
        state = FormState("sign-up", values, {}, STALE_FORM)
        return await web.render(request, "sign_up.html", status_code=403, form_state=state)
    try:
        checks = Checks()
        checks.run(lambda: checked_email(email), otherwise="")
        checks.run(lambda: checked_password(password), otherwise="")
        if password != form.get("password_again", ""):
            checks.add("password_again", "the two passwords differ; type the same one twice")
        checks.done()
        await sign_up(web.context, email, password)
        opened = await sign_in(
            web.context, email, password, client_address=_client_address(request)
        )
    except (InvalidInput, Conflict) as error:
        state = failed_form(
            "sign-up",
            error,
            values=values,
            fields=SIGN_UP_FIELDS,
            default_field="email",
            nothing_done="no account was created",
        )
        return await web.render(
            request, "sign_up.html", status_code=failure_status(error), form_state=state
        )
    response = RedirectResponse("/dashboard", status_code=303)
    web.set_session_cookie(response, opened.token)
    return response


@account_router.get("/sign-in")
async def sign_in_page(request: Request, web: PortalWeb) -> Response:
    next_path = safe_next(request.query_params.get("next", "/dashboard"))
    if await web.session(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    return await web.render(request, "sign_in.html", form_state=BLANK, next_path=next_path)


@account_router.post("/sign-in")
async def sign_in_form(request: Request, web: PortalWeb) -> Response:
    form, token_ok = await _anonymous_form(web, request)
    email = form.get("email", "")
    next_path = safe_next(form.get("next", "/dashboard"))
    values = {"email": email}
    if not token_ok:
        state = FormState("sign-in", values, {}, STALE_FORM)
        return await web.render(
            request, "sign_in.html", status_code=403, form_state=state, next_path=next_path
        )
    try:
        opened = await sign_in(
            web.context,
            email,
            form.get("password", ""),
            client_address=_client_address(request),
        )
    except (AuthenticationFailed, RateLimited) as error:
        state = failed_form(
            "sign-in",
            error,
            values=values,
            fields=SIGN_IN_FIELDS,
            default_field="password" if isinstance(error, AuthenticationFailed) else None,
            nothing_done="you are not signed in",
        )
        response = await web.render(
            request,
            "sign_in.html",
            status_code=error.http_status,
            form_state=state,
            next_path=next_path,
        )
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(error.retry_after_s)
        return response
    # Signing in again (a second tab, another account) ends the session it replaces.
    replaced = request.cookies.get(SESSION_COOKIE, "")
    if replaced:
        await sign_out(web.context, replaced)
    redirect = RedirectResponse(next_path, status_code=303)
    web.set_session_cookie(redirect, opened.token)
    return redirect


@account_router.post("/sign-out")
async def sign_out_form(request: Request, web: PortalWeb) -> Response:
    await web.checked_form(request)
    await sign_out(web.context, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@account_router.get("/account")
async def account_page(request: Request, web: PortalWeb) -> Response:
    return await _account(web, request, notice=request.query_params.get("notice"))


@account_router.post("/account/password")
async def password_form(request: Request, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    new_password = form.get("new_password", "")
    try:
        checks = Checks()
        checks.run(lambda: checked_password(new_password, field="new_password"), otherwise="")
        if new_password != form.get("new_password_again", ""):
            checks.add(
                "new_password_again", "the two new passwords differ; type the same one twice"
            )
        checks.done()
        await change_password(
            web.context,
            session.user,
            form.get("current_password", ""),
            new_password,
            keep_session_token=request.cookies.get(SESSION_COOKIE, ""),
        )
    except (InvalidInput, AuthenticationFailed) as error:
        # Every field is a password: none is kept.
        state = failed_form(
            "password",
            error,
            values={},
            fields=PASSWORD_FIELDS,
            default_field="current_password",
            nothing_done="the password is unchanged",
        )
        return await _account(web, request, form_state=state, status_code=400)
    return RedirectResponse("/account?notice=password_changed", status_code=303)


@account_router.post("/account/tokens")
async def token_form(request: Request, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    name = form.get("name", "")
    try:
        created = await create_api_token(web.context, session.user, name)
    except (InvalidInput, LimitExceeded) as error:
        state = _token_failure(error, name)
        return await _account(web, request, form_state=state, status_code=failure_status(error))
    return await _account(web, request, new_token=created.secret, status_code=201)


@account_router.post("/account/tokens/{token_id}/revoke")
async def revoke_form(request: Request, token_id: str, web: PortalWeb) -> Response:
    session, _ = await web.checked_form(request)
    await revoke_api_token(web.context, session.user, token_id)
    return RedirectResponse("/account?notice=token_revoked", status_code=303)


def _token_failure(error: PortalError, name: str) -> FormState:
    return failed_form(
        "token",
        error,
        values={"name": name},
        fields=("name",),
        default_field="name",
        nothing_done="no token was created",
    )


async def _account(
    web: Web,
    request: Request,
    *,
    notice: str | None = None,
    form_state: FormState = BLANK,
    new_token: str | None = None,
    status_code: int = 200,
) -> Response:
    session = await web.require_session(request)
    tokens = await web.context.read(lambda connection: tokens_of(connection, session.user.user_id))
    return await web.render(
        request,
        "account.html",
        status_code=status_code,
        tokens=tokens,
        notice=notice,
        form_state=form_state,
        new_token=new_token,
    )


async def _anonymous_form(web: Web, request: Request) -> tuple[dict[str, str], bool]:
    """The sign-in or sign-up form, and whether its CSRF token is this browser's.

    The token is the anonymous double-submit cookie's, or, when the browser
    is signed in already, the session's own (the page was rendered for the
    session): either proves the form came from a page of this portal.
    """
    form = await read_form(request)
    sent = form.get(CSRF_FIELD, "")
    expected = [request.cookies.get(ANONYMOUS_CSRF_COOKIE, "")]
    session = await web.session(request)
    if session is not None:
        expected.append(session.csrf_token)
    token_ok = bool(sent) and any(token and constant_time_equal(sent, token) for token in expected)
    return form, token_ok


def _client_address(request: Request) -> str:
    # The peer's address; behind a reverse proxy, configure uvicorn's
    # --forwarded-allow-ips so that this is the client, not the proxy.
    return request.client.host if request.client is not None else "unknown"
