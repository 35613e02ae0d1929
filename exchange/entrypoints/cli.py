"""The ``agentx`` command: keys, the embedded stack, the demo, operator mints.

::

    agentx keys new [--out FILE]           write a new agent seed (0600), print its id
    agentx keys rotate-exchange [--data-dir DIR]  operator: a new exchange key (exchange stopped)
    agentx up [--data-dir DIR] [--port N]  run NATS (auth on) + ledger + exchange until Ctrl-C
              [--portal-port N] [--no-portal] [--operator-email EMAIL]
                                           ... and the human portal (http://127.0.0.1:8000)
    agentx demo [--agents N] [--deals N]   agents trade; exit 0 only if all settle
                [--keep-running [--operator-email EMAIL]]  then keep the portal up, the
                                           agents' seeds in DATA_DIR/demo-agents/ to link
    agentx mint AGENT_ID CREDITS --reason TEXT [--url URL] [--key FILE]
    agentx link CODE --key FILE [--url URL]  sign a portal link code with an agent's key
    agentx evidence CONTRACT [--url URL] [--key FILE]          operator: a contract's evidence
    agentx resolve CONTRACT --provider-share-percent N [--note TEXT] [--url URL] [--key FILE]
                                           operator: end a dispute (100 all, 0 none, else split)
    agentx worker --nats-url URL --database-url URL --key FILE --operator ID [--portal-id ID]
              [--metrics-port N] [--log-json]  one exchange worker on external NATS + database
    agentx status --url URL[,URL...] [--key FILE] [--database-url URL]
                                           operator: nodes, workers, streams, outbox, database
    agentx cluster [--database-url URL] [--data-dir DIR] [--nodes N] [--workers N]
                   [--portal-port N]       the production topology on loopback: NATS nodes,
                                           worker processes, the portal, on PostgreSQL
                   [--base-port N] [--only PART] [--print-compose]
                                           fixed ports; one part alone (in a container);
                                           the docker-compose.yml of this topology

The client commands (mint, link, evidence, resolve) find the exchange in
``var/agentx/exchange.json`` (written by ``agentx up``: its NATS URL and the
exchange's id, which they pin), unless ``--url`` (and ``--exchange-id``)
say otherwise; with neither they stop rather than guess a port.

The commands that answer with figures (fees, analytics, subscriptions,
evidence, status) draw tables (``cli_tables.py``): styled on a terminal,
plain aligned columns in a pipe, the reply itself with ``--json``.

Operating errors (a port in use, an unreachable server, a missing key file,
a refusal) end a command with one line on stderr and a non-zero exit, never
a traceback; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from agent_client import (
    DEFAULT_ADDRESS_FILE,
    AgentClientError,
    AgentKeys,
    OperatorClient,
    is_agent_id,
)
from broker.errors import BrokerError
from exchange.bootstrap.cluster import ClusterConfig, ExchangeCluster
from exchange.bootstrap.cluster_parts import parse_part, run_part
from exchange.bootstrap.compose_file import (
    CONTAINER_DATA_DIR,
    PLACEHOLDER_DATABASE_URL,
    render_compose,
)
from exchange.bootstrap.stack import (
    ADDRESS_FILE_NAME,
    EmbeddedStack,
    StackConfig,
    rotate_exchange_key,
)
from exchange.bootstrap.worker import ExchangeConfig, ExchangeWorker, migrate_database
from exchange.entrypoints.agent_connection import add_exchange_location, connect_agent
from exchange.entrypoints.cli_bridges import BRIDGE_COMMANDS, add_bridge_commands
from exchange.entrypoints.cli_tables import (
    DemoProgress,
    analytics_tables,
    demo_summary_tables,
    evidence_tables,
    fees_table,
    output_console,
    print_json,
    starting,
    subscriptions_tables,
)
from exchange.entrypoints.command_errors import CommandError
from exchange.entrypoints.demo import DemoOptions, DemoSummary, run_demo
from exchange.entrypoints.demo_people import (
    OPERATOR_PASSWORD_FILE_NAME,
    OPERATOR_PASSWORD_VARIABLE,
    OperatorAccess,
    OperatorAccountError,
    ensure_operator_account,
    keep_running_lines,
    operator_password,
)
from exchange.entrypoints.log_lines import configure_logging
from exchange.entrypoints.status_report import add_status_command, run_status
from exchange.errors import ExchangeError
from wallet import MILLICREDITS_PER_CREDIT, WalletError

__all__ = ["freeze_startup_objects", "main"]

DEFAULT_DATA_DIR = Path("var/agentx")
DEFAULT_NATS_PORT = 4222
DEFAULT_CLUSTER_DATA_DIR = Path("var/agentx-cluster")
DATABASE_URL_VARIABLE = "AGENTX_DATABASE_URL"
# The client commands look for the exchange where `agentx up` writes it by default.
assert DEFAULT_ADDRESS_FILE == DEFAULT_DATA_DIR / ADDRESS_FILE_NAME
# The name the client commands' agent connects as.
AGENT_NAME = "agentx-cli"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# What a shell reports for a program ended by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
# The commands that ask the exchange one thing and exit: they report their own
# failure in one line, so the client's per-attempt connection warnings stay out.
ONE_SHOT_COMMANDS = frozenset(
    {"mint", "link", "evidence", "resolve", "fees", "analytics", "subscriptions", "status"}
)


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    configure_logging(verbose=arguments.verbose, json_lines=arguments.log_json)
    quiet = arguments.command in ONE_SHOT_COMMANDS and not arguments.verbose
    with _client_warnings_hidden() if quiet else contextlib.nullcontext():
        return _run(arguments)


@contextlib.contextmanager
def _client_warnings_hidden() -> Iterator[None]:
    """Hide the client's warnings (one per connection attempt) while a command runs."""
    client_logger = logging.getLogger("agent_client")
    level = client_logger.level
    client_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        client_logger.setLevel(level)


