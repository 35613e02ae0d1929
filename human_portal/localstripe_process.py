"""``localstripe`` as a child process: the offline stand-in for Stripe's payment API.

Started by ``agentx up`` when no Stripe keys are set, and by the tests. It
serves PaymentIntents, refunds, signed webhooks and a mock Stripe.js at
``/js.stripe.com/v3/``; the real ``stripe`` SDK talks to it unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import httpx

from human_portal.errors import PaymentProviderFailed

__all__ = ["OFFLINE_PUBLISHABLE_KEY", "OFFLINE_SECRET_KEY", "LocalStripe"]

OFFLINE_SECRET_KEY = "sk_test_offline_localstripe"
OFFLINE_PUBLISHABLE_KEY = "pk_test_offline_localstripe"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CONFIG_TIMEOUT_S = 5.0
WEBHOOK_REGISTRATION_ID = "agentx-portal"


class LocalStripe:
    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self.port = 0

    @property
    def url(self) -> str:
        assert self.port, "localstripe is not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def js_url(self) -> str:
        return f"{self.url}/js.stripe.com/v3/"

    async def start(self) -> None:
        assert self._process is None, "localstripe is already started"
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "human_portal.localstripe_runner",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError as exc:
            await self.stop()
            raise PaymentProviderFailed("localstripe did not start", retryable=False) from exc
        words = line.decode().split()
        if len(words) != 2 or words[0] != "LISTENING":
            await self.stop()
            raise PaymentProviderFailed(f"localstripe said {line!r}", retryable=False)
        self.port = int(words[1])

    async def register_webhook(self, url: str, *, secret: str) -> None:
        """Have localstripe sign its events with ``secret`` and post them to ``url``."""
        async with httpx.AsyncClient(timeout=CONFIG_TIMEOUT_S) as client:
            response = await client.post(
                f"{self.url}/_config/webhooks/{WEBHOOK_REGISTRATION_ID}",
                data={"url": url, "secret": secret},
            )
        if response.status_code != 200:
            raise PaymentProviderFailed(
                f"localstripe refused the webhook: {response.status_code}", retryable=False
            )

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def __aenter__(self) -> LocalStripe:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
