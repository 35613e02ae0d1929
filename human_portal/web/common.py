"""What every route shares: sessions, CSRF checks, bounded form reading, rendering.

Sessions live in an HttpOnly, SameSite=Lax cookie (Secure when the portal is
served over https). Every form carries a CSRF token: the session's own when
signed in, else a random one also set in a SameSite=Strict cookie (the
double-submit pattern, for the sign-in and sign-up forms). A POST without
the matching token is refused before anything is read or written.

Every signed-in page's navigation carries two counts, unread notices and
approvals waiting (``human_portal.notice_list.nav_counts``): read once per
rendered page, each query bounded; a page still renders, without them, when
they cannot be read (an error page about the database, for one).

Route modules are module-level routers; a handler asks for the app's ``Web``
with the ``PortalWeb`` dependency, which ``create_app`` keeps in the app's
state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from human_portal import limits
from human_portal.accounts import Session, session_for_token
from human_portal.errors import CsrfRejected, InvalidInput, PortalError
from human_portal.money_rules import format_cents, format_millicredits
from human_portal.notice_list import NavCounts, nav_counts
from human_portal.portal_context import PortalContext
from human_portal.security import constant_time_equal, new_token
from wallet import WalletError

__all__ = [
    "ANONYMOUS_CSRF_COOKIE",
    "SESSION_COOKIE",
    "PortalWeb",
    "SignInRequired",
    "Web",
    "checked_csrf",
    "optional_text",
    "portal_web",
    "read_body",
    "read_form",
    "safe_next",
]

SESSION_COOKIE = "agentx_session"
ANONYMOUS_CSRF_COOKIE = "agentx_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(Exception):
    """A page needs a session; the app answers with a redirect to sign in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass
class Web:
    """The context and templates every route module is built with."""

    context: PortalContext
    templates: Jinja2Templates

    async def session(self, request: Request) -> Session | None:
        # Looked up once per request, however many times a route asks.
        if not hasattr(request.state, "portal_session"):
            token = request.cookies.get(SESSION_COOKIE, "")
            found = await session_for_token(self.context, token) if token else None
            request.state.portal_session = found
        session: Session | None = request.state.portal_session
        return session

    async def require_session(self, request: Request) -> Session:
        session = await self.session(request)
        if session is None:
            raise SignInRequired(safe_next(request.url.path))
        return session

    async def checked_form(self, request: Request, /) -> tuple[Session, dict[str, str]]:
        """A signed-in user's form, with its CSRF token checked."""
        session = await self.require_session(request)
        form = await read_form(request)
        checked_csrf(form.get(CSRF_FIELD, ""), session.csrf_token)
        return session, form

    async def checked_anonymous_form(self, request: Request, /) -> dict[str, str]:
        form = await read_form(request)
        checked_csrf(form.get(CSRF_FIELD, ""), request.cookies.get(ANONYMOUS_CSRF_COOKIE, ""))
        return form

    async def render(
        self, request: Request, template: str, /, *, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        session = await self.session(request)
        new_anonymous_token = None
        nav: NavCounts | None = None
        if session is not None:
            csrf_token = session.csrf_token
            nav = await self._nav_counts(session)
        else:
            csrf_token = request.cookies.get(ANONYMOUS_CSRF_COOKIE, "")
            if len(csrf_token) < 32:
                csrf_token = new_anonymous_token = new_token(limits.CSRF_TOKEN_BYTES)
        response = self.templates.TemplateResponse(
            request,
            template,
            {
                "session": session,
                "user": session.user if session is not None else None,
                "csrf_token": csrf_token,
                "offline": self.context.config.stripe.offline,
                "nav": nav,
                **values,
            },
            status_code=status_code,
        )
        if new_anonymous_token is not None:
            response.set_cookie(
                ANONYMOUS_CSRF_COOKIE,
                new_anonymous_token,
                httponly=True,
                samesite="strict",
                secure=self.context.config.cookie_secure,
            )
        return response

    async def _nav_counts(self, session: Session, /) -> NavCounts | None:
        context = self.context
        try:
            return await context.read(
                lambda connection: nav_counts(
                    context, connection, session.user.user_id, now_ms=context.now_ms()
                )
            )
        except (PortalError, WalletError):
            return None

    def set_session_cookie(self, response: Response, token: str, /) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=limits.SESSION_LIFETIME_S,
            httponly=True,
            samesite="lax",
            secure=self.context.config.cookie_secure,
            path="/",
        )


async def portal_web(request: Request) -> Web:
    """The ``Web`` of the app serving ``request`` (set by ``create_app``)."""
    web: Web = request.app.state.portal_web
    return web


PortalWeb = Annotated[Web, Depends(portal_web)]


def checked_csrf(sent: str, expected: str, /) -> None:
    if not sent or not expected or not constant_time_equal(sent, expected):
        raise CsrfRejected("the form is missing its security token or it is stale; reload the page")


async def read_form(request: Request, /) -> dict[str, str]:
    """An urlencoded body of at most ``FORM_BYTES_MAX`` bytes, as a dict (last value wins)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limits.FORM_BYTES_MAX):
        raise InvalidInput("form", "the form is too large")
    body = await read_body(
        request, bytes_max=limits.FORM_BYTES_MAX, field="form", problem="the form is too large"
    )
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("form", "the form is not valid") from exc


async def read_body(request: Request, /, *, bytes_max: int, field: str, problem: str) -> bytes:
    """The request's body, refused with ``InvalidInput(field, problem)`` past ``bytes_max``."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > bytes_max:
            raise InvalidInput(field, problem)
    return bytes(body)


def optional_text(form: dict[str, str], name: str, /) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def safe_next(path: str, /) -> str:
    """A local path to return to after signing in; anything else goes to the dashboard."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/dashboard"


def error_status(error: PortalError, /) -> int:
    return error.http_status


def time_text(at_ms: int | None, /) -> str:
    if at_ms is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at_ms // 1000))


def short_id(agent_id: str, /) -> str:
    return f"{agent_id[:6]}…{agent_id[-4:]}" if len(agent_id) > 12 else agent_id


def sentence_start(text: str, /) -> str:
    """'the agent is frozen' -> 'The agent is frozen' (the rest kept as written)."""
    return text[:1].upper() + text[1:]


def template_filters() -> dict[str, Any]:
    return {
        "credits": format_millicredits,
        "cents": format_cents,
        "when": time_text,
        "short": short_id,
        "capitalize_first": sentence_start,
    }
