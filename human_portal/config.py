"""The portal's configuration: one frozen value built by the composition root.

Stripe runs in one of two modes. With real keys (``STRIPE_SECRET_KEY``,
``STRIPE_PUBLISHABLE_KEY`` and ``STRIPE_WEBHOOK_SECRET`` in the environment)
every call goes to Stripe. Without them ``agentx up`` starts ``localstripe``
on a loopback port and points ``api_base`` and ``js_url`` at it, plus the
portal's offline stand-in for the Connect endpoints localstripe lacks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from human_portal.security import PasswordProfile
from wallet import FeeSchedule

__all__ = ["PortalConfig", "StripeSettings", "stripe_settings_from_environment"]

STRIPE_JS_URL = "https://js.stripe.com/v3/"
_ENVIRONMENT_KEYS = ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")


@dataclass(frozen=True, slots=True)
class StripeSettings:
    secret_key: str
    publishable_key: str
    webhook_secret: str
    # None: Stripe itself. A URL: a Stripe-compatible server (localstripe).
    api_base: str | None = None
    # Where the Connect endpoints (accounts, account links, transfers) live;
    # None: the same place as ``api_base``.
    connect_api_base: str | None = None
    js_url: str = STRIPE_JS_URL

    def __post_init__(self) -> None:
        assert self.secret_key.startswith(("sk_", "rk_")), "a Stripe secret key"
        assert self.publishable_key.startswith("pk_"), "a Stripe publishable key"
        assert self.webhook_secret.startswith("whsec_"), "a Stripe webhook signing secret"

    @property
    def offline(self) -> bool:
        """True when talking to localstripe rather than to Stripe."""
        return self.api_base is not None

    def __repr__(self) -> str:
        # Keys never reach logs.
        return f"StripeSettings(api_base={self.api_base!r}, offline={self.offline})"


def stripe_settings_from_environment(
    environment: Mapping[str, str] | None = None, /
) -> StripeSettings | None:
    """Real Stripe settings when all three variables are set, else None."""
    values = os.environ if environment is None else environment
    keys = [values.get(name, "").strip() for name in _ENVIRONMENT_KEYS]
    if not all(keys):
        return None
    secret_key, publishable_key, webhook_secret = keys
    return StripeSettings(
        secret_key=secret_key, publishable_key=publishable_key, webhook_secret=webhook_secret
    )


@dataclass(frozen=True, slots=True)
class PortalConfig:
    database_url: str
    stripe: StripeSettings
    # The address humans use, e.g. http://127.0.0.1:8000; links and return
    # URLs are built from it, and https turns on Secure cookies. Empty: the
    # address the server listens on (filled in by ``PortalServer``).
    public_url: str = ""
    # NATS, for the link service agents sign their codes to.
    nats_url: str | None = None
    operator_emails: frozenset[str] = frozenset()
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    password_profile: PasswordProfile = field(default_factory=PasswordProfile)

    def __post_init__(self) -> None:
        assert self.public_url == "" or self.public_url.startswith(("http://", "https://"))
        assert not self.public_url.endswith("/")
        assert all(email == email.strip().lower() for email in self.operator_emails)

    @property
    def cookie_secure(self) -> bool:
        return self.public_url.startswith("https://")
