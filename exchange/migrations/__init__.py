"""The exchange's Alembic revisions (branch label ``exchange``)."""

from pathlib import Path

__all__ = ["VERSIONS_PATH"]

VERSIONS_PATH = Path(__file__).resolve().parent / "versions"
