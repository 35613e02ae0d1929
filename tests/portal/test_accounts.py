"""Accounts: sign up, sign in, sessions, password change and the sign-in rate limit.

Proves, at the service layer on SQLite and PostgreSQL, that passwords are
stored only as argon2id hashes, that bad input is refused with typed errors
and writes nothing, that a session opens and ends, that changing the
password ends the other sessions, and that failed sign-ins are limited per
email (even the right password is refused while the window is full) and
counted before the password is checked, so concurrent guesses count too.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from human_portal import limits
from human_portal.accounts import (
    Role,
    change_password,
    session_for_token,
    sign_in,
    sign_out,
    sign_up,
)
from human_portal.errors import AuthenticationFailed, Conflict, InvalidInput, RateLimited
from human_portal.portal_tables import login_failures, users
from human_portal.security import PasswordHasher, PasswordProfile
from tests.portal.conftest import OPERATOR_EMAIL, PASSWORD

ADDRESS = "192.0.2.1"


async def count_users(context) -> int:
    async def work(connection):
        return (
            await connection.execute(sa.select(sa.func.count()).select_from(users))
        ).scalar_one()

    return await context.read(work)


async def test_sign_up_stores_an_argon2id_hash_and_never_the_password(harness):
    user = await harness.user("Alice@Example.com ")
    assert user.email == "alice@example.com"
    assert user.role is Role.USER

    async def stored(connection):
        return (await connection.execute(sa.select(users.c.password_hash))).scalar_one()

    password_hash = await harness.context.read(stored)
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash


async def test_operator_emails_get_the_operator_role(harness):
    assert (await harness.user(OPERATOR_EMAIL)).role is Role.OPERATOR


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("not-an-email", PASSWORD, "email"),
        ("a@b", PASSWORD, "email"),
        ("x" * 250 + "@example.com", PASSWORD, "email"),
        ("short@example.com", "tooshort", "password"),
        ("long@example.com", "p" * (limits.PASSWORD_LENGTH_MAX + 1), "password"),
    ],
)
async def test_bad_sign_up_input_is_refused_and_creates_nobody(harness, email, password, field):
    with pytest.raises(InvalidInput) as refused:
        await sign_up(harness.context, email, password)
    assert refused.value.field == field
    assert await count_users(harness.context) == 0


async def test_an_email_signs_up_once(harness):
    await harness.user("twice@example.com")
    with pytest.raises(Conflict):
        await sign_up(harness.context, "TWICE@example.com", PASSWORD)
    assert await count_users(harness.context) == 1


async def test_sign_in_opens_a_session_and_sign_out_ends_it(harness):
    user = await harness.user()
    opened = await sign_in(harness.context, user.email, PASSWORD, client_address=ADDRESS)
    session = await session_for_token(harness.context, opened.token)
    assert session is not None and session.user.user_id == user.user_id
    assert len(session.csrf_token) >= 32
    await sign_out(harness.context, opened.token)
    assert await session_for_token(harness.context, opened.token) is None


async def test_a_wrong_password_or_unknown_email_fails_the_same_way(harness):
    user = await harness.user()
    with pytest.raises(AuthenticationFailed) as wrong_password:
        await sign_in(harness.context, user.email, "wrong password!", client_address=ADDRESS)
    with pytest.raises(AuthenticationFailed) as unknown:
        await sign_in(harness.context, "nobody@example.com", PASSWORD, client_address=ADDRESS)
    assert wrong_password.value.message == unknown.value.message


async def test_a_forged_or_expired_session_token_opens_nothing(harness):
    user = await harness.user()
    assert await session_for_token(harness.context, "forged-token") is None
    assert await session_for_token(harness.context, "") is None
    opened = await sign_in(harness.context, user.email, PASSWORD, client_address=ADDRESS)
    clock = harness.context.clock
    real_now_ms = clock.now_ms
    clock.now_ms = lambda: real_now_ms() + limits.SESSION_LIFETIME_S * 1000 + 1
    try:
        assert await session_for_token(harness.context, opened.token) is None
    finally:
        del clock.now_ms


async def test_failed_sign_ins_are_limited_even_for_the_right_password(harness):
    user = await harness.user()
    for _ in range(limits.LOGIN_FAILURES_MAX):
        with pytest.raises(AuthenticationFailed):
            await sign_in(harness.context, user.email, "wrong password!", client_address=ADDRESS)
    with pytest.raises(RateLimited) as limited:
        await sign_in(harness.context, user.email, PASSWORD, client_address=ADDRESS)
    assert 0 < limited.value.retry_after_s <= limits.LOGIN_FAILURE_WINDOW_S


async def test_concurrent_guesses_are_all_counted(harness):
    user = await harness.user()
    attempts = 3 * limits.LOGIN_FAILURES_MAX
    outcomes = await asyncio.gather(
        *(
            sign_in(harness.context, user.email, f"guess number {i}", client_address=ADDRESS)
            for i in range(attempts)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(o, AuthenticationFailed | RateLimited) for o in outcomes)
    # At most the limit's worth of passwords were ever checked.
    checked = sum(isinstance(outcome, AuthenticationFailed) for outcome in outcomes)
    assert checked <= limits.LOGIN_FAILURES_MAX

    async def failures(connection):
        query = sa.select(sa.func.count()).where(login_failures.c.email == user.email)
        return (await connection.execute(query)).scalar_one()

    assert await harness.context.read(failures) == checked


async def test_a_success_clears_the_failures_of_that_email(harness):
    user = await harness.user()
    for _ in range(limits.LOGIN_FAILURES_MAX - 1):
        with pytest.raises(AuthenticationFailed):
            await sign_in(harness.context, user.email, "wrong password!", client_address=ADDRESS)
    await sign_in(harness.context, user.email, PASSWORD, client_address=ADDRESS)
    for _ in range(limits.LOGIN_FAILURES_MAX):
        with pytest.raises(AuthenticationFailed):
            await sign_in(harness.context, user.email, "wrong password!", client_address=ADDRESS)


async def test_changing_the_password_ends_the_other_sessions(harness):
    user = await harness.user()
    kept = await sign_in(harness.context, user.email, PASSWORD, client_address=ADDRESS)
    other = await sign_in(harness.context, user.email, PASSWORD, client_address="192.0.2.2")
    new_password = "a brand new passphrase"
    with pytest.raises(AuthenticationFailed):
        await change_password(
            harness.context, user, "not the password", new_password, keep_session_token=kept.token
        )
    await change_password(
        harness.context, user, PASSWORD, new_password, keep_session_token=kept.token
    )
    assert await session_for_token(harness.context, kept.token) is not None
    assert await session_for_token(harness.context, other.token) is None
    with pytest.raises(AuthenticationFailed):
        await sign_in(harness.context, user.email, PASSWORD, client_address=ADDRESS)
    await sign_in(harness.context, user.email, new_password, client_address=ADDRESS)


def test_the_default_password_profile_is_rfc_9106s_second_recommendation():
    password_hash = PasswordHasher(PasswordProfile()).hash("a long enough password")
    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PasswordHasher(PasswordProfile()).verify(password_hash, "a long enough password")
    assert not PasswordHasher(PasswordProfile()).verify(password_hash, "another password!")
