"""Page: the notices, everything that needs the human, newest first (``human_portal.notice_list``).

Opening the page reads the notices, then marks them all read: the ones
newer than the previous visit are shown as new this once.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from human_portal import limits
from human_portal.errors import InvalidInput
from human_portal.notice_list import Notice, mark_notices_seen, notices_for_user
from human_portal.web.common import PortalWeb

__all__ = ["notices_router"]

_PAGES_MAX = -(-limits.NOTICES_MAX // limits.NOTICES_PAGE_SIZE)

notices_router = APIRouter(include_in_schema=False)


@notices_router.get("/notices")
async def notices_page(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    page = _page_number(request.query_params.get("page", "1"))
    user_id = session.user.user_id
    now_ms = web.context.now_ms()

    async def load(connection: AsyncConnection) -> list[Notice]:
        return await notices_for_user(web.context, connection, user_id, now_ms=now_ms)

    notices = await web.context.read(load)
    seen_before_ms = await mark_notices_seen(web.context, user_id, until_ms=now_ms)
    first = (page - 1) * limits.NOTICES_PAGE_SIZE
    shown = notices[first : first + limits.NOTICES_PAGE_SIZE]
    return await web.render(
        request,
        "notices.html",
        notices=shown,
        seen_before_ms=seen_before_ms,
        page=page,
        has_next=len(notices) > first + limits.NOTICES_PAGE_SIZE,
        shown_max=limits.NOTICES_MAX,
    )


def _page_number(text: str, /) -> int:
    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= _PAGES_MAX:
        raise InvalidInput("page", f"is a page number from 1 to {_PAGES_MAX}")
    return int(text)
