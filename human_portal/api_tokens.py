"""Personal API tokens for ``/api/v1``: created and revoked in the portal, stored hashed.

A token is shown once, when it is created (``agx_`` + 43 random characters);
the database keeps its SHA-256 digest only. A revoked token stops working
at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from human_portal import limits
from human_portal.accounts import User, user_by_id
from human_portal.errors import InvalidInput, LimitExceeded, NotFound
from human_portal.portal_context import PortalContext
from human_portal.portal_tables import api_tokens
from human_portal.security import new_token, token_digest

__all__ = [
    "ApiToken",
    "NewApiToken",
    "create_api_token",
    "revoke_api_token",
    "tokens_of",
    "user_for_api_token",
]

TOKEN_PREFIX = "agx_"
_PURPOSE = "api-token"


@dataclass(frozen=True, slots=True)
class ApiToken:
    token_id: str
    name: str
    created_at_ms: int
    last_used_at_ms: int | None
    revoked_at_ms: int | None


@dataclass(frozen=True, slots=True)
class NewApiToken:
    """A token just created; ``secret`` is shown to the user once and never stored."""

    token: ApiToken
    secret: str


async def create_api_token(context: PortalContext, user: User, name: str, /) -> NewApiToken:
    name = " ".join(name.split())
    if not 1 <= len(name) <= limits.API_TOKEN_NAME_LENGTH_MAX:
        raise InvalidInput(
            "name", f"give the token a name of 1 to {limits.API_TOKEN_NAME_LENGTH_MAX} characters"
        )
    secret = TOKEN_PREFIX + new_token(limits.API_TOKEN_BYTES)
    token = ApiToken("tok_" + uuid.uuid4().hex[:20], name, context.now_ms(), None, None)

    async def work(connection: AsyncConnection) -> None:
        counted = await connection.execute(
            sa.select(sa.func.count()).where(
                api_tokens.c.user_id == user.user_id, api_tokens.c.revoked_at_ms.is_(None)
            )
        )
        count = int(counted.scalar_one())
        if count >= limits.API_TOKENS_PER_USER_MAX:
            raise LimitExceeded(
                "too many live API tokens; revoke one first",
                limit=limits.API_TOKENS_PER_USER_MAX,
                requested=count + 1,
            )
        await connection.execute(
            api_tokens.insert().values(
                token_id=token.token_id,
                user_id=user.user_id,
                name=name,
                token_hash=token_digest(secret, purpose=_PURPOSE),
                created_at_ms=token.created_at_ms,
                last_used_at_ms=None,
                revoked_at_ms=None,
            )
        )

    await context.write(work)
    return NewApiToken(token, secret)


async def revoke_api_token(context: PortalContext, user: User, token_id: str, /) -> None:
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> None:
        updated = await connection.execute(
            api_tokens.update()
            .where(
                api_tokens.c.token_id == token_id,
                api_tokens.c.user_id == user.user_id,
                api_tokens.c.revoked_at_ms.is_(None),
            )
            .values(revoked_at_ms=now_ms)
        )
        if updated.rowcount != 1:
            raise NotFound("live API token")

    await context.write(work)


async def tokens_of(connection: AsyncConnection, user_id: str, /) -> list[ApiToken]:
    found = await connection.execute(
        sa.select(api_tokens)
        .where(api_tokens.c.user_id == user_id)
        .order_by(api_tokens.c.created_at_ms.desc())
    )
    return [
        ApiToken(
            str(row["token_id"]),
            str(row["name"]),
            int(row["created_at_ms"]),
            row["last_used_at_ms"],
            row["revoked_at_ms"],
        )
        for row in found.mappings()
    ]


async def user_for_api_token(context: PortalContext, secret: str, /) -> User | None:
    """The owner of a live token, or None; records when the token was last used."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 2 * limits.API_TOKEN_BYTES + 8:
        return None
    digest = token_digest(secret, purpose=_PURPOSE)
    now_ms = context.now_ms()

    async def work(connection: AsyncConnection) -> User | None:
        found = await connection.execute(
            sa.select(api_tokens.c.token_id, api_tokens.c.user_id).where(
                api_tokens.c.token_hash == digest, api_tokens.c.revoked_at_ms.is_(None)
            )
        )
        row = found.first()
        if row is None:
            return None
        await connection.execute(
            api_tokens.update()
            .where(api_tokens.c.token_id == row.token_id)
            .values(last_used_at_ms=now_ms)
        )
        return await user_by_id(connection, str(row.user_id))

    return await context.write(work)
