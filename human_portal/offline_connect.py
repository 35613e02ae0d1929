"""An offline stand-in for the Stripe Connect endpoints localstripe lacks.

It speaks Stripe's wire format (form-encoded requests, JSON objects, Stripe's
error shape, ``Idempotency-Key``) for exactly what the portal's payouts use,
so the real ``stripe`` SDK code path runs against it:

* ``POST /v1/accounts``, ``GET /v1/accounts/{id}``: Express accounts;
* ``POST /v1/account_links``: an onboarding link to this server's own
  onboarding page, whose button enables payouts and returns to the portal;
* ``POST /v1/transfers``: transfers to an enabled account; a retry with the
  same idempotency key returns the first transfer, with other parameters it
  is refused, as Stripe does.

``agentx up`` runs it beside localstripe when no Stripe keys are set, and the
tests use it. ``POST /_config/fail_transfers`` (count, status) makes the next
transfers fail, so tests can see payouts voided or left pending. State is
in memory only.
"""

from __future__ import annotations

import html
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

__all__ = ["OfflineConnect", "create_offline_connect_app"]

BODY_BYTES_MAX = 64 * 1024
TRANSFERS_MAX = 100_000


@dataclass
class OfflineConnect:
    """The stand-in's state: accounts, transfers by idempotency key, injected failures."""

    base_url: str = ""
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers_by_key: dict[str, tuple[str, str]] = field(default_factory=dict)
    failures_left: int = 0
    failure_status: int = 500
    _sequence: itertools.count[int] = field(default_factory=itertools.count)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._sequence):06d}{secrets.token_hex(6)}"


def create_offline_connect_app(state: OfflineConnect, /) -> Starlette:
    app = Starlette(
        routes=[
            Route("/v1/accounts", create_account, methods=["POST"]),
            Route("/v1/accounts/{account_id}", retrieve_account, methods=["GET"]),
            Route("/v1/account_links", create_account_link, methods=["POST"]),
            Route("/v1/transfers", create_transfer, methods=["POST"]),
            Route("/onboarding/{account_id}", onboarding_page, methods=["GET"]),
            Route("/onboarding/{account_id}", complete_onboarding, methods=["POST"]),
            Route("/_config/fail_transfers", fail_transfers, methods=["POST"]),
        ]
    )
    app.state.offline_connect = state
    return app


def _state(request: Request) -> OfflineConnect:
    """The stand-in's state, kept in the app's state by ``create_offline_connect_app``."""
    state: OfflineConnect = request.app.state.offline_connect
    return state


async def create_account(request: Request) -> Response:
    state = _state(request)
    form = await _form(request)
    if isinstance(form, Response):
        return form
    account_id = state.new_id("acct")
    state.accounts[account_id] = {
        "id": account_id,
        "object": "account",
        "type": form.get("type", "express"),
        "email": form.get("email"),
        "country": "US",
        "charges_enabled": False,
        "payouts_enabled": False,
        "details_submitted": False,
        "created": int(time.time()),
    }
    return JSONResponse(state.accounts[account_id])


async def retrieve_account(request: Request) -> Response:
    if (refused := _unauthorized(request)) is not None:
        return refused
    account = _state(request).accounts.get(request.path_params["account_id"])
    if account is None:
        return _error(404, "resource_missing", "No such account")
    return JSONResponse(account)


async def create_account_link(request: Request) -> Response:
    state = _state(request)
    form = await _form(request)
    if isinstance(form, Response):
        return form
    account_id = form.get("account", "")
    return_url = form.get("return_url", "")
    if account_id not in state.accounts:
        return _error(400, "resource_missing", "No such account", param="account")
    if not _is_web_address(return_url):
        return _error(400, "url_invalid", "Not a valid URL", param="return_url")
    now = int(time.time())
    return JSONResponse(
        {
            "object": "account_link",
            "created": now,
            "expires_at": now + 300,
            "url": f"{state.base_url}/onboarding/{account_id}?return_url={quote(return_url)}",
        }
    )


