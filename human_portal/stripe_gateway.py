"""The portal's only way to Stripe: two small ports and their ``stripe`` SDK adapter.

``PaymentGateway`` covers PaymentIntents and refunds; ``ConnectGateway``
covers Connect accounts, onboarding links and transfers. ``StripeSdkGateway``
implements both with the official SDK (async, through httpx, with an
explicit timeout). Pointed at Stripe it is production; pointed at
``localstripe`` and the offline Connect stand-in it runs the very same code.

Stripe's exceptions are translated here into ``PaymentProviderFailed`` with
``retryable``: True when the outcome is unknown (network, timeout, Stripe's
own error), so a caller retries with the same idempotency key; False when
Stripe decided (a declined card, a bad request), so a caller gives up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import stripe

from human_portal import limits
from human_portal.config import StripeSettings
from human_portal.errors import PaymentProviderFailed

__all__ = [
    "ConnectGateway",
    "PaymentGateway",
    "PaymentIntentView",
    "StripeSdkGateway",
]


@dataclass(frozen=True, slots=True)
class PaymentIntentView:
    payment_intent_id: str
    status: str
    amount_cents: int
    currency: str
    client_secret: str


class PaymentGateway(Protocol):
    async def create_payment_intent(
        self, *, amount_cents: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> PaymentIntentView: ...

    async def confirm_with_card(
        self, payment_intent_id: str, card_id: str, /
    ) -> PaymentIntentView: ...

    async def client_secret(self, payment_intent_id: str, /) -> str:
        """The secret Stripe.js needs to confirm this payment in the browser."""
        ...

    async def refund(self, payment_intent_id: str, /, *, amount_cents: int) -> int:
        """Refund part of a payment; returns the payment's total refunded cents."""
        ...


class ConnectGateway(Protocol):
    async def create_account(self, *, email: str, idempotency_key: str) -> str: ...

    async def onboarding_link(
        self, account_id: str, /, *, refresh_url: str, return_url: str
    ) -> str: ...

    async def payouts_enabled(self, account_id: str, /) -> bool: ...

    async def create_transfer(
        self,
        *,
        amount_cents: int,
        destination_account_id: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> str: ...


class StripeSdkGateway:
    """Both ports over ``stripe.StripeClient``; the caller closes it with ``close``."""

    def __init__(self, settings: StripeSettings, /) -> None:
        self._http_clients = [
            stripe.HTTPXClient(timeout=limits.STRIPE_REQUEST_TIMEOUT_S) for _ in range(2)
        ]
        self._payments = _client(settings, settings.api_base, self._http_clients[0])
        self._connect = _client(
            settings, settings.connect_api_base or settings.api_base, self._http_clients[1]
        )

    async def close(self) -> None:
        for http_client in self._http_clients:
            await http_client.close_async()  # type: ignore[no-untyped-call]

    # --- payments -------------------------------------------------------------------

    async def create_payment_intent(
        self, *, amount_cents: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> PaymentIntentView:
        assert type(amount_cents) is int and amount_cents > 0
        with _translated("creating the payment"):
            intent = await self._payments.v1.payment_intents.create_async(
                params={
                    "amount": amount_cents,
                    "currency": limits.CURRENCY,
                    "metadata": dict(metadata),
                },
                options={"idempotency_key": idempotency_key},
            )
        return _intent_view(intent)

    async def confirm_with_card(self, payment_intent_id: str, card_id: str, /) -> PaymentIntentView:
        """Attach a tokenized card and confirm (the offline Stripe.js flow)."""
        with _translated("confirming the payment"):
            await self._payments.v1.payment_intents.update_async(
                payment_intent_id, params={"payment_method": card_id}
            )
            intent = await self._payments.v1.payment_intents.confirm_async(payment_intent_id)
        return _intent_view(intent)

    async def client_secret(self, payment_intent_id: str, /) -> str:
        with _translated("reading the payment"):
            intent = await self._payments.v1.payment_intents.retrieve_async(payment_intent_id)
        return str(intent.client_secret or "")

    async def refund(self, payment_intent_id: str, /, *, amount_cents: int) -> int:
        assert type(amount_cents) is int and amount_cents > 0
        with _translated("refunding the payment"):
            await self._payments.v1.refunds.create_async(
                params={"payment_intent": payment_intent_id, "amount": amount_cents}
            )
            intent = await self._payments.v1.payment_intents.retrieve_async(payment_intent_id)
            charge = intent.latest_charge
            # Stripe names the charge by id; localstripe inlines the object.
            charge_id = charge if isinstance(charge, str) else getattr(charge, "id", None)
            if not isinstance(charge_id, str):
                raise PaymentProviderFailed("the payment has no charge", retryable=False)
            refreshed = await self._payments.v1.charges.retrieve_async(charge_id)
        return int(refreshed.amount_refunded)

    # --- Connect ----------------------------------------------------------------------

    async def create_account(self, *, email: str, idempotency_key: str) -> str:
        with _translated("creating the Connect account"):
            account = await self._connect.v1.accounts.create_async(
                params={"type": "express", "email": email},
                options={"idempotency_key": idempotency_key},
            )
        return str(account.id)

    async def onboarding_link(
        self, account_id: str, /, *, refresh_url: str, return_url: str
    ) -> str:
        with _translated("creating the onboarding link"):
            link = await self._connect.v1.account_links.create_async(
                params={
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            )
        return str(link.url)

    async def payouts_enabled(self, account_id: str, /) -> bool:
        with _translated("reading the Connect account"):
            account = await self._connect.v1.accounts.retrieve_async(account_id)
        return bool(account.payouts_enabled)

    async def create_transfer(
        self,
        *,
        amount_cents: int,
        destination_account_id: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> str:
        assert type(amount_cents) is int and amount_cents > 0
        with _translated("transferring the payout"):
            transfer = await self._connect.v1.transfers.create_async(
                params={
                    "amount": amount_cents,
                    "currency": limits.CURRENCY,
                    "destination": destination_account_id,
                    "metadata": dict(metadata),
                },
                options={"idempotency_key": idempotency_key},
            )
        return str(transfer.id)


def _client(
    settings: StripeSettings, api_base: str | None, http_client: stripe.HTTPXClient
) -> stripe.StripeClient:
    base_addresses: Any = {"api": api_base} if api_base is not None else {}
    return stripe.StripeClient(
        settings.secret_key,
        base_addresses=base_addresses,
        http_client=http_client,
        max_network_retries=limits.STRIPE_NETWORK_RETRIES_MAX,
    )


def _intent_view(intent: stripe.PaymentIntent) -> PaymentIntentView:
    return PaymentIntentView(
        payment_intent_id=str(intent.id),
        status=str(intent.status),
        amount_cents=int(intent.amount),
        currency=str(intent.currency),
        client_secret=str(intent.client_secret or ""),
    )


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        raise PaymentProviderFailed(
            f"Stripe: {action} failed: {_message(exc)}", retryable=True
        ) from exc
    except stripe.StripeError as exc:
        status = exc.http_status or 0
        raise PaymentProviderFailed(
            f"Stripe: {action} was refused: {_message(exc)}", retryable=status >= 500
        ) from exc


def _message(exc: stripe.StripeError) -> str:
    lines = str(exc.user_message or exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
