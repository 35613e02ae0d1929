"""``agentx status``: what an operator checks first, in one readable table.

::

    agentx status --url nats://a:4222,nats://b:4222 [--key FILE] [--database-url URL]

It shows, each section saying what it could not see rather than failing:

* **NATS nodes**: each URL given, and the cluster peers they announce, read
  from the ``INFO`` line every nats-server sends before authentication
  (name, version, cluster, JetStream).
* **Services**: every NATS micro service instance (``$SRV.PING`` and
  ``$SRV.INFO``: the exchange's workers and the portal's processes) with
  its id and version, and its request and error counts from ``$SRV.STATS``,
  which only the exchange's key may ask (broker/permissions.py).
* **Streams**: the exchange's JetStream streams with their replicas, leader
  and messages; JetStream's API is also the exchange key's only.
* **Database** (with ``--database-url``): whether it answers ``SELECT 1``,
  and the outbox backlog (notices committed, not yet acknowledged by their
  recipients; an agent that stays away keeps its notices here for 8 days).

On a terminal the sections are tables (``exchange/entrypoints/cli_tables.py``);
in a pipe they are plain aligned columns, and ``--json`` prints the sections
as one JSON object.

Exit status 0 when NATS accepted the key and at least one exchange worker
answered (and the database, when asked, answered); 1 otherwise, and when no
node answers at all, one line saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.aio.msg import Msg
from rich.console import Console
from sqlalchemy.engine import make_url

from agent_client import AgentClientError, AgentKeys
from agent_client.transport import connect_nats
from broker.streams import GOODS_STREAM, RESULT_STREAM
from exchange.adapters.operations_queries import database_answers, outbox_backlog
from exchange.entrypoints.cli_tables import new_table, output_console
from wallet import open_database

__all__ = ["StatusReport", "add_status_command", "gather_status", "print_status", "run_status"]

EXCHANGE_SERVICE_NAME: Final = "agentx-exchange"
# How long each question may take: a node's INFO line, a connection, a query.
ANSWER_TIMEOUT_S: Final = 3.0
# How long replies from every service instance are gathered after a $SRV request.
GATHER_S: Final = 1.0
# nats-py takes whole seconds here.
FLUSH_TIMEOUT_S: Final = 3
NODES_MAX: Final = 16
SERVICE_REPLIES_MAX: Final = 256
INFO_LINE_BYTES_MAX: Final = 64 * 1024
STREAMS: Final = (RESULT_STREAM, GOODS_STREAM)
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1


@dataclass
class StatusReport:
    """The rows of each section, and what could not be seen (``notes``)."""

    nodes: list[list[str]] = field(default_factory=list)
    services: list[list[str]] = field(default_factory=list)
    streams: list[list[str]] = field(default_factory=list)
    database: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    connected: bool = False
    database_ok: bool = True

    @property
    def healthy(self) -> bool:
        workers = [row for row in self.services if row[0] == EXCHANGE_SERVICE_NAME]
        return self.connected and bool(workers) and self.database_ok


def add_status_command(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="operator: NATS nodes, workers, streams, outbox backlog, database"
    )
    status.add_argument("--url", required=True, help="NATS URL(s), comma-separated")
    status.add_argument(
        "--key",
        type=Path,
        default=Path("var/agentx/operator.seed"),
        help="seed to connect with (the exchange's key also shows request counts and streams)",
    )
    status.add_argument("--database-url", default=None, help="also check the database")
    status.add_argument("--json", action="store_true", help="print the sections as JSON")


async def run_status(arguments: argparse.Namespace) -> int:
    urls = [url.strip() for url in arguments.url.split(",") if url.strip()]
    report = await gather_status(
        urls, AgentKeys.load(arguments.key), database_url=arguments.database_url
    )
    if not report.connected and all(row[1] != "up" for row in report.nodes):
        print(f"agentx status: nothing answers at {arguments.url}", file=sys.stderr)
        return EXIT_FAILED
    if arguments.json:
        print(json.dumps({**asdict(report), "healthy": report.healthy}))
    else:
        print_status(report)
    return EXIT_OK if report.healthy else EXIT_FAILED


async def gather_status(
    urls: Sequence[str], keys: AgentKeys, /, *, database_url: str | None
) -> StatusReport:
    report = StatusReport()
    report.nodes = await _node_rows(urls)
    # Permission refusals ($SRV.STATS, JetStream) are expected with some keys and
    # reported in the table; the connection's one-line warnings would only repeat them.
    transport_log = logging.getLogger("agent_client.transport")
    level = transport_log.level
    transport_log.setLevel(logging.ERROR)
    try:
        await _gather_from_nats(report, ",".join(urls), keys)
    finally:
        transport_log.setLevel(level)
    if database_url is not None:
        await _gather_database(report, database_url)
    return report


async def _node_rows(urls: Sequence[str]) -> list[list[str]]:
    """One row per node given or announced, each read from its INFO line."""
    rows: list[list[str]] = []
    pending = [_host_port(url) for url in urls]
    seen: set[str] = set()
    while pending and len(seen) < NODES_MAX:
        address = pending.pop(0)
        if address in seen:
            continue
        seen.add(address)
        try:
            info = await asyncio.wait_for(_server_info(address), ANSWER_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            rows.append([address, "down", type(exc).__name__, "-", "-", "-"])
            continue
        pending.extend(str(peer) for peer in info.get("connect_urls") or [])
        name = str(info.get("server_name") or info.get("server_id", "?"))[:24]
        jetstream = "on" if info.get("jetstream") else "off"
        cluster = str(info.get("cluster") or "-")
        rows.append([address, "up", name, str(info.get("version", "?")), cluster, jetstream])
    return rows


def _host_port(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 4222}"


async def _server_info(address: str) -> dict[str, Any]:
    """The INFO a nats-server sends every client first, before any authentication."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=INFO_LINE_BYTES_MAX)
    try:
        line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not line.startswith(b"INFO "):
        raise ValueError("not a NATS server")
    info = json.loads(line[len(b"INFO ") :])
    if not isinstance(info, dict):
        raise ValueError("not a NATS server")
    return info


