"""The command line's tables, and what ``agentx demo --keep-running`` leaves a person.

The main test runs the real programs as a person would, as subprocesses on
loopback: ``agentx demo --keep-running --operator-email ...`` (the password
in ``AGENTX_OPERATOR_PASSWORD``, never on the command line), then, against
that still-running demo, ``agentx fees``, ``analytics``, ``evidence`` and
``status`` (their key cells and figures, cross-checked with ``--json`` and
with the demo's own balance table), and ``agentx link`` with a seed the demo
wrote (0600) and a code the portal showed the operator, who signs in over
HTTP; the portal then lists the agent for that user and opens its operator
page to them. Output in a pipe carries no escape codes and no box drawing.
The demo is stopped by its PID with SIGINT within a bounded wait, and the
ledger it leaves must satisfy the exchange's invariants.

Tables built from real reply documents are also drawn at 80 columns on a
(forced) terminal, and must fit and keep their figures there.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from agent_client import AgentKeys
from agent_client.credit_text import format_millicredits
from agent_client.protocol import (
    AnalyticsReply,
    DayAnalytics,
    FeesReply,
    ListingAnalytics,
    SubscriptionsReply,
    SubscriptionState,
    SubscriptionView,
)
from exchange.adapters.contract_invariants import check_exchange_invariants
from exchange.entrypoints.cli_tables import (
    analytics_tables,
    fees_table,
    output_console,
    subscriptions_tables,
)
from exchange.entrypoints.demo_people import (
    OPERATOR_PASSWORD_FILE_NAME,
    OPERATOR_PASSWORD_VARIABLE,
    operator_password,
)
from wallet import open_database

AGENTX = [sys.executable, "-m", "exchange.entrypoints.cli"]
ANSWER_WITHIN_S = 30.0
DEMO_WITHIN_S = 120.0
DEMO_LINES_MAX = 500
OPERATOR_EMAIL = "Operator@Example.com"
OPERATOR_PASSWORD = "a long demo password"
ESCAPE = "\x1b"
BOX_CHARACTERS = set("─━│┃┌┐└┘├┤┬┴┼╭╮╰╯═║")


def plain(text: str) -> str:
    """``text``, after asserting it is plain: no escape codes, no box drawing."""
    assert ESCAPE not in text, repr(text[:200])
    assert not BOX_CHARACTERS & set(text), text
    return text


def agentx(*arguments: str) -> str:
    completed = subprocess.run(
        [*AGENTX, *arguments], capture_output=True, text=True, timeout=ANSWER_WITHIN_S
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return plain(completed.stdout)


def row(text: str, first_cell: str) -> list[str]:
    """The cells (split on spaces) of the one line whose first cell is ``first_cell``."""
    (found,) = [line.split() for line in text.splitlines() if line.split()[:1] == [first_cell]]
    return found


def start_demo(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str], list[str]]:
    """The demo, kept running; what it printed as ``label: value``, and every line."""
    environment = {**os.environ, OPERATOR_PASSWORD_VARIABLE: OPERATOR_PASSWORD}
    demo = subprocess.Popen(
        [*AGENTX, "demo", "--agents", "2", "--deals", "2", "--data-dir", str(data_dir),
         "--keep-running", "--portal-port", "0", "--operator-email", OPERATOR_EMAIL],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )  # fmt: skip
    assert demo.stdout is not None
    printed: dict[str, str] = {}
    lines: list[str] = []
    deadline = time.monotonic() + DEMO_WITHIN_S
    for _ in range(DEMO_LINES_MAX):
        line = demo.stdout.readline()
        assert line, f"the demo exited with {demo.wait(ANSWER_WITHIN_S)}:\n{''.join(lines)}"
        assert time.monotonic() < deadline
        lines.append(plain(line))
        if line.startswith("still running"):
            return demo, printed, lines
        label, _, value = line.partition(":")
        printed[label.strip()] = value.strip()
    raise AssertionError("no 'still running' line")


def stop(process: subprocess.Popen[str]) -> int:
    """SIGINT to this process (by its PID), then a bounded wait; kill it if it hangs."""
    if process.returncode is None:
        os.kill(process.pid, signal.SIGINT)
    try:
        return process.wait(ANSWER_WITHIN_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(ANSWER_WITHIN_S)
        raise


def csrf_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def sign_in(portal: httpx.Client, email: str, password: str) -> httpx.Response:
    page = portal.get("/sign-in")
    form = {"email": email, "password": password, "csrf_token": csrf_token(page)}
    return portal.post("/sign-in", data=form)


def link_code(portal: httpx.Client) -> str:
    page = portal.get("/agents")
    shown = portal.post(
        "/agents/link-code", data={"label": "demo provider", "csrf_token": csrf_token(page)}
    )
    found = re.search(r'id="link-code">([^<]+)<', shown.text)
    assert found is not None, shown.text[:500]
    return found.group(1).strip()


def test_demo_keep_running_leaves_linkable_agents_an_operator_and_readable_tables(tmp_path):
    data_dir = tmp_path / "demo"
    demo, printed, lines = start_demo(data_dir)
    try:
        check_the_demo_summary(lines)
        check_the_tables_against_the_demo(data_dir, lines)
        check_linking_and_the_operator(data_dir, printed)
    finally:
        exit_code = stop(demo)
    assert exit_code == 0
    engine = open_database(f"sqlite+aiosqlite:///{data_dir / 'ledger.sqlite3'}")

    async def check() -> None:
        try:
            await check_exchange_invariants(engine)
        finally:
            await engine.dispose()

    asyncio.run(check())


def section(lines: list[str], title: str) -> str:
    """The lines of the demo's summary table titled ``title`` (up to the next blank-free title)."""
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].strip() in ("verdict", "demo OK")),
        len(lines),
    )
    return "".join(lines[start + 1 : end])


