"""Headless Debian Chromium for the portal's browser tests, launched one way.

Playwright never downloads a browser here: it drives /usr/bin/chromium
(tests/run.sh installs it), with a profile of its own per test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import BrowserContext, Page, async_playwright

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "STEP_TIMEOUT_MS", "chromium_page", "sign_up_in_page"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Each step (a navigation, a click, a wait) fails after this.
STEP_TIMEOUT_MS = 20_000


@contextlib.asynccontextmanager
async def chromium_page(
    profile_dir: Path, /, *, width: int, height: int
) -> AsyncIterator[tuple[BrowserContext, Page]]:
    """A page in a fresh headless Chromium of that viewport; closed on the way out."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = await browser.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            yield browser, page
        finally:
            await browser.close()


async def sign_up_in_page(page: Page, portal_url: str, email: str, password: str) -> None:
    """Open an account through the portal's sign-up form, as a person would; ends signed in."""
    await page.goto(f"{portal_url}/sign-up")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.fill("input[name=password_again]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{portal_url}/dashboard")
