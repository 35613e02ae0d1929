"""Where an exchange is and which key is its own: the file ``agentx up`` writes.

``agentx up`` writes ``<data dir>/exchange.json`` once it serves: the NATS
URL (the port may not be 4222 when that one was taken) and the exchange's
id, which clients pin so that no other key's replies, records or notices
are ever believed (``AgentOptions.exchange_id``). It holds no secret; hand
it to the agents that should trade on this exchange.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from agent_client.errors import AddressFileError
from agent_client.protocol import AgentId

__all__ = [
    "DEFAULT_ADDRESS_FILE",
    "ExchangeAddress",
    "locate_exchange",
    "read_exchange_address",
    "write_exchange_address",
]

ADDRESS_FILE_BYTES_MAX = 4096
# Where `agentx up` writes it with its default data directory.
DEFAULT_ADDRESS_FILE = Path("var/agentx/exchange.json")


class ExchangeAddress(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: Annotated[str, Meta(min_length=1, max_length=1024)]
    exchange_id: AgentId
    # The human portal's key, when the exchange runs one.
    portal_id: AgentId | None = None


def write_exchange_address(path: Path, address: ExchangeAddress, /) -> None:
    """Replace the file atomically, so a reader never sees half of it."""
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(msgspec.json.format(msgspec.json.encode(address)) + b"\n")
    os.replace(temporary, path)


def read_exchange_address(path: Path, /) -> ExchangeAddress:
    try:
        with path.open("rb") as address_file:
            content = address_file.read(ADDRESS_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise AddressFileError(f"cannot read {path}: {exc}", path=str(path)) from exc
    if len(content) > ADDRESS_FILE_BYTES_MAX:
        raise AddressFileError(f"{path} is over {ADDRESS_FILE_BYTES_MAX} B", path=str(path))
    try:
        return msgspec.json.decode(content, type=ExchangeAddress)
    except msgspec.DecodeError as exc:
        raise AddressFileError(f"{path} is not an exchange address: {exc}", path=str(path)) from exc


def locate_exchange(
    url: str | None, exchange_id: str | None, address_file: Path, /
) -> tuple[str, str | None]:
    """The NATS URL to use and the exchange id to pin.

    What the caller names wins; what it leaves out comes from the address
    file. Without a URL the file must exist (AddressFileError): falling back
    to a default port would silently reach whatever else listens there.
    """
    if url is not None:
        return url, exchange_id
    if not address_file.exists():
        raise AddressFileError(
            f"{address_file} not found: start the exchange with `agentx up`, "
            "or give --address-file DATA_DIR/exchange.json or --url",
            path=str(address_file),
        )
    address = read_exchange_address(address_file)
    return address.nats_url, exchange_id or address.exchange_id
