"""``--log-json``: every log record is one JSON object on one line.

A real ``agentx worker`` process is pointed at a port where no NATS listens:
each failed connection attempt is logged (one line, no traceback), and each
of those lines parses as JSON with the promised keys. The formatter keeps an
exception's type and message and adds its traceback only when asked (``-v``).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys

from agent_client import AgentKeys
from exchange.entrypoints.log_lines import JsonLineFormatter

KEYS = {"ts", "level", "logger", "message"}


def test_a_worker_that_cannot_reach_nats_logs_json_lines(tmp_path):
    key_path = tmp_path / "exchange.seed"
    AgentKeys.generate().save(key_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "exchange.entrypoints.cli", "--log-json", "worker"),
            *("--migrate", "--nats-url", f"nats://127.0.0.1:{port}"),
            *("--database-url", f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"),
            *("--key", str(key_path), "--operator", AgentKeys.generate().agent_id),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1
    lines = finished.stderr.splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert logged, finished.stderr
    assert all(record.keys() >= KEYS for record in logged)
    assert logged[0]["logger"] == "agent_client.transport"
    assert "Traceback" not in finished.stderr
    # The rest is the command's own one-line verdict.
    assert [line for line in lines if not line.startswith("{")] == [lines[-1]]
    assert lines[-1].startswith("agentx: cannot connect to NATS")


def record_with_exception() -> logging.LogRecord:
    try:
        raise ConnectionResetError("the peer went away\nmid-line")
    except ConnectionResetError:
        return logging.LogRecord(
            "agentx.test", logging.WARNING, __file__, 1, "lost %s", ("it",), sys.exc_info()
        )


def test_an_exception_is_its_type_and_message_and_a_traceback_only_when_verbose():
    quiet = JsonLineFormatter(tracebacks=False).format(record_with_exception())
    assert "\n" not in quiet
    parsed = json.loads(quiet)
    assert parsed["message"] == "lost it"
    assert parsed["exception"] == "ConnectionResetError: the peer went away\nmid-line"
    assert "traceback" not in parsed

    verbose = JsonLineFormatter(tracebacks=True).format(record_with_exception())
    assert "\n" not in verbose
    assert "Traceback" in json.loads(verbose)["traceback"]


def test_a_handler_with_the_formatter_writes_one_object_per_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLineFormatter(tracebacks=False))
    logger = logging.getLogger("agentx.test.lines")
    logger.addHandler(handler)
    try:
        logger.warning("first")
        logger.warning("second\nwith a newline")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["first", "second\nwith a newline"]