async def onboarding_page(request: Request) -> Response:
    account_id = request.path_params["account_id"]
    return_url = request.query_params.get("return_url", "")
    if account_id not in _state(request).accounts or not _is_web_address(return_url):
        return _unknown_onboarding()
    return HTMLResponse(
        "<!doctype html><title>Offline Stripe Connect onboarding</title>"
        "<h1>Offline Stripe Connect onboarding</h1>"
        f"<p>Account {html.escape(account_id)} (a local stand-in; no money moves).</p>"
        f'<form method="post"><input type="hidden" name="return_url" '
        f'value="{html.escape(return_url)}">'
        '<button type="submit">Complete onboarding</button></form>'
    )


async def complete_onboarding(request: Request) -> Response:
    account = _state(request).accounts.get(request.path_params["account_id"])
    form = await _unchecked_form(request)
    return_url = form.get("return_url", "")
    if account is None or not _is_web_address(return_url):
        return _unknown_onboarding()
    account.update(details_submitted=True, payouts_enabled=True, charges_enabled=True)
    return RedirectResponse(return_url, status_code=303)


async def create_transfer(request: Request) -> Response:
    state = _state(request)
    form = await _form(request)
    if isinstance(form, Response):
        return form
    key = request.headers.get("Idempotency-Key", "")
    fingerprint = repr(sorted(form.items()))
    if key and key in state.transfers_by_key:
        transfer_id, first_fingerprint = state.transfers_by_key[key]
        if first_fingerprint != fingerprint:
            return _error(
                400,
                "idempotency_key_in_use",
                "Keys are for one request",
                kind="idempotency_error",
            )
        return JSONResponse(state.transfers[transfer_id])
    if state.failures_left > 0:
        state.failures_left -= 1
        return _error(
            state.failure_status, "injected_failure", "Injected failure", kind="api_error"
        )
    return _new_transfer(state, form, key, fingerprint)


def _new_transfer(
    state: OfflineConnect, form: dict[str, str], key: str, fingerprint: str
) -> Response:
    destination = state.accounts.get(form.get("destination", ""))
    amount = form.get("amount", "")
    if destination is None:
        return _error(400, "resource_missing", "No such destination", param="destination")
    if not destination["payouts_enabled"]:
        return _error(400, "account_invalid", "The destination cannot receive payouts")
    if not amount.isdigit() or int(amount) <= 0 or form.get("currency") != "usd":
        return _error(400, "parameter_invalid", "Invalid amount or currency", param="amount")
    if len(state.transfers) >= TRANSFERS_MAX:
        return _error(429, "rate_limit", "Too many transfers", kind="rate_limit_error")
    transfer_id = state.new_id("tr")
    state.transfers[transfer_id] = {
        "id": transfer_id,
        "object": "transfer",
        "amount": int(amount),
        "currency": "usd",
        "destination": destination["id"],
        "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        "created": int(time.time()),
        "reversed": False,
    }
    if key:
        state.transfers_by_key[key] = (transfer_id, fingerprint)
    return JSONResponse(state.transfers[transfer_id])


async def fail_transfers(request: Request) -> Response:
    state = _state(request)
    form = await _unchecked_form(request)
    state.failures_left = int(form.get("count", "1"))
    state.failure_status = int(form.get("status", "500"))
    return JSONResponse({"failures_left": state.failures_left})


def _unauthorized(request: Request) -> Response | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not key.startswith("sk_"):
        return _error(401, "api_key_invalid", "Invalid API key", kind="authentication_error")
    return None


async def _form(request: Request) -> dict[str, str] | Response:
    if (refused := _unauthorized(request)) is not None:
        return refused
    body = await request.body()
    if len(body) > BODY_BYTES_MAX:
        return _error(400, "body_too_large", "Request body too large")
    return dict(parse_qsl(body.decode()))


async def _unchecked_form(request: Request) -> dict[str, str]:
    """The form of a request that needs no API key, cut at ``BODY_BYTES_MAX`` bytes."""
    return dict(parse_qsl((await request.body())[:BODY_BYTES_MAX].decode()))


def _is_web_address(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def _unknown_onboarding() -> Response:
    return HTMLResponse("<p>Unknown account or return address.</p>", status_code=404)


def _error(
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    kind: str = "invalid_request_error",
) -> JSONResponse:
    error: dict[str, Any] = {"type": kind, "code": code, "message": message}
    if param is not None:
        error["param"] = param
    return JSONResponse({"error": error}, status_code=status)
