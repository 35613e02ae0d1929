"""Demo scenario: a plan with a short free trial, charged by the exchange's timers.

A provider lists ``demo.news`` and publishes a plan with a two-second trial;
a buyer subscribes (nothing is charged yet), shows the provider a token the
provider checks offline, and waits for the exchange's timer to charge the
first period when the trial ends. Then the buyer cancels: the period stays
paid, and nothing more is charged. True only if the buyer paid one period,
the provider got it less the subscription fee, and the states say so.
"""

from __future__ import annotations

from agent_client import Agent, AgentClientError, AgentKeys, AgentOptions, OperatorClient
from agent_client.protocol import SubscriptionState
from exchange.entrypoints.demo_lifecycle import Say, credits_text

__all__ = ["subscription_scenario"]

PLAN_PRICE_MILLICREDITS = 3_000
GRANT_MILLICREDITS = 10_000
TRIAL_S = 2
# The trial ends after TRIAL_S; the timers run every second or so.
RENEWAL_WAIT_S = TRIAL_S + 10.0


async def subscription_scenario(stack_url: str, operator: OperatorClient, say: Say) -> bool:
    tag = "subscription scenario:"
    options = AgentOptions(close_grace_s=0.1)
    provider = await Agent.connect(stack_url, AgentKeys.generate(), options=options)
    buyer = await Agent.connect(stack_url, AgentKeys.generate(), options=options)
    try:
        await provider.advertise("demo.news", description="a daily digest", price_millicredits=500)
        plan = await provider.publish_plan(
            "demo.news",
            "daily",
            price_millicredits=PLAN_PRICE_MILLICREDITS,
            period_s=24 * 3600,
            trial_s=TRIAL_S,
            description="the digest, every day",
        )
        await operator.mint(buyer.agent_id, GRANT_MILLICREDITS, reason="demo grant")
        subscription = await buyer.subscribe(plan)
        say(f"{tag} subscribed to {plan.plan!r}: {subscription.state.value}, nothing charged")
        token = provider.check_subscription_token(
            await buyer.subscription_token(subscription.subscription_id), capability="demo.news"
        )
        say(f"{tag} the provider checked the buyer's token offline ({token.state.value})")
        paid = await buyer.wait_subscription_event(
            subscription.subscription_id, "renewed", timeout_s=RENEWAL_WAIT_S
        )
        charged = credits_text(paid.charged_millicredits)
        say(f"{tag} trial over: the exchange charged period 1 ({charged})")
        cancelling = await buyer.cancel_subscription(subscription.subscription_id)
        say(f"{tag} cancelled: {cancelling.state.value} until the paid day ends")
        return await _report(buyer, provider, cancelling.state, tag, say)
    except (AgentClientError, TimeoutError) as exc:
        say(f"{tag} FAILED: {exc!r}")
        return False
    finally:
        await provider.close()
        await buyer.close()


async def _report(
    buyer: Agent, provider: Agent, state: SubscriptionState, tag: str, say: Say
) -> bool:
    spent = GRANT_MILLICREDITS - (await buyer.balance()).available_millicredits
    earned = (await provider.balance()).available_millicredits
    fee_bps = (await buyer.fees()).rates["subscription"]
    say(f"{tag} the buyer paid {credits_text(spent)}, the provider earned {credits_text(earned)}")
    return (
        state is SubscriptionState.CANCELLING
        and spent == PLAN_PRICE_MILLICREDITS
        and earned == PLAN_PRICE_MILLICREDITS - PLAN_PRICE_MILLICREDITS * fee_bps // 10_000
    )
