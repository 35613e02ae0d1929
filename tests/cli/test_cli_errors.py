"""The command line fails fast and in one line on every operating error.

Each test runs a real command as a new user would (``agentx`` through
``python -m exchange.entrypoints.cli``, or ``examples/buyer.py``) as a
subprocess, on loopback only, and checks what the user sees: a non-zero
exit, exactly one line on stderr saying what is wrong (and the fix, where
there is one), no traceback, all within ``ANSWER_WITHIN_S``. Ports are taken
by sockets the test itself holds; nothing here touches port 4222. Ctrl-C
during the demo is a real SIGINT and must end with a verdict and exit 130.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from agent_client import AgentKeys

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AGENTX = [sys.executable, "-m", "exchange.entrypoints.cli"]
# A few seconds for the answer; the bound leaves room for a slow machine.
ANSWER_WITHIN_S = 15.0
# Starting the embedded stack (nats-server, migrations, worker) takes longer.
STARTUP_WITHIN_S = 60.0
STARTUP_LINES_MAX = 50
EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def held_port() -> Iterator[int]:
    """A loopback port this test listens on, so that it is taken."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


def closed_port() -> int:
    """A loopback port where nothing listens (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def fails_in_one_line(command: list[str], *, cwd: Path, exit_code: int = 1) -> str:
    """Run ``command``; assert it failed fast with one stderr line; return that line."""
    started = time.monotonic()
    completed = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=ANSWER_WITHIN_S
    )
    elapsed_s = time.monotonic() - started
    assert completed.returncode == exit_code, completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert elapsed_s < ANSWER_WITHIN_S
    return lines[0]


def seed(tmp_path: Path, name: str) -> Path:
    keys = AgentKeys.generate()
    path = tmp_path / name
    keys.save(path)
    return path


def test_mint_to_a_port_where_nothing_listens_fails_in_one_line(tmp_path):
    url = f"nats://127.0.0.1:{closed_port()}"
    agent_id = AgentKeys.generate().agent_id
    key = seed(tmp_path, "operator.seed")
    line = fails_in_one_line(
        [*AGENTX, "mint", agent_id, "5", "--reason", "r", "--url", url, "--key", str(key)],
        cwd=tmp_path,
    )
    assert line.startswith("agentx: cannot connect to NATS at " + url)


def test_a_client_command_without_an_address_file_says_to_start_the_exchange(tmp_path):
    # No --url and no var/agentx/exchange.json here: never a silent default port.
    line = fails_in_one_line([*AGENTX, "link", "ABCDE", "--key", "agent.seed"], cwd=tmp_path)
    assert "var/agentx/exchange.json not found" in line
    assert "`agentx up`" in line


def test_evidence_with_a_missing_operator_key_names_the_file(tmp_path):
    url = f"nats://127.0.0.1:{closed_port()}"
    line = fails_in_one_line([*AGENTX, "evidence", "c_1", "--url", url], cwd=tmp_path)
    assert "cannot read seed file" in line
    assert "var/agentx/operator.seed" in line


def test_mint_to_a_malformed_agent_id_is_explained_in_plain_words(tmp_path):
    line = fails_in_one_line(
        [*AGENTX, "mint", "UABC", "5", "--reason", "r"], cwd=tmp_path, exit_code=2
    )
    assert line == (
        "agentx mint: 'UABC' is not an agent id: one is 56 letters and digits starting "
        "with U, as `agentx keys new` prints it"
    )


def test_up_on_a_taken_nats_port_says_to_use_port_0(tmp_path):
    with held_port() as port:
        line = fails_in_one_line(
            [*AGENTX, "up", "--no-portal", "--port", str(port), "--data-dir", str(tmp_path)],
            cwd=tmp_path,
        )
    assert line == f"agentx: port {port} is in use: run `agentx up --port 0` for any free port"


def test_up_on_a_taken_portal_port_says_to_use_portal_port_0(tmp_path):
    with held_port() as port:
        line = fails_in_one_line(
            [*AGENTX, "up", "--port", "0", "--portal-port", str(port), "--data-dir", str(tmp_path)],
            cwd=tmp_path,
        )
    assert line == (
        f"agentx: port {port} is in use: run `agentx up --portal-port 0` for any free port"
    )


def help_text(*command: str) -> str:
    """``agentx COMMAND --help`` with argparse's line wrapping undone."""
    completed = subprocess.run(
        [*AGENTX, *command, "--help"], capture_output=True, text=True, timeout=ANSWER_WITHIN_S
    )
    return " ".join(completed.stdout.split())


