"""Accounts: sign up, sign in (rate limited), sessions, sign out, password change.

Passwords are hashed with argon2id in a worker thread, so hashing never stalls
the event loop. A session is a random token in a cookie; the database keeps
only its digest, with the session's CSRF token. Failed sign-ins are counted
per email and per client address in a sliding window: each attempt is
recorded *before* its password is checked, so concurrent guesses count too.
"""

from __future__ import annotations

import asyncio
import enum
import re
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from human_portal import limits
from human_portal.errors import AuthenticationFailed, Conflict, InvalidInput, RateLimited
from human_portal.portal_context import PortalContext
from human_portal.portal_tables import login_failures, sessions, users
from human_portal.security import new_token, token_digest

__all__ = [
    "NewSession",
    "Role",
    "Session",
    "User",
    "change_password",
    "checked_email",
    "checked_password",
    "session_for_token",
    "sign_in",
    "sign_out",
    "sign_up",
    "user_by_id",
]

_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_SESSION_PURPOSE = "session"


class Role(enum.StrEnum):
    USER = "user"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    email: str
    role: Role
    stripe_account_id: str | None
    stripe_payouts_enabled: bool
    agent_cash_out_allowed: bool

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just opened; ``token`` goes into the cookie and is never stored."""

    token: str
    session: Session


def checked_email(email: str, /) -> str:
    normalized = email.strip().lower()
    if not normalized or len(normalized) > limits.EMAIL_LENGTH_MAX:
        raise InvalidInput(
            "email", f"enter an email address of at most {limits.EMAIL_LENGTH_MAX} characters"
        )
    if not _EMAIL_PATTERN.match(normalized):
        raise InvalidInput("email", "enter an email address like name@example.com")
    return normalized


def checked_password(password: str, /, *, field: str = "password") -> str:
    if not limits.PASSWORD_LENGTH_MIN <= len(password) <= limits.PASSWORD_LENGTH_MAX:
        raise InvalidInput(
            field,
            f"choose a password of {limits.PASSWORD_LENGTH_MIN} to "
            f"{limits.PASSWORD_LENGTH_MAX} characters",
        )
    return password


async def sign_up(context: PortalContext, email: str, password: str, /) -> User:
    """Create an account; emails listed as operators get the operator role."""
    email = checked_email(email)
    password_hash = await asyncio.to_thread(context.hasher.hash, checked_password(password))
    now_ms = context.now_ms()
    role = Role.OPERATOR if email in context.config.operator_emails else Role.USER
    values = {
        "user_id": "u_" + uuid.uuid4().hex,
        "email": email,
        "password_hash": password_hash,
        "role": role.value,
        "stripe_account_id": None,
        "stripe_payouts_enabled": False,
        "agent_cash_out_allowed": False,
        "created_at_ms": now_ms,
        "password_changed_at_ms": now_ms,
    }

    async def work(connection: AsyncConnection) -> None:
        existing = await connection.execute(
            sa.select(users.c.user_id).where(users.c.email == email)
        )
        if existing.first() is not None:
            raise Conflict("an account with this email already exists")
        try:
            await connection.execute(users.insert().values(**values))
        except IntegrityError as exc:
            raise Conflict("an account with this email already exists") from exc

    await context.write(work)
    return _user_from_row(values)


async def sign_in(
    context: PortalContext, email: str, password: str, /, *, client_address: str
) -> NewSession:
    """Check the password and open a session, unless the window holds too many failures."""
    email = email.strip().lower()[: limits.EMAIL_LENGTH_MAX]
    password = password[: limits.PASSWORD_LENGTH_MAX]
    now_ms = context.now_ms()
    row = await context.write(
        lambda connection: _record_attempt(connection, email, client_address, now_ms)
    )
    stored_hash = str(row["password_hash"]) if row is not None else context.hasher.dummy_hash()
    verified = await asyncio.to_thread(context.hasher.verify, stored_hash, password)
    if row is None or not verified:
        raise AuthenticationFailed("wrong email or password")
    user = _user_from_row(row)
    token = new_token(limits.SESSION_TOKEN_BYTES)
    csrf_token = new_token(limits.CSRF_TOKEN_BYTES)
    expires_at_ms = now_ms + limits.SESSION_LIFETIME_S * 1000
    rehash = context.hasher.needs_rehash(stored_hash)
    new_hash = await asyncio.to_thread(context.hasher.hash, password) if rehash else None

    async def work(connection: AsyncConnection) -> None:
        # A success clears the email's failures (this attempt's included) and
        # the user's expired sessions.
        await connection.execute(login_failures.delete().where(login_failures.c.email == email))
        await connection.execute(
            sessions.delete().where(
                sessions.c.user_id == user.user_id, sessions.c.expires_at_ms <= now_ms
            )
        )
        await connection.execute(
            sessions.insert().values(
                session_hash=token_digest(token, purpose=_SESSION_PURPOSE),
                user_id=user.user_id,
                csrf_token=csrf_token,
                created_at_ms=now_ms,
                expires_at_ms=expires_at_ms,
            )
        )
        if new_hash is not None:
            await connection.execute(
                users.update().where(users.c.user_id == user.user_id).values(password_hash=new_hash)
            )

    await context.write(work)
    return NewSession(token, Session(user, csrf_token, expires_at_ms))


async def _record_attempt(
    connection: AsyncConnection, email: str, client_address: str, now_ms: int
) -> dict[str, Any] | None:
    """Count the window's failures, refuse past the limit, else record this attempt.

    The account's row is locked first, so that concurrent attempts on one
    email queue and each counts the ones before it (PostgreSQL's READ
    COMMITTED would otherwise let them all count the same old total).
    """
    found = await connection.execute(
        sa.select(users).where(users.c.email == email).with_for_update()
    )
    row = found.mappings().first()
    window_start_ms = now_ms - limits.LOGIN_FAILURE_WINDOW_S * 1000
    await connection.execute(
        login_failures.delete().where(login_failures.c.at_ms < window_start_ms)
    )
    for column, value, ceiling in (
        (login_failures.c.email, email, limits.LOGIN_FAILURES_MAX),
        (login_failures.c.client_address, client_address, limits.LOGIN_FAILURES_PER_ADDRESS_MAX),
    ):
        counted = await connection.execute(
            sa.select(sa.func.count(), sa.func.min(login_failures.c.at_ms)).where(column == value)
        )
        count, oldest_ms = counted.one()
        if count >= ceiling:
            retry_after_s = max(1, (int(oldest_ms) - window_start_ms) // 1000 + 1)
            raise RateLimited(
                "too many failed sign-ins; wait before trying again", retry_after_s=retry_after_s
            )
    await connection.execute(
        login_failures.insert().values(email=email, client_address=client_address, at_ms=now_ms)
    )
    return dict(row) if row is not None else None


async def session_for_token(context: PortalContext, token: str, /) -> Session | None:
    """The live session the cookie names, or None (an expired one is refused)."""
    if not token or len(token) > 2 * limits.SESSION_TOKEN_BYTES:
        return None
    session_hash = token_digest(token, purpose=_SESSION_PURPOSE)
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> Session | None:
        found = await connection.execute(
            sa.select(sessions.c.csrf_token, sessions.c.expires_at_ms, users)
            .join(users, users.c.user_id == sessions.c.user_id)
            .where(sessions.c.session_hash == session_hash)
        )
        row = found.mappings().first()
        if row is None or int(row["expires_at_ms"]) <= now_ms:
            return None
        return Session(_user_from_row(dict(row)), str(row["csrf_token"]), int(row["expires_at_ms"]))

    return await context.read(work)


async def sign_out(context: PortalContext, token: str, /) -> None:
    session_hash = token_digest(token, purpose=_SESSION_PURPOSE)

    async def work(connection: AsyncConnection) -> None:
        await connection.execute(sessions.delete().where(sessions.c.session_hash == session_hash))

    await context.write(work)


async def change_password(
    context: PortalContext,
    user: User,
    current_password: str,
    new_password: str,
    /,
    *,
    keep_session_token: str,
) -> None:
    """Replace the password and end every other session of the user."""
    checked_password(new_password, field="new_password")

    async def stored(connection: AsyncConnection) -> str:
        found = await connection.execute(
            sa.select(users.c.password_hash).where(users.c.user_id == user.user_id)
        )
        return str(found.scalar_one())

    current_hash = await context.read(stored)
    verified = await asyncio.to_thread(
        context.hasher.verify, current_hash, current_password[: limits.PASSWORD_LENGTH_MAX]
    )
    if not verified:
        raise AuthenticationFailed("the current password is wrong")
    new_hash = await asyncio.to_thread(context.hasher.hash, new_password)
    keep_hash = token_digest(keep_session_token, purpose=_SESSION_PURPOSE)
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> None:
        await connection.execute(
            users.update()
            .where(users.c.user_id == user.user_id)
            .values(password_hash=new_hash, password_changed_at_ms=now_ms)
        )
        await connection.execute(
            sessions.delete().where(
                sessions.c.user_id == user.user_id, sessions.c.session_hash != keep_hash
            )
        )

    await context.write(work)


async def user_by_id(connection: AsyncConnection, user_id: str, /) -> User | None:
    found = await connection.execute(sa.select(users).where(users.c.user_id == user_id))
    row = found.mappings().first()
    return _user_from_row(dict(row)) if row is not None else None


def _user_from_row(row: dict[str, Any]) -> User:
    return User(
        user_id=str(row["user_id"]),
        email=str(row["email"]),
        role=Role(row["role"]),
        stripe_account_id=row["stripe_account_id"],
        stripe_payouts_enabled=bool(row["stripe_payouts_enabled"]),
        agent_cash_out_allowed=bool(row["agent_cash_out_allowed"]),
    )