def _run(arguments: argparse.Namespace) -> int:
    command = arguments.command
    try:
        if command == "keys" and arguments.keys_command == "rotate-exchange":
            return _rotate_exchange_key(arguments.data_dir)
        if command == "keys":
            return _keys_new(arguments.out)
        if command == "up":
            return asyncio.run(_up(arguments))
        if command == "demo":
            return _demo(arguments)
        if command == "mint":
            return asyncio.run(_mint(arguments))
        if command == "link":
            return asyncio.run(_link(arguments))
        if command == "evidence":
            return asyncio.run(_evidence(arguments))
        if command == "resolve":
            return asyncio.run(_resolve(arguments))
        if command == "worker":
            return asyncio.run(_worker(arguments))
        if command == "cluster":
            return asyncio.run(_cluster(arguments))
        if command == "fees":
            return asyncio.run(_fees(arguments))
        if command == "analytics":
            return asyncio.run(_analytics(arguments))
        if command == "subscriptions":
            return asyncio.run(_subscriptions(arguments))
        if command == "status":
            return asyncio.run(run_status(arguments))
        if command in BRIDGE_COMMANDS:
            return asyncio.run(BRIDGE_COMMANDS[command](arguments))
    except KeyboardInterrupt:
        print(f"agentx {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (AgentClientError, BrokerError, CommandError) as exc:
        print(f"agentx: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    raise AssertionError(f"unhandled command {command}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentx", description="Agent Exchange")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-json", action="store_true", help=_LOG_JSON_HELP)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_keys_commands(commands)
    _add_up_command(commands)
    _add_demo_command(commands)
    _add_client_commands(commands)
    _add_seller_commands(commands)
    _add_worker_command(commands)
    _add_cluster_command(commands)
    add_status_command(commands)
    add_bridge_commands(commands)
    return parser


_LOG_JSON_HELP = "log one JSON object per line (tracebacks only with -v)"
_DEFAULT_HELP = "(default: %(default)s)"
_DATA_DIR_HELP = "keys, ledger, NATS store and exchange.json (default: %(default)s)"


def _add_json(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json",
        action="store_true",
        help="print the exchange's reply as JSON (amounts in millicredits) instead of a table",
    )


def _add_log_json(command: argparse.ArgumentParser) -> None:
    # Also after the command name; SUPPRESS keeps the global flag's value when absent.
    command.add_argument(
        "--log-json", action="store_true", default=argparse.SUPPRESS, help=_LOG_JSON_HELP
    )


# What add_subparsers returns (argparse names the type privately).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_keys_commands(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="manage agent keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_new = keys_commands.add_parser("new", help="write a new seed file and print the id")
    keys_new.add_argument(
        "--out", type=Path, default=Path("agent.seed"), help="seed file (default: %(default)s)"
    )
    rotate = keys_commands.add_parser(
        "rotate-exchange", help="operator: replace the exchange key (run it stopped)"
    )
    rotate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=_DATA_DIR_HELP)


