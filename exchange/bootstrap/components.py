"""The parts of the product the exchange does not contain, found where it is installed.

The exchange never imports the human portal. The composition root looks up,
by name, the components the installed product declares (``pyproject.toml``,
entry points of the group ``agentx.components``): the store of the humans'
spending controls (filling the exchange's ``SpendingControls`` port), the
portal's database migrations, and the embedded portal ``agentx up`` runs.
An exchange installed without them runs with no spending controls and no
portal.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from exchange.use_cases.spending import NoSpendingControls, SpendingControls

__all__ = [
    "COMPONENTS_GROUP",
    "WebPortal",
    "embedded_portal_factory",
    "extra_migration_paths",
    "spending_controls",
]

COMPONENTS_GROUP = "agentx.components"


class WebPortal(Protocol):
    """The embedded human portal, as the stack runs it."""

    url: str
    stripe_mode: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _component(name: str, /) -> Any | None:
    found = [point for point in entry_points(group=COMPONENTS_GROUP) if point.name == name]
    assert len(found) <= 1, f"{name} is declared twice"
    return found[0].load() if found else None


def spending_controls() -> SpendingControls:
    """The installed store of the humans' spending controls (none: nobody is controlled)."""
    store_class = _component("spending_controls")
    store: SpendingControls = store_class() if store_class is not None else NoSpendingControls()
    return store


def extra_migration_paths() -> list[Path]:
    """Migrations of installed components that share the exchange's database."""
    path = _component("portal_migrations")
    return [] if path is None else [Path(path)]


def embedded_portal_factory() -> Callable[..., WebPortal] | None:
    """What builds the embedded portal, if one is installed."""
    factory: Callable[..., WebPortal] | None = _component("embedded_portal")
    return factory