def test_help_shows_the_defaults():
    assert "(default: var/agentx/operator.seed)" in help_text("mint")
    assert "(default: var/agentx/exchange.json)" in help_text("evidence")
    assert "(default: 4)" in help_text("demo")
    assert "(default: var/agentx)" in help_text("up")


def test_ctrl_c_during_the_demo_prints_a_verdict_and_exits_130(tmp_path):
    demo = subprocess.Popen(
        [*AGENTX, "demo", "--agents", "2", "--deals", "1000", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        for _ in range(STARTUP_LINES_MAX):
            if demo.stdout.readline().startswith("deal 2:"):
                break
        demo.send_signal(signal.SIGINT)
        _, stderr = demo.communicate(timeout=ANSWER_WITHIN_S)
    finally:
        if demo.returncode is None:
            demo.kill()
            demo.wait(ANSWER_WITHIN_S)
    assert demo.returncode == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines() == ["agentx demo: FAILED: interrupted by Ctrl-C before the verdict"]


def test_the_buyer_example_with_a_mistyped_key_path_fails_in_one_line(tmp_path):
    url = f"nats://127.0.0.1:{closed_port()}"
    line = fails_in_one_line(
        [sys.executable, str(EXAMPLES / "buyer.py"), "--url", url, "--key", "buyer.sed"],
        cwd=tmp_path,
    )
    assert line.startswith("buyer: cannot read seed file")


def test_the_buyer_example_to_a_port_where_nothing_listens_fails_in_one_line(tmp_path):
    url = f"nats://127.0.0.1:{closed_port()}"
    key = seed(tmp_path, "buyer.seed")
    line = fails_in_one_line(
        [sys.executable, str(EXAMPLES / "buyer.py"), "--url", url, "--key", str(key)],
        cwd=tmp_path,
    )
    assert line.startswith("buyer: cannot connect to NATS at " + url)


def test_the_buyer_example_without_credits_fails_in_one_line(tmp_path):
    """A real exchange (``agentx up``) and provider; the buyer was never funded."""
    data_dir = tmp_path / "agentx"
    up = subprocess.Popen(
        [*AGENTX, "up", "--no-portal", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    address = ["--address-file", str(data_dir / "exchange.json")]
    provider: subprocess.Popen[str] | None = None
    try:
        wait_for_line(up, "running")
        provider = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "provider.py"), *address,
             "--key", str(seed(tmp_path, "provider.seed"))],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        wait_for_line(provider, "provider ")
        line = fails_in_one_line(
            [sys.executable, str(EXAMPLES / "buyer.py"), *address,
             "--key", str(seed(tmp_path, "buyer.seed"))],
            cwd=tmp_path,
        )  # fmt: skip
    finally:
        for process in (provider, up):
            if process is not None and process.returncode is None:
                process.terminate()
                process.wait(STARTUP_WITHIN_S)
    assert line.startswith("buyer: "), line
    assert "insufficient" in line.lower() or "funds" in line.lower(), line


def wait_for_line(process: subprocess.Popen[str], prefix: str) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_WITHIN_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"exited with {process.wait(STARTUP_WITHIN_S)} before {prefix!r}"
        if line.startswith(prefix):
            return
    raise AssertionError(f"no line starting {prefix!r}")
