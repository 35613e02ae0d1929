"""How the ``agentx`` programs log: plain lines, or one JSON object per line.

JSON lines (``--log-json``) are for log shippers: each record is one object
with ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``; a record logged with an exception adds ``exception`` (the
type and message, on the same line), and its traceback only when debugging
(``-v``), since a traceback per reconnect attempt drowns the log.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from typing import Final

__all__ = ["JsonLineFormatter", "configure_logging"]

PLAIN_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# One record's message, bounded: a log line is not a data dump.
MESSAGE_CHARS_MAX: Final = 4_000


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__()
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "ts": _utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage()[:MESSAGE_CHARS_MAX],
        }
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            line["exception"] = f"{type(error).__name__}: {error}"[:MESSAGE_CHARS_MAX]
            if self._tracebacks:
                line["traceback"] = "".join(traceback.format_exception(error))
        # json.dumps escapes newlines inside strings: the record stays one line.
        return json.dumps(line, ensure_ascii=False)


def configure_logging(*, verbose: bool, json_lines: bool) -> None:
    """Log to stderr: debug with ``verbose`` (else warnings and worse), as JSON lines or text."""
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonLineFormatter(tracebacks=verbose))
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])


def _utc_timestamp(created_s: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created_s))
    return f"{whole}.{int(created_s % 1 * 1000):03d}Z"
