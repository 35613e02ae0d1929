"""``create_app``: the portal's FastAPI application, wired from a ``PortalContext``.

Every response carries a strict Content-Security-Policy: scripts and styles
come from the portal itself and from Stripe.js (Stripe, or localstripe when
offline), nothing from a CDN. Typed errors become an error page (or JSON
under ``/api/``) with their HTTP status; a page that needs a session
redirects to the sign-in page.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from human_portal.errors import PortalError, RateLimited
from human_portal.exchange_relay import ExchangeRelay
from human_portal.portal_context import PortalContext
from human_portal.web.api import api_router
from human_portal.web.common import SignInRequired, Web, template_filters
from human_portal.web.pages_account import account_router
from human_portal.web.pages_agents import agent_router
from human_portal.web.pages_analytics import analytics_router
from human_portal.web.pages_money import money_router
from human_portal.web.pages_notices import notices_router
from human_portal.web.pages_operator import DisputeResolver, operator_router
from human_portal.web.pages_subscriptions import subscriptions_router
from human_portal.web.portal_metrics import add_portal_metrics

__all__ = ["create_app"]

log = logging.getLogger(__name__)

WEB_PATH = Path(__file__).resolve().parent
TEMPLATES_PATH = WEB_PATH / "templates"
STATIC_PATH = WEB_PATH / "static"


def create_app(
    context: PortalContext,
    /,
    *,
    relay: ExchangeRelay | None = None,
    resolver: DisputeResolver | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Agent Exchange portal API",
        version="1.0.0",
        description=(
            "Fund and watch your agents. Authenticate with a personal API token "
            "(account page): `Authorization: Bearer agx_...`. Amounts are integers: "
            "millicredits (1 credit = 1,000) and US cents."
        ),
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=str(TEMPLATES_PATH))
    templates.env.filters.update(template_filters())
    web = Web(context, templates)
    # The routers are module-level; their handlers reach these through
    # dependencies that read the app's state.
    app.state.portal_context = context
    app.state.portal_web = web
    app.state.dispute_resolver = resolver
    app.state.exchange_relay = relay
    app.add_middleware(_SecurityHeaders, policy=_content_security_policy(context))
    app.mount("/static", StaticFiles(directory=str(STATIC_PATH)), name="static")
    app.include_router(account_router)
    app.include_router(agent_router)
    app.include_router(analytics_router)
    app.include_router(money_router)
    app.include_router(notices_router)
    app.include_router(operator_router)
    app.include_router(subscriptions_router)
    app.include_router(api_router)
    _add_error_handlers(app, web)
    # Its own registry; /metrics answers local scrapers only (portal_metrics.py).
    add_portal_metrics(app)

    @app.get("/api/v1/docs", include_in_schema=False)
    async def api_docs(request: Request) -> Response:
        return await web.render(request, "api_docs.html", schema=app.openapi())

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"ok": True})

    return app


def _add_error_handlers(app: FastAPI, web: Web) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, error: SignInRequired) -> Response:
        if request.url.path.startswith("/api/"):
            return _json_error("authentication_failed", "sign in first", 401)
        return RedirectResponse(f"/sign-in?next={quote(error.next_path)}", status_code=303)

    @app.exception_handler(PortalError)
    async def portal_error(request: Request, error: PortalError) -> Response:
        headers = (
            {"Retry-After": str(error.retry_after_s)} if isinstance(error, RateLimited) else {}
        )
        if _wants_json(request):
            response: Response = _json_error(
                error.code, error.message, error.http_status, _fields(error)
            )
        else:
            response = await web.render(
                request, "error.html", status_code=error.http_status, error=error
            )
        response.headers.update(headers)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        # Browsers get the portal's page (a 404 included); API clients keep
        # FastAPI's JSON answer.
        if _wants_json(request):
            return await http_exception_handler(request, error)
        page_error = {
            "code": _HTTP_ERROR_CODES.get(error.status_code, "http_error"),
            "message": _http_error_message(error),
        }
        response = await web.render(
            request, "error.html", status_code=error.status_code, error=page_error
        )
        response.headers.update(error.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        problems = [
            {
                "field": ".".join(str(part) for part in problem.get("loc", ())),
                "message": problem.get("msg", ""),
            }
            for problem in error.errors()[:20]
        ]
        return _json_error("invalid_input", "the request is not valid", 422, {"problems": problems})


_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}
_HTTP_ERROR_MESSAGES = {
    404: "There is no page at this address.",
    405: "This page does not answer that kind of request.",
}


def _http_error_message(error: HTTPException) -> str:
    if error.status_code in _HTTP_ERROR_MESSAGES:
        return _HTTP_ERROR_MESSAGES[error.status_code]
    return f"The portal could not answer this request ({error.status_code})."


def _wants_json(request: Request) -> bool:
    path = request.url.path
    accepts = request.headers.get("accept", "")
    return (
        path.startswith("/api/")
        or path == "/stripe/webhook"
        or accepts.startswith("application/json")
    )


def _fields(error: PortalError) -> dict[str, Any]:
    names = (
        "field",
        "reason",
        "limit",
        "requested",
        "retry_after_s",
        "what",
        "retryable",
        "available_millicredits",
        "requested_millicredits",
    )
    return {name: getattr(error, name) for name in names if hasattr(error, name)}


def _json_error(
    code: str, message: str, status_code: int, fields: dict[str, Any] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **(fields or {})}}, status_code=status_code
    )


def _content_security_policy(context: PortalContext) -> str:
    stripe_js = urlsplit(context.config.stripe.js_url)
    stripe_origin = f"{stripe_js.scheme}://{stripe_js.netloc}"
    api_origin = stripe_origin if context.config.stripe.offline else "https://api.stripe.com"
    # Connect onboarding is a redirect after a form post, which form-action governs.
    onboarding_origin = "https://connect.stripe.com"
    if context.config.stripe.connect_api_base is not None:
        connect = urlsplit(context.config.stripe.connect_api_base)
        onboarding_origin = f"{connect.scheme}://{connect.netloc}"
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {stripe_origin}",
            f"connect-src 'self' {api_origin} {stripe_origin}",
            f"frame-src {stripe_origin} https://hooks.stripe.com",
            "img-src 'self' data:",
            "style-src 'self'",
            f"form-action 'self' {onboarding_origin}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


class _SecurityHeaders(BaseHTTPMiddleware):
    def __init__(self, app: Any, *, policy: str) -> None:
        super().__init__(app)
        self._policy = policy

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", self._policy)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if isinstance(response, HTMLResponse) or request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
