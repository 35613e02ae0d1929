"""Linking agents to humans with a one-time code the agent signs, over real NATS.

Proves that ``Agent.link_human`` and ``agentx link`` link an agent to the
account that showed the code; that a code works once, expires, and that a
malformed one is refused; that nobody can link an agent whose key they do
not hold (a document forged for another agent's id, or sent on another
agent's subject, is refused and links nothing); that an agent belongs to
one human at a time until it is unlinked; and that the web page shows the
code and the linked agent.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from agent_client import AgentKeys, ExchangeError
from agent_client.protocol import Envelope, LinkHuman, json_encoder
from agent_client.replies import open_reply
from agent_client.signing import SystemClock, b64encode, make_header
from agent_client.subjects import PORTAL_LINK_SUBJECT_FORMAT
from exchange.entrypoints.cli import main as agentx
from human_portal.linking import issue_link_code, linked_agents, unlink_agent
from human_portal.portal_tables import agent_links, link_codes
from tests.portal.conftest import PASSWORD


async def links_of(harness, user):
    return await harness.context.read(lambda connection: linked_agents(connection, user.user_id))


async def test_an_agent_links_by_signing_the_code_the_portal_shows(harness):
    user = await harness.user()
    agent = await harness.agent()
    issued = await issue_link_code(harness.context, user, label="research bot")
    linked = await agent.link_human(issued.code)
    assert (linked.agent_id, linked.label) == (agent.agent_id, "research bot")
    assert [link.agent_id for link in await links_of(harness, user)] == [agent.agent_id]


async def test_a_human_links_several_agents_and_unlinks_one(harness):
    user = await harness.user()
    first = await harness.linked_agent(user, label="one")
    second = await harness.linked_agent(user, label="two")
    assert {link.agent_id for link in await links_of(harness, user)} == {
        first.agent_id,
        second.agent_id,
    }
    await unlink_agent(harness.context, user, first.agent_id)
    assert [link.agent_id for link in await links_of(harness, user)] == [second.agent_id]


async def test_a_code_links_once(harness):
    user = await harness.user()
    issued = await issue_link_code(harness.context, user, label="")
    await (await harness.agent()).link_human(issued.code)
    with pytest.raises(ExchangeError) as refused:
        await (await harness.agent()).link_human(issued.code)
    assert refused.value.code == "link_code_invalid"
    assert len(await links_of(harness, user)) == 1


async def test_an_expired_or_unknown_or_malformed_code_links_nothing(harness):
    user = await harness.user()
    issued = await issue_link_code(harness.context, user, label="")

    async def expire(connection):
        await connection.execute(link_codes.update().values(expires_at_ms=1))

    await harness.context.write(expire)
    agent = await harness.agent()
    for code in (issued.code, "AAAAA-BBBBB-CCCCC", "not a code"):
        with pytest.raises(ExchangeError) as refused:
            await agent.link_human(code)
        assert refused.value.code in ("link_code_invalid", "malformed")
    assert await links_of(harness, user) == []


async def send_link(harness, *, issuer_keys, signing_keys, subject_agent_id, connection_keys, code):
    """A hand-made link request: ``signing_keys`` sign a document naming ``issuer_keys``,
    sent from ``connection_keys``' connection (only an agent may publish on its subjects;
    that refusal is tested in tests/threats)."""
    subject = PORTAL_LINK_SUBJECT_FORMAT.format(agent_id=subject_agent_id)
    header = make_header(
        issuer_keys, audience="portal", subject=subject, lifetime_s=30, clock=SystemClock()
    )
    document_bytes = json_encoder.encode(LinkHuman(header=header, code=code))
    # The document names ``issuer_keys``; ``signing_keys`` sign its exact bytes.
    envelope = Envelope(
        doc=b64encode(document_bytes), sig=b64encode(signing_keys.sign(document_bytes))
    )
    agent = await harness.agent(connection_keys)
    payload = json_encoder.encode(envelope)
    reply = await agent._connection.request(subject, payload, timeout_s=5)
    assert agent.portal_id is not None
    _, answer = open_reply(
        reply,
        signer_id=agent.portal_id,
        audience=subject_agent_id,
        request_subject=subject,
        request_payload=payload,
        clock=SystemClock(),
    )
    return answer


async def test_nobody_links_an_agent_whose_key_they_do_not_hold(harness):
    user = await harness.user()
    victim, attacker = AgentKeys.generate(), AgentKeys.generate()
    issued = await issue_link_code(harness.context, user, label="")
    # The victim's id, the attacker's signature.
    forged = await send_link(
        harness,
        issuer_keys=victim,
        signing_keys=attacker,
        subject_agent_id=victim.agent_id,
        connection_keys=victim,
        code=issued.code,
    )
    assert forged.code == "bad_signature"
    # The attacker's own valid signature, sent on the victim's subject.
    hijack = await send_link(
        harness,
        issuer_keys=attacker,
        signing_keys=attacker,
        subject_agent_id=victim.agent_id,
        connection_keys=victim,
        code=issued.code,
    )
    assert hijack.code == "signer_mismatch"
    assert await links_of(harness, user) == []

    async def code_unused(connection):
        return (await connection.execute(sa.select(link_codes.c.used_at_ms))).scalar_one() is None

    assert await harness.context.read(code_unused)


async def test_an_agent_belongs_to_one_human_until_unlinked(harness):
    alice, bob = await harness.user("alice@example.com"), await harness.user("bob@example.com")
    agent = await harness.linked_agent(alice)
    issued = await issue_link_code(harness.context, bob, label="")
    with pytest.raises(ExchangeError) as refused:
        await agent.link_human(issued.code)
    assert refused.value.code == "forbidden"
    await unlink_agent(harness.context, alice, agent.agent_id)
    await agent.link_human(issued.code)

    async def owner(connection):
        query = sa.select(agent_links.c.user_id).where(agent_links.c.agent_id == agent.agent_id)
        return (await connection.execute(query)).scalar_one()

    assert await harness.context.read(owner) == bob.user_id


async def test_agentx_link_signs_the_code_with_the_seed_file(harness, tmp_path, capsys):
    user = await harness.user()
    keys = AgentKeys.generate()
    keys.save(tmp_path / "agent.seed")
    issued = await issue_link_code(harness.context, user, label="cli bot")
    exit_code = await _run_cli(
        ["link", issued.code, "--key", str(tmp_path / "agent.seed"), "--url", harness.nats_url]
    )
    assert exit_code == 0, capsys.readouterr().err
    assert keys.agent_id in capsys.readouterr().out
    assert [link.agent_id for link in await links_of(harness, user)] == [keys.agent_id]


async def _run_cli(arguments):
    # The CLI runs its own event loop; a worker thread gives it one.
    return await asyncio.to_thread(agentx, arguments)


async def test_the_agents_page_shows_a_code_and_the_linked_agent(harness, browser):
    await browser.sign_up("pages@example.com", PASSWORD)
    await browser.get("/agents")
    page = await browser.post("/agents/link-code", label="page bot")
    assert page.status_code == 201
    code = page.text.split('id="link-code">')[1].split("<")[0]
    agent = await harness.agent()
    await agent.link_human(code)
    listed = await browser.get("/agents")
    assert "page bot" in listed.text and agent.agent_id in listed.text
