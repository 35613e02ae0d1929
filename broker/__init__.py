"""The broker: running and configuring nats-server for Agent Exchange.

Today this is the embedded server an operator runs on a laptop and the test
suite runs per session. Subjects, JetStream streams and the auth callout
will live here too; they are not built yet.
"""

from broker._binary import BINARY_ENVIRONMENT_VARIABLE, locate_nats_server_binary
from broker.errors import (
    BrokerError,
    NatsServerConfigInvalid,
    NatsServerDataDirInUse,
    NatsServerExited,
    NatsServerNotFound,
    NatsServerStartError,
    NatsServerStartTimeout,
    NatsServerStateError,
    NatsServerStopTimeout,
)
from broker.server import EmbeddedNatsServer, NatsServerConfig, ServerState

__all__ = [
    "BINARY_ENVIRONMENT_VARIABLE",
    "BrokerError",
    "EmbeddedNatsServer",
    "NatsServerConfig",
    "NatsServerConfigInvalid",
    "NatsServerDataDirInUse",
    "NatsServerExited",
    "NatsServerNotFound",
    "NatsServerStartError",
    "NatsServerStartTimeout",
    "NatsServerStateError",
    "NatsServerStopTimeout",
    "ServerState",
    "locate_nats_server_binary",
]