def _add_up_command(commands: Commands) -> None:
    up = commands.add_parser("up", help="run the exchange on embedded NATS + SQLite")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=_DATA_DIR_HELP)
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"NATS port (0: any free port; default {DEFAULT_NATS_PORT}, or a free one if taken)",
    )
    up.add_argument(
        "--portal-port",
        type=int,
        default=8000,
        help="the human portal's port (0: any free port; default: %(default)s)",
    )
    up.add_argument("--no-portal", action="store_true", help="run without the human portal")
    _add_log_json(up)
    up.add_argument(
        "--no-group-commit",
        action="store_true",
        help="one transaction per contract step (slower; for comparisons)",
    )
    up.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help=(
            "for benchmarks only: NATS authenticates nobody, so anyone who reaches"
            " the port owns the exchange (can answer as it and read every message)"
        ),
    )
    up.add_argument(
        "--operator-email",
        action="append",
        default=[],
        help="this email becomes a portal operator when it signs up (repeatable)",
    )


def _add_demo_command(commands: Commands) -> None:
    demo_defaults = DemoOptions()
    demo = commands.add_parser("demo", help="run demo agents that trade, then check the ledger")
    demo.add_argument(
        "--agents", type=int, default=demo_defaults.agents, help="2 to 200 (default: %(default)s)"
    )
    demo.add_argument("--deals", type=int, default=demo_defaults.deals, help=_DEFAULT_HELP)
    demo.add_argument(
        "--concurrency",
        type=int,
        default=demo_defaults.concurrency,
        help="deals in flight (default: %(default)s)",
    )
    demo.add_argument(
        "--data-dir", type=Path, default=None, help="keep the state here (default: a temporary one)"
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="afterwards keep the stack and the human portal up until Ctrl-C",
    )
    demo.add_argument(
        "--portal-port", type=int, default=8000, help="with --keep-running (default: %(default)s)"
    )
    demo.add_argument(
        "--operator-email",
        default=None,
        help="with --keep-running: make this portal account, with operator rights",
    )
    demo.add_argument(
        "--operator-password-file",
        type=Path,
        default=None,
        help=f"its password (default: ${OPERATOR_PASSWORD_VARIABLE}, else a new one written "
        f"to DATA_DIR/{OPERATOR_PASSWORD_FILE_NAME}); never give it on the command line",
    )


def _add_client_commands(commands: Commands) -> None:
    mint = commands.add_parser("mint", help="operator: grant credits to an agent")
    mint.add_argument("agent_id")
    mint.add_argument("credits", type=int)
    mint.add_argument("--reason", required=True)
    mint.add_argument(
        "--mint-id", default=None, help="idempotency key: rerun with the same id after a timeout"
    )
    _add_operator_connection(mint)
    evidence = commands.add_parser("evidence", help="operator: a contract's evidence bundle")
    evidence.add_argument("contract_id")
    _add_json(evidence)
    _add_operator_connection(evidence)
    resolve = commands.add_parser("resolve", help="operator: end a dispute (all, none or split)")
    resolve.add_argument("contract_id")
    resolve.add_argument(
        "--provider-share-percent",
        type=int,
        required=True,
        help="100 releases all to the provider, 0 refunds the buyer, between splits",
    )
    resolve.add_argument("--note", default="")
    _add_operator_connection(resolve)
    link = commands.add_parser("link", help="link an agent to a portal account (sign a code)")
    link.add_argument("code", help="the one-time code the portal shows")
    link.add_argument("--key", type=Path, required=True, help="the agent's seed file")
    add_exchange_location(link)


