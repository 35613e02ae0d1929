"""Demo scenario: access credentials for a hosted model, sold as a digital good.

A provider sells ``demo-model-access`` (credentials for a model it hosts
elsewhere), encrypted on its side: the exchange stores only ciphertext and
a key sealed to itself. A buyer pays, receives the credentials sealed to
its own key and an exchange-signed licence, and checks the licence offline.
The provider then rotates the credentials (version 2); the buyer's licence
covers it, so a notice reaches the buyer, who downloads the new ones. True
only if both versions decrypt to what was published, the licence verifies,
the buyer paid the price once and the provider got it less the goods fee.
"""

from __future__ import annotations

from agent_client import Agent, AgentClientError, AgentKeys, AgentOptions, OperatorClient
from agent_client.goods import verify_licence
from exchange.entrypoints.demo_lifecycle import Say, credits_text

__all__ = ["goods_scenario"]

PRICE_MILLICREDITS = 3_000
GRANT_MILLICREDITS = 10_000
NOTICE_TIMEOUT_S = 10.0
FIRST_CREDENTIALS = b"api_key=demo-0001; endpoint=https://models.example/v1"
ROTATED_CREDENTIALS = b"api_key=demo-0002; endpoint=https://models.example/v1"


async def goods_scenario(stack_url: str, operator: OperatorClient, say: Say) -> bool:
    tag = "goods scenario:"
    options = AgentOptions(close_grace_s=0.1)
    provider = await Agent.connect(stack_url, AgentKeys.generate(), options=options)
    buyer = await Agent.connect(stack_url, AgentKeys.generate(), options=options)
    try:
        await operator.mint(buyer.agent_id, GRANT_MILLICREDITS, reason="demo grant")
        view = await provider.publish_goods(
            "demo-model-access",
            FIRST_CREDENTIALS,
            title="Access to a hosted demo model",
            capability="demo.model_access",
            price_millicredits=PRICE_MILLICREDITS,
            artifact_kind="credentials",
            terms="one agent, no resale; key rotations included",
        )
        say(f"{tag} credentials published encrypted ({view.size_bytes} B of ciphertext)")
        purchase = await buyer.buy_goods(view.item_id, price_millicredits=PRICE_MILLICREDITS)
        licence = verify_licence(purchase.licence_envelope, buyer.exchange_id)
        say(f"{tag} licence {licence.licence_id} verified offline, versions {licence.min_version}+")
        await provider.publish_goods(
            "demo-model-access",
            ROTATED_CREDENTIALS,
            title="Access to a hosted demo model",
            capability="demo.model_access",
            price_millicredits=PRICE_MILLICREDITS,
            artifact_kind="credentials",
            terms="one agent, no resale; key rotations included",
        )
        notice = await buyer.next_goods_notice(timeout_s=NOTICE_TIMEOUT_S)
        rotated = await buyer.download_goods(view.item_id, notice.version)
        say(f"{tag} version {notice.version} announced to the holder and downloaded")
        return await _report(buyer, provider, purchase.artifact, rotated.artifact, tag, say)
    except AgentClientError as exc:
        say(f"{tag} FAILED: {exc}")
        return False
    finally:
        await provider.close()
        await buyer.close()


async def _report(
    buyer: Agent, provider: Agent, first: bytes, rotated: bytes, tag: str, say: Say
) -> bool:
    spent = GRANT_MILLICREDITS - (await buyer.balance()).available_millicredits
    earned = (await provider.balance()).available_millicredits
    # The demo's capability has no category commission: the goods rate applies.
    fee = PRICE_MILLICREDITS * (await buyer.fees()).rates["goods"] // 10_000
    say(
        f"{tag} buyer paid {credits_text(spent)} once; provider earned {credits_text(earned)} "
        f"(fee {credits_text(fee)})"
    )
    return (
        first == FIRST_CREDENTIALS
        and rotated == ROTATED_CREDENTIALS
        and spent == PRICE_MILLICREDITS
        and earned == PRICE_MILLICREDITS - fee
    )
