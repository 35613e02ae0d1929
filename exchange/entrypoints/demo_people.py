"""What ``agentx demo --keep-running`` leaves for a person: an operator account to sign in with.

The exchange never imports the portal, so the account is made the way a
person makes one: through the running portal's own sign-up form over HTTP
(its anonymous CSRF cookie, then the form). The portal gives an email listed
in its operator emails the operator role when it signs up, and the demo
lists ``--operator-email`` there. Run again on the same data directory, the
account exists already: the password is then checked by signing in.

The password never comes from the command line (other users of the machine
can read a process's arguments): it is read from ``--operator-password-file``
or from ``AGENTX_OPERATOR_PASSWORD``; with neither, a random one is made and
written, mode 0600, to the data directory.
"""

from __future__ import annotations

import html
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from exchange.bootstrap.stack import EmbeddedStack
from exchange.entrypoints.demo import DEMO_SEEDS_DIR_NAME, DemoSummary, demo_seed_path

__all__ = [
    "OPERATOR_PASSWORD_FILE_NAME",
    "OPERATOR_PASSWORD_VARIABLE",
    "OperatorAccess",
    "OperatorAccountError",
    "OperatorPassword",
    "ensure_operator_account",
    "keep_running_lines",
    "operator_password",
]

OPERATOR_PASSWORD_VARIABLE: Final = "AGENTX_OPERATOR_PASSWORD"
# Where a generated password is written, inside the data directory.
OPERATOR_PASSWORD_FILE_NAME: Final = "portal-operator.password"
GENERATED_PASSWORD_BYTES: Final = 18
PASSWORD_FILE_BYTES_MAX: Final = 4_096
PORTAL_TIMEOUT_S: Final = 15.0
# The portal's names for its anonymous CSRF cookie and form field (human_portal/web/common.py).
ANONYMOUS_CSRF_COOKIE: Final = "agentx_csrf"
CSRF_FIELD: Final = "csrf_token"
_PROBLEM_PATTERN: Final = re.compile(r'<p class="problem"[^>]*>(.*?)</p>', re.DOTALL)


class OperatorAccountError(Exception):
    """The operator account could not be made or its password is wrong or unreadable."""


@dataclass(frozen=True, slots=True)
class OperatorPassword:
    password: str
    # Where a person finds it: the file, the variable, or the generated file.
    source: str


def operator_password(
    password_file: Path | None, /, *, environ: Mapping[str, str], data_dir: Path
) -> OperatorPassword:
    """The password from the file, else the environment, else a new one written to ``data_dir``."""
    if password_file is not None:
        try:
            with password_file.open("rb") as source:
                text = source.read(PASSWORD_FILE_BYTES_MAX).decode()
        except (OSError, UnicodeDecodeError) as exc:
            raise OperatorAccountError(f"cannot read {password_file}: {exc}") from exc
        return OperatorPassword(text.rstrip("\r\n"), f"the file {password_file}")
    from_environment = environ.get(OPERATOR_PASSWORD_VARIABLE, "")
    if from_environment:
        return OperatorPassword(from_environment, f"${OPERATOR_PASSWORD_VARIABLE}")
    path = data_dir / OPERATOR_PASSWORD_FILE_NAME
    if path.exists():
        return OperatorPassword(path.read_text().rstrip("\n"), f"the file {path}")
    password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as target:
        target.write(password + "\n")
    return OperatorPassword(password, f"the file {path} (generated)")


async def ensure_operator_account(portal_url: str, email: str, password: str, /) -> bool:
    """Sign ``email`` up at the portal; True if created, False if it existed (password checked)."""
    async with httpx.AsyncClient(base_url=portal_url, timeout=PORTAL_TIMEOUT_S) as client:
        try:
            created = await _submit(client, "/sign-up", email, password)
            if created.status_code == httpx.codes.SEE_OTHER:
                return True
            if created.status_code != httpx.codes.CONFLICT:
                raise OperatorAccountError(f"the portal refused {email}: {_problem(created)}")
            signed_in = await _submit(client, "/sign-in", email, password)
        except httpx.HTTPError as exc:
            raise OperatorAccountError(f"cannot reach the portal at {portal_url}: {exc}") from exc
    if signed_in.status_code != httpx.codes.SEE_OTHER:
        raise OperatorAccountError(
            f"{email} has a portal account already and the password given does not sign it in"
        )
    return False


async def _submit(
    client: httpx.AsyncClient, path: str, email: str, password: str
) -> httpx.Response:
    """The form at ``path``, filled in as a browser would (its page first, for the CSRF cookie)."""
    (await client.get(path)).raise_for_status()
    csrf_token = client.cookies.get(ANONYMOUS_CSRF_COOKIE, "")
    form = {
        "email": email,
        "password": password,
        "password_again": password,
        CSRF_FIELD: csrf_token,
    }
    return await client.post(path, data=form)


def _problem(response: httpx.Response) -> str:
    found = _PROBLEM_PATTERN.search(response.text)
    if found is None:
        return f"HTTP {response.status_code}"
    return html.unescape(found.group(1)).strip()


@dataclass(frozen=True, slots=True)
class OperatorAccess:
    """The portal account made for ``--operator-email``: who, how it signs in, if new."""

    email: str
    password_source: str
    created: bool


def keep_running_lines(
    stack: EmbeddedStack, summary: DemoSummary, operator: OperatorAccess | None, /
) -> list[str]:
    """What a person needs to use the running demo: the portal, the account, the seeds."""
    data_dir = stack.data_dir
    address = f"--address-file {stack.address_path}"
    lines = [f"NATS:         {stack.nats_url}"]
    portal_url = stack.portal.url if stack.portal is not None else None
    if stack.portal is not None:
        lines.append(f"portal:       {portal_url}  (payments: {stack.portal.stripe_mode})")
    if operator is not None:
        made = "created" if operator.created else "already there"
        lines.append(f"operator:     {operator.email} (portal operator account, {made})")
        lines.append(f"password:     in {operator.password_source}")
        lines.append(f"sign in:      {portal_url}/sign-in")
    elif portal_url is not None:
        lines.append(f"sign up:      {portal_url}/sign-up (give --operator-email for an operator)")
    lines.append(f"agent seeds:  {data_dir / DEMO_SEEDS_DIR_NAME} (mode 0600)")
    lines.append(
        'to link:      sign in, open Agents, press "Show a link code", then run, with that code:'
    )
    for balance in summary.balances:
        seed = demo_seed_path(data_dir, balance.name)
        lines.append(f"link {balance.name}: agentx link CODE --key {seed} {address}")
    operator_seed = data_dir / "operator.seed"
    lines.append(f"operator key: {operator_seed}")
    lines.append(f"evidence:     agentx evidence CONTRACT {address} --key {operator_seed}")
    return lines
