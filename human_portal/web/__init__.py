"""The portal's web layer: server-rendered pages, the Stripe webhook and ``/api/v1``.

Routes only decode, call a use case and map errors; the use cases live one
level up. ``create_app`` is the entry point.
"""

from human_portal.web.app import create_app

__all__ = ["create_app"]