def check_the_demo_summary(lines: list[str]) -> None:
    text = section(lines, "verdict")
    assert row(text, "deals")[-3:] == ["2", "of", "2"]
    assert row(text, "ledger")[-1] == "OK"
    for scenario in ("negotiation", "refund", "dispute", "metered", "goods", "subscription"):
        assert row(text, scenario) == [scenario, "scenario", "OK"], text
    assert "demo OK\n" in lines


def check_the_tables_against_the_demo(data_dir: Path, lines: list[str]) -> None:
    address = ["--address-file", str(data_dir / "exchange.json")]
    operator = [*address, "--key", str(data_dir / "operator.seed")]
    demo_text = "".join(lines)
    # The provider's earnings: its balance in the demo's table, its net in its analytics.
    provider_available = row(section(lines, "balances after trading"), "provider-1")[2]
    provider_seed = str(data_dir / "demo-agents" / "provider-1.seed")
    analytics = agentx("analytics", *address, "--key", provider_seed)
    exact = json.loads(agentx("analytics", *address, "--key", provider_seed, "--json"))
    (listing,) = exact["listings"]
    sales, service = analytics.split("\nservice")
    cells = row(sales, listing["capability"])
    assert row(service, listing["capability"])[1:3] == [
        f"{listing['refunds']:,}",
        f"{listing['disputes']:,}",
    ]
    assert cells[1] == f"{listing['contracts']:,}" == "2"
    assert cells[5] == format_millicredits(listing["revenue_net_millicredits"])
    assert cells[5] == provider_available
    assert cells[6] == format_millicredits(listing["fees_millicredits"])
    assert "1 listings, last 30 days" in analytics

    fees = agentx("fees", *operator)
    exact_fees = json.loads(agentx("fees", *operator, "--json"))
    escrow_bps = exact_fees["rates"]["escrow"]
    assert row(fees, "escrow") == ["escrow", f"{escrow_bps / 100:.2f}", "%", str(escrow_bps)]

    (dispute_contract,) = re.findall(r"dispute scenario: .*contract (c_[0-9a-f]+)", demo_text)
    evidence = agentx("evidence", dispute_contract, *operator)
    assert row(evidence, "state") == ["state", "resolved"]
    assert row(evidence, "contract") == ["contract", dispute_contract]
    exact_evidence = json.loads(agentx("evidence", dispute_contract, *operator, "--json"))
    price = exact_evidence["contract"]["price_millicredits"]
    assert row(evidence, "price")[1:3] == [format_millicredits(price), "cr"]
    events = [line.split()[1] for line in evidence.splitlines() if line[:2] == "20"]
    assert events == ["open", "deliver", "reject", "resolve"]

    status = agentx(
        "status", "--url", json.loads((data_dir / "exchange.json").read_text())["nats_url"],
        "--key", str(data_dir / "exchange.seed"),
    )  # fmt: skip
    assert row(status, "agentx-exchange")[4] != "-"
    assert row(status, "AGENTX_RESULTS")[1] == "1"


