"""The exchange's SQL for timer leases: which worker runs each background pass.

A lease is one row per job (``exchange_timer_leases``). Taking it is one
compare-and-set: the row changes hands only when it is the caller's already
(a renewal) or has expired, so of any number of workers trying at once
exactly one succeeds. PostgreSQL makes the losers of a concurrent UPDATE
re-check the condition against the winner's committed row (READ COMMITTED),
and the first use of a job inserts its row with ON CONFLICT DO NOTHING, so
two first users race on the primary key and one of them inserts nothing.
SQLite has a single writer, which serialises the same statements.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.adapters.exchange_tables import timer_leases

__all__ = ["TimerLease", "lease_rows", "release", "try_acquire"]


@dataclass(frozen=True, slots=True)
class TimerLease:
    job: str
    holder: str
    acquired_at_ms: int
    expires_at_ms: int


async def try_acquire(
    connection: AsyncConnection, job: str, /, *, holder: str, now_ms: int, ttl_ms: int
) -> bool:
    """Take or renew ``job``'s lease for ``holder`` until ``now_ms + ttl_ms``; whether it is held.

    False: another holder's lease is still running (or another worker took
    a free lease in the same instant).
    """
    assert ttl_ms > 0 and job and holder
    expires_at_ms = now_ms + ttl_ms
    renewed_or_taken = (
        sa.update(timer_leases)
        .where(
            timer_leases.c.job == job,
            sa.or_(timer_leases.c.holder == holder, timer_leases.c.expires_at_ms < now_ms),
        )
        .values(
            # A renewal keeps the time it was first taken; a takeover starts anew.
            acquired_at_ms=sa.case(
                (timer_leases.c.holder == holder, timer_leases.c.acquired_at_ms), else_=now_ms
            ),
            holder=holder,
            expires_at_ms=expires_at_ms,
        )
        .returning(timer_leases.c.job)
    )
    if (await connection.execute(renewed_or_taken)).first() is not None:
        return True
    first_use = (
        _insert_if_absent(connection)
        .values(job=job, holder=holder, acquired_at_ms=now_ms, expires_at_ms=expires_at_ms)
        .returning(timer_leases.c.job)
    )
    return (await connection.execute(first_use)).first() is not None


async def release(connection: AsyncConnection, job: str, /, *, holder: str, now_ms: int) -> bool:
    """End ``holder``'s lease on ``job`` now, so another worker need not wait for it to expire.

    Whether ``holder`` held it. The row stays (expired), naming its last holder.
    """
    ended = (
        sa.update(timer_leases)
        .where(
            timer_leases.c.job == job,
            timer_leases.c.holder == holder,
            timer_leases.c.expires_at_ms >= now_ms,
        )
        # Expired as of now: any worker may take it at once.
        .values(expires_at_ms=now_ms - 1)
        .returning(timer_leases.c.job)
    )
    return (await connection.execute(ended)).first() is not None


async def lease_rows(connection: AsyncConnection, /) -> list[TimerLease]:
    """Every job's lease as it stands (one row per job ever run), by job name."""
    found = await connection.execute(sa.select(timer_leases).order_by(timer_leases.c.job))
    return [
        TimerLease(str(row.job), str(row.holder), int(row.acquired_at_ms), int(row.expires_at_ms))
        for row in found
    ]


def _insert_if_absent(connection: AsyncConnection) -> sa.Insert:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(timer_leases).on_conflict_do_nothing(index_elements=["job"])
    return sqlite.insert(timer_leases).on_conflict_do_nothing(index_elements=["job"])
