"""The broker: running, securing and configuring nats-server for Agent Exchange.

The embedded server an operator runs on a laptop and the test suite runs per
session (``nats_process``), and a local cluster of them (``nats_cluster``);
connection authentication through the auth callout, bound to each agent's
key, and the permissions of each role
(``auth_callout``, ``permissions``, ``nats_jwt``); the JetStream streams the
exchange relies on (``streams``).
"""

from broker._binary import BINARY_ENVIRONMENT_VARIABLE, locate_nats_server_binary
from broker.auth_callout import AuthCalloutService, CalloutKeys
from broker.errors import (
    AuthCalloutUnavailable,
    BrokerError,
    JwtInvalid,
    NatsClusterNotFormed,
    NatsServerConfigInvalid,
    NatsServerDataDirInUse,
    NatsServerExited,
    NatsServerNotFound,
    NatsServerStartError,
    NatsServerStartTimeout,
    NatsServerStateError,
    NatsServerStopTimeout,
)
from broker.nats_cluster import NatsCluster, NatsClusterConfig
from broker.nats_process import (
    ClusterMembership,
    EmbeddedNatsServer,
    NatsServerConfig,
    ServerState,
)
from broker.permissions import AccessPolicy, Role

__all__ = [
    "BINARY_ENVIRONMENT_VARIABLE",
    "AccessPolicy",
    "AuthCalloutService",
    "AuthCalloutUnavailable",
    "BrokerError",
    "CalloutKeys",
    "ClusterMembership",
    "EmbeddedNatsServer",
    "JwtInvalid",
    "NatsCluster",
    "NatsClusterConfig",
    "NatsClusterNotFormed",
    "NatsServerConfig",
    "NatsServerConfigInvalid",
    "NatsServerDataDirInUse",
    "NatsServerExited",
    "NatsServerNotFound",
    "NatsServerStartError",
    "NatsServerStartTimeout",
    "NatsServerStateError",
    "NatsServerStopTimeout",
    "Role",
    "ServerState",
    "locate_nats_server_binary",
]