async def _gather_from_nats(report: StatusReport, url: str, keys: AgentKeys) -> None:
    try:
        client = await connect_nats(
            url, keys, name="agentx-status", connect_timeout_s=ANSWER_TIMEOUT_S
        )
    except AgentClientError as exc:
        report.notes.append(f"no NATS connection with key {keys.agent_id[:12]}…: {exc}")
        return
    report.connected = True
    try:
        await _gather_services(report, client)
        await _gather_streams(report, client)
    finally:
        await client.close()


async def _gather_services(report: StatusReport, client: Client) -> None:
    infos = await _gather_replies(client, "$SRV.INFO")
    stats = {reply.get("id"): reply for reply in await _gather_replies(client, "$SRV.STATS")}
    for info in sorted(infos, key=lambda reply: (str(reply.get("name")), str(reply.get("id")))):
        endpoints = stats.get(info.get("id"), {}).get("endpoints")
        if endpoints is None:
            requests = errors = "-"
        else:
            requests = str(sum(int(e.get("num_requests", 0)) for e in endpoints))
            errors = str(sum(int(e.get("num_errors", 0)) for e in endpoints))
        row = [str(info.get(key, "?")) for key in ("name", "id", "version")]
        report.services.append([*row, str(len(info.get("endpoints") or [])), requests, errors])
    if not infos:
        report.notes.append("no NATS micro service answered $SRV.INFO: is any worker running?")
    elif not stats:
        report.notes.append("request counts ($SRV.STATS) need the exchange's key (--key)")


async def _gather_replies(client: Client, subject: str) -> list[dict[str, Any]]:
    """Every instance's reply to ``subject`` within GATHER_S (micro services all answer)."""
    replies: list[dict[str, Any]] = []

    async def on_reply(message: Msg) -> None:
        if len(replies) < SERVICE_REPLIES_MAX:
            with contextlib.suppress(ValueError):
                replies.append(json.loads(message.data))

    inbox = client.new_inbox()
    subscription = await client.subscribe(inbox, cb=on_reply)
    try:
        await client.publish(subject, b"", reply=inbox)
        await client.flush(timeout=FLUSH_TIMEOUT_S)
        await asyncio.sleep(GATHER_S)
    finally:
        await subscription.unsubscribe()
    return [reply for reply in replies if isinstance(reply, dict)]


async def _gather_streams(report: StatusReport, client: Client) -> None:
    js = client.jetstream(timeout=ANSWER_TIMEOUT_S)
    for name in STREAMS:
        try:
            info = await js.stream_info(name)
        except Exception as exc:
            # The first refusal answers for all: the same key asks for each.
            report.notes.append(f"streams not shown: {type(exc).__name__} (needs the exchange key)")
            return
        cluster = info.cluster
        leader = (cluster.leader if cluster else None) or "-"
        peers = (cluster.replicas if cluster else None) or []
        current = f"{sum(1 for peer in peers if peer.current) + 1}/{len(peers) + 1}"
        replicas = str(info.config.num_replicas or 1)
        messages = str(info.state.messages)
        report.streams.append([name, replicas, leader, current, messages])


async def _gather_database(report: StatusReport, database_url: str) -> None:
    shown_url = make_url(database_url).render_as_string(hide_password=True)
    engine = open_database(database_url)
    try:
        await asyncio.wait_for(database_answers(engine), ANSWER_TIMEOUT_S)
        async with engine.connect() as connection:
            backlog = await asyncio.wait_for(outbox_backlog(connection), ANSWER_TIMEOUT_S)
        report.database.append([shown_url, "answers", str(backlog)])
    except Exception as exc:
        report.database_ok = False
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:120]
        report.database.append([shown_url, f"unreachable ({reason})", "-"])
    finally:
        await engine.dispose()


def print_status(report: StatusReport, /, *, console: Console | None = None) -> None:
    """Each section that has rows as a table under its title, then the notes."""
    console = console or output_console()
    sections = [
        ("NATS nodes", ["NODE", "STATE", "NAME", "VERSION", "CLUSTER", "JETSTREAM"], report.nodes),
        (
            "Services ($SRV)",
            ["SERVICE", "ID", "VERSION", "ENDPOINTS", "REQUESTS", "ERRORS"],
            report.services,
        ),
        ("Streams", ["STREAM", "REPLICAS", "LEADER", "CURRENT", "MESSAGES"], report.streams),
        ("Database", ["DATABASE", "STATE", "OUTBOX BACKLOG"], report.database),
    ]
    for title, headers, rows in sections:
        if rows:
            table = new_table(console, *headers, title=title)
            for row in rows:
                table.add_row(*row)
            console.print(table)
            console.print()
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
