"""Pages: what the human's agents earn as providers, per listing, with a chart and CSV."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from human_portal.provider_reports import analytics_csv, provider_report
from human_portal.reports import spending_chart_svg
from human_portal.web.common import PortalWeb

__all__ = ["analytics_router"]

analytics_router = APIRouter(include_in_schema=False)


@analytics_router.get("/analytics")
async def analytics_page(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    report = await provider_report(web.context, session.user.user_id)
    return await web.render(
        request,
        "analytics.html",
        report=report,
        chart_svg=spending_chart_svg(report.days),
    )


@analytics_router.get("/analytics.csv")
async def analytics_export(request: Request, web: PortalWeb) -> Response:
    session = await web.require_session(request)
    report = await provider_report(web.context, session.user.user_id)
    stamp = time.strftime("%Y%m%d", time.gmtime(web.context.now_ms() // 1000))
    return Response(
        analytics_csv(report.rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="agentx-analytics-{stamp}.csv"'},
    )
