"""Runs ``localstripe`` on a loopback port and prints the port (a subprocess entry point).

localstripe's own ``start()`` listens on every interface and keeps its state
in a fixed file under /tmp shared by every instance; this runner listens on
127.0.0.1 only (port 0 picks a free one) and keeps no state on disk, so
several instances (tests, stacks) never see each other's objects.

    python -m human_portal.localstripe_runner [--port N]
"""

from __future__ import annotations

import argparse
import socket

from aiohttp import web
from localstripe import resources
from localstripe.server import app

LISTEN_BACKLOG = 128


def _no_disk(_store: object) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(prog="localstripe_runner")
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    resources.Store.dump_to_disk = _no_disk
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", arguments.port))
    listener.listen(LISTEN_BACKLOG)
    # The parent reads this line to learn the port; connections queue meanwhile.
    print(f"LISTENING {listener.getsockname()[1]}", flush=True)
    web.run_app(app, sock=listener, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
