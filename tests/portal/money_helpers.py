"""Helpers for the portal's money tests: balances, and webhooks signed like Stripe's."""

from __future__ import annotations

import json
import time
import uuid

import stripe

from human_portal.ledger_accounts import agent_account_id
from human_portal.money_rules import top_up_quote
from human_portal.topups import StartedTopUp, start_top_up


async def available(harness, agent_id: str) -> int:
    account_id = agent_account_id(agent_id)
    balances = await harness.context.ledger.lookup_accounts([account_id])
    return balances[account_id].available if account_id in balances else 0


async def account_net_debit(harness, account_id: str) -> int:
    balances = await harness.context.ledger.lookup_accounts([account_id])
    account = balances.get(account_id)
    return account.debits_posted - account.credits_posted if account is not None else 0


async def unpaid_top_up(harness, user, agent_id: str, package: str = "starter") -> StartedTopUp:
    quote = top_up_quote(package, custom_cents=None, fees=harness.context.config.fees)
    return await start_top_up(harness.context, user, agent_id, quote)


def event(event_type: str, stripe_object: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": stripe_object},
    }


def payment_succeeded(payment_intent_id: str, amount_cents: int, **changes) -> dict:
    intent = {
        "id": payment_intent_id,
        "object": "payment_intent",
        "amount": amount_cents,
        "amount_received": amount_cents,
        "currency": "usd",
        "status": "succeeded",
    }
    return event("payment_intent.succeeded", {**intent, **changes})


def charge_refunded(payment_intent_id: str, amount_cents: int, refunded_cents: int) -> dict:
    charge = {
        "id": f"ch_{uuid.uuid4().hex[:20]}",
        "object": "charge",
        "amount": amount_cents,
        "amount_refunded": refunded_cents,
        "payment_intent": payment_intent_id,
        "refunded": refunded_cents >= amount_cents,
    }
    return event("charge.refunded", charge)


def dispute_created(payment_intent_id: str, amount_cents: int) -> dict:
    dispute = {
        "id": f"dp_{uuid.uuid4().hex[:20]}",
        "object": "dispute",
        "amount": amount_cents,
        "charge": f"ch_{uuid.uuid4().hex[:20]}",
        "payment_intent": payment_intent_id,
        "status": "needs_response",
    }
    return event("charge.dispute.created", dispute)


def signed(payload: dict, secret: str, *, timestamp: int | None = None) -> tuple[bytes, str]:
    """The body and Stripe-Signature header Stripe would send for ``payload``."""
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body.encode(), header