def check_linking_and_the_operator(data_dir: Path, printed: dict[str, str]) -> None:
    portal_url = printed["portal"].split()[0]
    assert printed["operator"].startswith("operator@example.com (portal operator account")
    assert printed["password"] == f"in ${OPERATOR_PASSWORD_VARIABLE}"
    assert printed["sign in"] == f"{portal_url}/sign-in"
    seeds = data_dir / "demo-agents"
    assert printed["agent seeds"].startswith(str(seeds))
    seed = seeds / "provider-1.seed"
    assert stat.S_IMODE(seed.stat().st_mode) == 0o600
    assert stat.S_IMODE((seeds / "buyer-1.seed").stat().st_mode) == 0o600
    command = printed["link provider-1"].split()
    assert command[:3] == ["agentx", "link", "CODE"]
    agent_id = AgentKeys.load(seed).agent_id
    with httpx.Client(base_url=portal_url, timeout=ANSWER_WITHIN_S) as portal:
        assert sign_in(portal, OPERATOR_EMAIL, "not the password").status_code != 303
        assert sign_in(portal, OPERATOR_EMAIL, OPERATOR_PASSWORD).status_code == 303
        assert agent_id not in portal.get("/agents").text
        code = link_code(portal)
        linked = agentx(*command[1:2], code, *command[3:])
        assert f"linked {agent_id} to the portal account as 'demo provider'" in linked
        assert agent_id in portal.get("/agents").text
        assert portal.get("/operator").status_code == 200