def _add_seller_commands(commands: Commands) -> None:
    fees = commands.add_parser(
        "fees", help="the fee table in force; operators change it with --set and --category"
    )
    fees.add_argument(
        "--set", action="append", default=[], metavar="KIND=BPS", help="e.g. escrow=800"
    )
    fees.add_argument(
        "--category",
        action="append",
        default=[],
        metavar="PREFIX=BPS",
        help="a category's commission, e.g. hosted_app=1500 (PREFIX=none removes it)",
    )
    fees.add_argument("--reason", default="")
    _add_json(fees)
    _add_operator_connection(fees)
    analytics = commands.add_parser("analytics", help="a provider's own figures per listing")
    analytics.add_argument("--days", type=int, default=30, help="1 to 90 (default 30)")
    analytics.add_argument("--capability", default=None, help="one listing, with its days")
    analytics.add_argument("--key", type=Path, required=True, help="the provider's seed file")
    _add_json(analytics)
    add_exchange_location(analytics)
    subscriptions = commands.add_parser(
        "subscriptions", help="an agent's subscriptions (as buyer, or --provider); --cancel ID"
    )
    subscriptions.add_argument("--key", type=Path, required=True, help="the agent's seed file")
    subscriptions.add_argument(
        "--provider", action="store_true", help="those the agent sells (default: it buys)"
    )
    subscriptions.add_argument("--cancel", default=None, metavar="ID", help="cancel one")
    _add_json(subscriptions)
    add_exchange_location(subscriptions)


def _add_worker_command(commands: Commands) -> None:
    worker = commands.add_parser("worker", help="run one exchange worker (production set-up)")
    worker.add_argument("--nats-url", required=True)
    worker.add_argument("--database-url", required=True, help="postgresql://... or sqlite:///...")
    worker.add_argument("--key", type=Path, required=True, help="the exchange's seed file")
    worker.add_argument("--operator", action="append", default=[], help="operator agent id")
    worker.add_argument("--portal-id", default=None, help="the human portal's key id, if any")
    worker.add_argument("--migrate", action="store_true", help="upgrade the schema first")
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics and /healthz on 127.0.0.1:PORT (0: any free port; default: none)",
    )
    _add_log_json(worker)
    worker.add_argument(
        "--stream-replicas",
        type=int,
        default=1,
        choices=range(1, 6),
        metavar="1..5",
        help="JetStream replicas of the exchange's streams: the cluster's node count (default 1)",
    )


def _add_cluster_command(commands: Commands) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="run the production topology on loopback: NATS cluster, workers, portal",
        description="Start NATS nodes (a JetStream cluster, auth on), exchange worker "
        "processes and the portal on one PostgreSQL database, until Ctrl-C.",
    )
    cluster.add_argument(
        "--database-url",
        default=None,
        help=f"postgresql://... (default: the URL in ${DATABASE_URL_VARIABLE})",
    )
    cluster.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_CLUSTER_DATA_DIR,
        help="keys, NATS stores, worker logs (default: %(default)s)",
    )
    cluster.add_argument(
        "--nodes",
        type=int,
        default=3,
        choices=range(1, 6),
        metavar="1..5",
        help="NATS nodes; streams get one replica per node (default: %(default)s)",
    )
    cluster.add_argument(
        "--workers",
        type=int,
        default=3,
        choices=range(1, 17),
        metavar="1..16",
        help="exchange worker processes (default: %(default)s)",
    )
    cluster.add_argument(
        "--portal-port",
        type=int,
        default=8000,
        help="the portal's HTTP port, 0 for any free port (default: %(default)s)",
    )
    cluster.add_argument("--no-portal", action="store_true", help="run no portal")
    cluster.add_argument(
        "--base-port",
        type=int,
        default=None,
        help="fix every port from this one (nodes' clients at N, N+1, ...; routes at N+10, "
        "monitors at N+20, worker metrics at N+30); default: free ports",
    )
    cluster.add_argument(
        "--only",
        metavar="PART",
        default=None,
        help="run one part alone, as a container does: init, node-N, worker-N or portal "
        "(needs --base-port)",
    )
    cluster.add_argument(
        "--print-compose",
        action="store_true",
        help=f"print the docker-compose.yml of this topology (base port {DEFAULT_NATS_PORT} "
        "unless given) and exit",
    )
    _add_log_json(cluster)


def _keys_new(out: Path) -> int:
    keys = AgentKeys.generate()
    keys.save(out)
    print(keys.agent_id)
    print(f"seed written to {out} (mode 0600); keep it secret", file=sys.stderr)
    return EXIT_OK


