"""Pages: sign up, sign in, sign out, the account (password, API tokens)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from human_portal.accounts import change_password, sign_in, sign_out, sign_up
from human_portal.api_tokens import create_api_token, revoke_api_token, tokens_of
from human_portal.errors import AuthenticationFailed, Conflict, InvalidInput, RateLimited
from human_portal.web.common import SESSION_COOKIE, PortalWeb, Web, safe_next

__all__ = ["account_router"]

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
    return await web.render(request, "sign_up.html", email="", problem=None)


@account_router.post("/sign-up")
async def sign_up_form(request: Request, web: PortalWeb) -> Response:
    form = await web.checked_anonymous_form(request)
    email, password = form.get("email", ""), form.get("password", "")
    try:
        if password != form.get("password_again", ""):
            raise InvalidInput("password_again", "the two passwords differ")
        await sign_up(web.context, email, password)
        opened = await sign_in(
            web.context, email, password, client_address=_client_address(request)
        )
    except (InvalidInput, Conflict) as error:
        return await web.render(
            request,
            "sign_up.html",
            status_code=error.http_status,
            email=email,
            problem=error.message,
        )
    response = RedirectResponse("/dashboard", status_code=303)
    web.set_session_cookie(response, opened.token)
    return response


@account_router.get("/sign-in")
async def sign_in_page(request: Request, web: PortalWeb) -> Response:
    next_path = safe_next(request.query_params.get("next", "/dashboard"))
    return await web.render(request, "sign_in.html", email="", problem=None, next_path=next_path)


@account_router.post("/sign-in")
async def sign_in_form(request: Request, web: PortalWeb) -> Response:
    form = await web.checked_anonymous_form(request)
    email = form.get("email", "")
    next_path = safe_next(form.get("next", "/dashboard"))
    try:
        opened = await sign_in(
            web.context,
            email,
            form.get("password", ""),
            client_address=_client_address(request),
        )
    except (AuthenticationFailed, RateLimited) as error:
        response = await web.render(
            request,
            "sign_in.html",
            status_code=error.http_status,
            email=email,
            problem=error.message,
            next_path=next_path,
        )
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(error.retry_after_s)
        return response
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
        if new_password != form.get("new_password_again", ""):
            raise InvalidInput("new_password_again", "the two new passwords differ")
        await change_password(
            web.context,
            session.user,
            form.get("current_password", ""),
            new_password,
            keep_session_token=request.cookies.get(SESSION_COOKIE, ""),
        )
    except (InvalidInput, AuthenticationFailed) as error:
        return await _account(web, request, problem=error.message, status_code=error.http_status)
    return RedirectResponse("/account?notice=password_changed", status_code=303)


@account_router.post("/account/tokens")
async def token_form(request: Request, web: PortalWeb) -> Response:
    session, form = await web.checked_form(request)
    created = await create_api_token(web.context, session.user, form.get("name", ""))
    return await _account(web, request, new_token=created.secret, status_code=201)


@account_router.post("/account/tokens/{token_id}/revoke")
async def revoke_form(request: Request, token_id: str, web: PortalWeb) -> Response:
    session, _ = await web.checked_form(request)
    await revoke_api_token(web.context, session.user, token_id)
    return RedirectResponse("/account?notice=token_revoked", status_code=303)


async def _account(
    web: Web,
    request: Request,
    *,
    notice: str | None = None,
    problem: str | None = None,
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
        problem=problem,
        new_token=new_token,
    )


def _client_address(request: Request) -> str:
    # The peer's address; behind a reverse proxy, configure uvicorn's
    # --forwarded-allow-ips so that this is the client, not the proxy.
    return request.client.host if request.client is not None else "unknown"