def test_operator_email_without_keep_running_is_refused_in_one_line(tmp_path):
    completed = subprocess.run(
        [*AGENTX, "demo", "--operator-email", "a@example.com"],
        capture_output=True,
        text=True,
        timeout=ANSWER_WITHIN_S,
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == [
        "agentx demo: --operator-email needs --keep-running (the portal runs only then)"
    ]


def test_the_operator_password_comes_from_a_file_the_environment_or_a_new_private_file(tmp_path):
    password_file = tmp_path / "password.txt"
    password_file.write_text("from the file\n")
    from_file = operator_password(password_file, environ={}, data_dir=tmp_path)
    assert from_file.password == "from the file"
    environ = {OPERATOR_PASSWORD_VARIABLE: "from the environment"}
    assert operator_password(None, environ=environ, data_dir=tmp_path).password == (
        "from the environment"
    )
    generated = operator_password(None, environ={}, data_dir=tmp_path)
    written = tmp_path / OPERATOR_PASSWORD_FILE_NAME
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert written.read_text() == generated.password + "\n"
    assert len(generated.password) >= 20
    # The next run reads the same one back.
    assert operator_password(None, environ={}, data_dir=tmp_path).password == generated.password


# --- the tables at 80 columns on a terminal ---------------------------------------------

AGENT_ID = AgentKeys.generate().agent_id
SUBSCRIPTION_ID = "sub_" + "0123456789abcdef" * 2


def subscription_page() -> SubscriptionsReply:
    view = SubscriptionView(
        subscription_id=SUBSCRIPTION_ID, plan_id="plan_1", plan="monthly",
        buyer_id=AGENT_ID, provider_id=AGENT_ID, capability="news.daily.digest",
        price_millicredits=12_500, period_s=30 * 86_400, state=SubscriptionState.ACTIVE,
        periods_charged=3, charged_millicredits=37_500, period_started_at_ms=0,
        period_ends_at_ms=1_767_225_600_000, next_attempt_at_ms=None, grace_ends_at_ms=None,
        cancel_at_period_end=False, failure="", failed_attempts=0, created_at_ms=0,
        updated_at_ms=0,
    )  # fmt: skip
    return SubscriptionsReply(subscriptions=[view], has_more=False)


def analytics_reply() -> AnalyticsReply:
    day = DayAnalytics(
        day_start_ms=1_767_225_600_000, contracts=7, revenue_net_millicredits=1_234_500,
        rating_count=2, rating_sum=9,
    )  # fmt: skip
    listing = ListingAnalytics(
        capability="text.summarize.long", contracts=1_234, metered_sessions=3,
        metered_units=987_654, revenue_net_millicredits=1_234_567_890,
        fees_millicredits=65_432_100, refunds=12, disputes=3, rating_count=40, rating_sum=180,
        delivery_p50_ms=1_250, delivery_p90_ms=98_000, delivery_p99_ms=None, days=[day],
        subscription_periods=45, goods_sold=6,
    )  # fmt: skip
    return AnalyticsReply(
        provider_id=AGENT_ID, since_ms=0, until_ms=1, truncated=False, listings=[listing]
    )


def drawn_on_a_terminal(width: int, draw) -> str:
    """What ``draw(console)`` shows on a ``width``-column terminal, escape codes removed."""
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    for table in draw(console):
        console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("width", [80, 120])
def test_the_tables_fit_a_terminal_and_keep_their_figures(width):
    drawn = {
        "analytics": drawn_on_a_terminal(
            width, lambda console: analytics_tables(console, analytics_reply(), days=30)
        ),
        "subscriptions": drawn_on_a_terminal(
            width, lambda console: subscriptions_tables(console, subscription_page(), role="buyer")
        ),
        "fees": drawn_on_a_terminal(
            width,
            lambda console: [
                fees_table(
                    console,
                    FeesReply(
                        rates={"escrow": 500}, categories={"hosted_app": 1500}, updated_at_ms=0
                    ),
                )
            ],
        ),
    }
    for name, text in drawn.items():
        widest = max(len(line) for line in text.splitlines())
        assert widest <= width, f"{name} is {widest} columns wide:\n{text}"
        assert "─" in text  # a terminal gets the header rule
    analytics = drawn["analytics"]
    for figure in ("1,234,567.89", "65,432.1", "1,234", "987,654", "4.50 (40)", "1,234.5"):
        assert figure in analytics, analytics
    # A row where the terminal is wide enough, else a card per subscription.
    subscriptions = drawn["subscriptions"]
    assert SUBSCRIPTION_ID in subscriptions and "12.5" in subscriptions
    assert "30 d" in subscriptions and AGENT_ID[:12] in subscriptions
    assert "15.00 %" in drawn["fees"] and "category hosted_app" in drawn["fees"]


def test_a_pipe_gets_plain_aligned_columns_one_row_a_line():
    stream = io.StringIO()
    console = output_console(stream)
    for table in subscriptions_tables(console, subscription_page(), role="buyer"):
        console.print(table)
    text = plain(stream.getvalue())
    assert row(text, SUBSCRIPTION_ID) == [
        SUBSCRIPTION_ID, "monthly", "news.daily.digest", AGENT_ID[:12] + "…", "active",
        "12.5", "30", "d", "3", "2026-01-01", "00:00",
    ]  # fmt: skip


def test_amounts_read_as_credits_exactly():
    # One formatter for the command line and the portal (the portal imports this one).
    from human_portal.money_rules import format_millicredits as portal_format

    assert portal_format is format_millicredits
    expected = {
        0: "0", 1: "0.001", 10: "0.01", 999: "0.999", 1_000: "1", 1_500: "1.5",
        12_500: "12.5", 1_234_567_890: "1,234,567.89", -1: "-0.001", -2_500: "-2.5",
        10**15 + 7: "1,000,000,000,000.007", 1_234_500: "1,234.5",
    }  # fmt: skip
    assert {amount: format_millicredits(amount) for amount in expected} == expected