def _rotate_exchange_key(data_dir: Path) -> int:
    old_id, new_id = rotate_exchange_key(data_dir)
    print(f"exchange key rotated: {old_id} -> {new_id}")
    print("records and notices of the old key stay valid; agents that pin the id need the new")
    print(f"one, which {data_dir / ADDRESS_FILE_NAME} names once the exchange runs again")
    return EXIT_OK


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    return stop


def _check_port_free(port: int, *, command: str, option: str) -> None:
    """Fail in one line, with the fix, when a fixed loopback port is already taken.

    Checked before anything starts, so that the answer is not a server's log
    tail or a traceback; a port taken in the moment between fails when the
    server binds it.
    """
    if port == 0:
        return
    probe = socket.socket()
    # As the servers bind: a port whose old connections linger in TIME_WAIT is free.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as exc:
        raise CommandError(_port_in_use(port, command=command, option=option)) from exc
    finally:
        probe.close()


def _port_in_use(port: int, *, command: str, option: str) -> str:
    return f"port {port} is in use: run `agentx {command} {option} 0` for any free port"


async def _up(arguments: argparse.Namespace) -> int:
    if arguments.port is not None:
        _check_port_free(arguments.port, command="up", option="--port")
    if not arguments.no_portal:
        _check_port_free(arguments.portal_port, command="up", option="--portal-port")
    stop = _stop_on_signals()
    data_dir = arguments.data_dir.absolute()
    config = StackConfig(
        data_dir=data_dir,
        nats_port=DEFAULT_NATS_PORT if arguments.port is None else arguments.port,
        nats_port_fallback=arguments.port is None,
        portal_port=None if arguments.no_portal else arguments.portal_port,
        operator_emails=frozenset(arguments.operator_email),
        group_commit=not arguments.no_group_commit,
        auth=not arguments.insecure_no_auth,
    )
    async with contextlib.AsyncExitStack() as running:
        with starting(output_console(), "NATS, the ledger and the exchange"):
            stack = await running.enter_async_context(EmbeddedStack(config))
        print(f"NATS:        {stack.nats_url}")
        if stack.nats_port_taken is not None:
            print(f"note:        port {stack.nats_port_taken} was taken, so NATS took a free one")
        if config.auth:
            print("auth:        on: every client connects with its own key (nkey)")
        else:
            print("auth:        OFF (insecure; benchmarks only)")
        print(f"address:     {stack.address_path} (the URL and the exchange id to pin)")
        print(f"data dir:    {data_dir}")
        print(f"database:    {stack.database_url}")
        print(f"exchange id: {stack.exchange_keys.agent_id}")
        print(f"operator:    {stack.operator_keys.agent_id} (seed {data_dir / 'operator.seed'})")
        if stack.portal is not None:
            print(f"portal:      {stack.portal.url}  (payments: {stack.portal.stripe_mode})")
        print("running; press Ctrl-C to stop", flush=True)
        freeze_startup_objects()
        await stop.wait()
    print("stopped")
    return EXIT_OK


def _demo(arguments: argparse.Namespace) -> int:
    email = arguments.operator_email
    options = DemoOptions(
        agents=arguments.agents,
        deals=arguments.deals,
        data_dir=arguments.data_dir,
        concurrency=arguments.concurrency,
        portal_port=arguments.portal_port if arguments.keep_running else None,
        keep_seeds=arguments.keep_running,
        operator_emails=frozenset({email.strip().lower()}) if email else frozenset(),
    )
    problem = options.check()
    if problem is None and email and not arguments.keep_running:
        problem = "--operator-email needs --keep-running (the portal runs only then)"
    if problem is not None:
        print(f"agentx demo: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if options.portal_port is not None:
        _check_port_free(options.portal_port, command="demo", option="--portal-port")
    console = output_console()
    people = _DemoPeople(email, arguments.operator_password_file)
    try:
        with DemoProgress(console) as shown:

            def summarize(summary: DemoSummary) -> None:
                shown.finish()
                for table in demo_summary_tables(console, summary):
                    console.print(table)
                console.print(f"demo {'OK' if summary.succeeded else 'FAILED'}", highlight=False)

            succeeded = asyncio.run(
                run_demo(
                    options,
                    say=shown.say,
                    progress=shown.step,
                    started=people.start if email else None,
                    summarize=summarize,
                    afterwards=people.wait_for_ctrl_c if arguments.keep_running else None,
                )
            )
    except KeyboardInterrupt:
        print("agentx demo: FAILED: interrupted by Ctrl-C before the verdict", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OperatorAccountError as exc:
        print(f"agentx demo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if succeeded else EXIT_FAILED


class _DemoPeople:
    """``--keep-running``'s part for people: the operator account, then what to use and how."""

    def __init__(self, email: str | None, password_file: Path | None) -> None:
        self._email = email
        self._password_file = password_file
        self._operator: OperatorAccess | None = None

    async def start(self, stack: EmbeddedStack) -> None:
        """Make the operator's portal account as soon as the portal is up."""
        assert self._email is not None
        if stack.portal is None:
            raise OperatorAccountError("no portal is installed, so there is no account to make")
        password = operator_password(
            self._password_file, environ=os.environ, data_dir=stack.data_dir
        )
        created = await ensure_operator_account(stack.portal.url, self._email, password.password)
        self._operator = OperatorAccess(self._email.strip().lower(), password.source, created)

    async def wait_for_ctrl_c(self, stack: EmbeddedStack, summary: DemoSummary) -> None:
        stop = _stop_on_signals()
        for line in keep_running_lines(stack, summary, self._operator):
            print(line)
        print("still running; press Ctrl-C to stop", flush=True)
        await stop.wait()


async def _mint(arguments: argparse.Namespace) -> int:
    if not 1 <= arguments.credits <= 1_000_000_000:
        print("agentx mint: credits must be between 1 and 1,000,000,000", file=sys.stderr)
        return EXIT_USAGE
    if not is_agent_id(arguments.agent_id):
        print(
            f"agentx mint: {arguments.agent_id!r} is not an agent id: one is 56 letters and "
            "digits starting with U, as `agentx keys new` prints it",
            file=sys.stderr,
        )
        return EXIT_USAGE
    async with await connect_agent(arguments, arguments.key, name=AGENT_NAME) as agent:
        reply = await OperatorClient(agent).mint(
            arguments.agent_id,
            arguments.credits * MILLICREDITS_PER_CREDIT,
            reason=arguments.reason,
            mint_id=arguments.mint_id,
        )
    print(f"minted {arguments.credits} credits to {reply.recipient_id} ({reply.transfer_id})")
    return EXIT_OK


def _add_operator_connection(command: argparse.ArgumentParser) -> None:
    add_exchange_location(command)
    command.add_argument(
        "--key",
        type=Path,
        default=DEFAULT_DATA_DIR / "operator.seed",
        help="the operator's seed file (default: %(default)s)",
    )


async def _evidence(arguments: argparse.Namespace) -> int:
    async with await connect_agent(arguments, arguments.key, name=AGENT_NAME) as operator:
        bundle = await operator.evidence(arguments.contract_id)
    if arguments.json:
        print_json(bundle)
        return EXIT_OK
    console = output_console()
    for table in evidence_tables(console, bundle):
        console.print(table)
    return EXIT_OK


async def _fees(arguments: argparse.Namespace) -> int:
    try:
        rates = {kind: int(bps) for kind, bps in _pairs(arguments.set)}
        categories = {
            prefix: None if bps == "none" else int(bps)
            for prefix, bps in _pairs(arguments.category)
        }
    except ValueError:
        print("agentx fees: use KIND=BPS and PREFIX=BPS (or PREFIX=none)", file=sys.stderr)
        return EXIT_USAGE
    async with await connect_agent(arguments, arguments.key, name=AGENT_NAME) as agent:
        if rates or categories:
            table = await OperatorClient(agent).set_fees(
                rates=rates, categories=categories, reason=arguments.reason
            )
        else:
            table = await agent.fees()
    if arguments.json:
        print_json(table)
        return EXIT_OK
    console = output_console()
    console.print(fees_table(console, table))
    return EXIT_OK


def _pairs(texts: list[str]) -> list[tuple[str, str]]:
    pairs = [text.partition("=") for text in texts]
    if any(not name or not separator for name, separator, _ in pairs):
        raise ValueError("not NAME=VALUE")
    return [(name.strip(), value.strip()) for name, _, value in pairs]


async def _analytics(arguments: argparse.Namespace) -> int:
    async with await connect_agent(arguments, arguments.key, name=AGENT_NAME) as agent:
        report = await agent.analytics(days=arguments.days, capability=arguments.capability)
    if arguments.json:
        print_json(report)
        return EXIT_OK
    console = output_console()
    if not report.listings:
        console.print(f"no listings sold anything in the last {arguments.days} days")
    for table in analytics_tables(console, report, days=arguments.days):
        console.print(table)
    if report.truncated:
        console.print("(only the newest rows of this period are counted)")
    return EXIT_OK


async def _resolve(arguments: argparse.Namespace) -> int:
    if not 0 <= arguments.provider_share_percent <= 100:
        print("agentx resolve: --provider-share-percent is 0 to 100", file=sys.stderr)
        return EXIT_USAGE
    async with await connect_agent(arguments, arguments.key, name=AGENT_NAME) as agent:
        view = await OperatorClient(agent).resolve(
            arguments.contract_id,
            provider_share_bps=arguments.provider_share_percent * 100,
            note=arguments.note,
        )
    print(
        f"contract {view.contract_id} {view.state}: provider net {view.net_millicredits} mcr, "
        f"fee {view.fee_millicredits} mcr, buyer refunded {view.refunded_millicredits} mcr"
    )
    return EXIT_OK


async def _link(arguments: argparse.Namespace) -> int:
    async with await connect_agent(arguments, arguments.key, name=AGENT_NAME) as agent:
        linked = await agent.link_human(arguments.code)
    print(f"linked {linked.agent_id} to the portal account as {linked.label!r}")
    return EXIT_OK


def freeze_startup_objects() -> None:
    """Keep what was built while starting out of the garbage collector's full passes.

    A full (generation 2) collection walks every tracked object: the modules,
    SQLAlchemy's caches, the app. In a running exchange it stopped the event
    loop for 38-44 ms every 7-11 s at 200 deals/s, stalling every deal in
    flight; with the startup objects frozen the same passes take 2-3 ms. They
    live as long as the process anyway.
    """
    gc.collect()
    gc.freeze()


async def _worker(arguments: argparse.Namespace) -> int:
    stop = _stop_on_signals()
    if arguments.migrate:
        await migrate_database(arguments.database_url)
    config = ExchangeConfig(
        nats_url=arguments.nats_url,
        database_url=arguments.database_url,
        keys=AgentKeys.load(arguments.key),
        operator_ids=frozenset(arguments.operator),
        portal_id=arguments.portal_id,
        stream_replicas=arguments.stream_replicas,
        metrics_port=arguments.metrics_port,
    )
    async with ExchangeWorker(config) as worker:
        print(f"exchange worker {worker.exchange_id} serving {arguments.nats_url}", flush=True)
        if worker.metrics_url is not None:
            print(f"metrics: {worker.metrics_url}/metrics (health: /healthz)", flush=True)
        freeze_startup_objects()
        await stop.wait()
    return EXIT_OK


async def _cluster(arguments: argparse.Namespace) -> int:
    if arguments.print_compose:
        return _print_compose(arguments)
    database_url = arguments.database_url or os.environ.get(DATABASE_URL_VARIABLE)
    if not database_url:
        print(
            f"agentx cluster: give --database-url postgresql://... or set {DATABASE_URL_VARIABLE}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        config = ClusterConfig(
            data_dir=arguments.data_dir.absolute(),
            database_url=database_url,
            nodes=arguments.nodes,
            workers=arguments.workers,
            portal_port=None if arguments.no_portal else arguments.portal_port,
            base_port=arguments.base_port,
        )
    except ValueError as exc:
        print(f"agentx cluster: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if arguments.only is not None:
        return await _cluster_part(config, arguments.only)
    stop = _stop_on_signals()
    cluster = ExchangeCluster(config)
    failure: Exception | None
    try:
        failure = await _run_cluster_until_stopped(cluster, stop)
    except (ExchangeError, BrokerError, WalletError) as exc:
        failure = exc
    finally:
        await cluster.stop()
    if failure is not None:
        print(f"agentx cluster: {_one_line(failure)}", file=sys.stderr)
        return EXIT_FAILED
    print("stopped")
    return EXIT_OK


async def _run_cluster_until_stopped(
    cluster: ExchangeCluster, stop: asyncio.Event
) -> ExchangeError | None:
    """Start, print, then wait for Ctrl-C (None) or a process that failed (its error).

    A Ctrl-C while starting cancels the start, which stops what it started.
    """
    stopped = asyncio.ensure_future(stop.wait())
    tasks: list[asyncio.Future[Any]] = [stopped, asyncio.ensure_future(cluster.start())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if stopped.done():
            return None
        await tasks[1]  # raises what the start raised
        _print_cluster(cluster)
        freeze_startup_objects()
        failing = asyncio.ensure_future(cluster.wait_for_failure())
        tasks.append(failing)
        await asyncio.wait([stopped, failing], return_when=asyncio.FIRST_COMPLETED)
        return failing.result() if failing.done() else None
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _print_compose(arguments: argparse.Namespace) -> int:
    config = ClusterConfig(
        data_dir=CONTAINER_DATA_DIR,
        database_url=PLACEHOLDER_DATABASE_URL,
        nodes=arguments.nodes,
        workers=arguments.workers,
        portal_port=None if arguments.no_portal else arguments.portal_port,
        base_port=arguments.base_port or DEFAULT_NATS_PORT,
    )
    print(render_compose(config), end="")
    return EXIT_OK


async def _cluster_part(config: ClusterConfig, name: str) -> int:
    """One part of the topology alone (exchange/bootstrap/cluster_parts.py)."""
    try:
        if config.base_port is None:
            raise ValueError("--only needs --base-port: every part must know every port")
        part = parse_part(name, config)
    except ValueError as exc:
        print(f"agentx cluster: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = _stop_on_signals()
    failure: Exception | None
    try:
        failure = await run_part(config, part, stop=stop)
    except (ExchangeError, BrokerError, WalletError) as exc:
        failure = exc
    if failure is not None:
        print(f"agentx cluster {part.name}: {_one_line(failure)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _print_cluster(cluster: ExchangeCluster) -> None:
    data_dir = cluster.data_dir
    print(f"NATS URLs:   {cluster.nats_url}")
    print(f"address:     {cluster.address_path} (the URLs and the exchange id to pin)")
    print(f"data dir:    {data_dir} (worker logs in {data_dir / 'workers'})")
    print(f"exchange id: {cluster.exchange_keys.agent_id}")
    print(f"operator:    {cluster.operator_keys.agent_id} (seed {data_dir / 'operator.seed'})")
    if cluster.portal is not None:
        print(f"portal:      {cluster.portal.url}  (payments: {cluster.portal.stripe_mode})")
    print(f"{'process':<14} {'pid':>8}  {'serves':<26} metrics")
    for process in cluster.processes():
        metrics = process.metrics_url or "-"
        print(f"{process.name:<14} {process.process_id:>8}  {process.url or '-':<26} {metrics}")
    print("running; press Ctrl-C to stop", flush=True)


def _one_line(error: Exception) -> str:
    """The first line of an error; a NATS start error's log tail stays in its log file."""
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    log_path = getattr(error, "log_path", None)
    if log_path is not None and str(log_path) not in first_line:
        return f"{first_line} (see {log_path})"
    return first_line


async def _subscriptions(arguments: argparse.Namespace) -> int:
    async with await connect_agent(arguments, arguments.key, name=AGENT_NAME) as agent:
        if arguments.cancel is not None:
            view = await agent.cancel_subscription(arguments.cancel)
            ends = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(view.period_ends_at_ms // 1000))
            print(f"{view.subscription_id}: {view.state.value} (paid until {ends})")
            return EXIT_OK
        role = "provider" if arguments.provider else "buyer"
        page = await agent.subscriptions(role=role, limit=100)
    if arguments.json:
        print_json(page)
        return EXIT_OK
    console = output_console()
    if not page.subscriptions:
        console.print(f"0 subscriptions as {role}")
    else:
        for table in subscriptions_tables(console, page, role=role):
            console.print(table)
    if page.has_more:
        console.print("(more not shown)")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
