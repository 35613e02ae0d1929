"""Every limit and default of the broker package, named in one place.

The assertions at the bottom state how the limits relate; breaking one is a
programmer error caught at import time, not at three in the morning.
"""

from __future__ import annotations

from typing import Final

from agent_client import limits as protocol_limits

KIBIBYTE: Final = 1024
MEBIBYTE: Final = 1024 * KIBIBYTE
GIBIBYTE: Final = 1024 * MEBIBYTE

# How long `start()` waits for /healthz before it kills the process. A cold
# start with JetStream takes well under a second; the slack covers slow CI
# disks recovering a large store.
STARTUP_TIMEOUT_S_DEFAULT: Final = 15.0
# How long `stop()` waits after SIGTERM before it sends SIGKILL. JetStream
# flushes its store on SIGTERM, which is worth waiting for.
SHUTDOWN_TIMEOUT_S_DEFAULT: Final = 10.0
# Upper bound for either configured timeout: beyond this, a hung server is
# more likely than a slow one.
LIFECYCLE_TIMEOUT_S_MAX: Final = 600.0
# SIGKILL cannot be ignored, so this only covers a process stuck in the
# kernel (an unresponsive disk); we give up and report rather than hang.
KILL_WAIT_TIMEOUT_S: Final = 5.0

# A nats-server left running by an earlier run (see server.py,
# _stop_orphaned_server) is not our child, so we cannot wait() for it; we
# poll its pidfd for its exit, within the same SIGTERM and SIGKILL waits as
# our own server.
ORPHAN_EXIT_POLL_INTERVAL_S: Final = 0.02
# Linux never hands out a pid above 2**22 (PID_MAX_LIMIT); a pid file naming
# a larger number is not one nats-server wrote.
PROCESS_ID_MAX: Final = 4_194_304
# nats-server writes the decimal pid and nothing else.
PID_FILE_BYTES_MAX: Final = 64
# The longest path Linux accepts (PATH_MAX, its terminating NUL included).
PATH_BYTES_MAX: Final = 4 * KIBIBYTE
# /proc/<pid>/cmdline of our nats-server is its binary path, "--config" and
# the config path, each ended by a NUL. A longer one is not ours, so reading
# this much is enough to tell.
COMMAND_LINE_BYTES_MAX: Final = 3 * PATH_BYTES_MAX

# Readiness is polled: the ports file, then GET /healthz on the monitor port.
READINESS_POLL_INTERVAL_S: Final = 0.02
HEALTH_PROBE_TIMEOUT_S: Final = 1.0
HEALTH_RESPONSE_BYTES_MAX: Final = 4 * KIBIBYTE
PORTS_FILE_BYTES_MAX: Final = 64 * KIBIBYTE
# A monitor endpoint's JSON (/jsz, /routez without details) is a few KiB.
MONITOR_RESPONSE_BYTES_MAX: Final = 256 * KIBIBYTE

# A local cluster (broker/nats_cluster.py): JetStream keeps at most five
# replicas, so more nodes would add nothing a stream could use. Forming it
# takes each node's start plus a meta leader election (a few seconds).
CLUSTER_NODES_MAX: Final = 5
CLUSTER_FORMING_TIMEOUT_S_DEFAULT: Final = 30.0
CLUSTER_POLL_INTERVAL_S: Final = 0.1

# nats-server's own default is 1 MiB; larger payloads belong in an object
# store with a reference on the wire.
MAX_PAYLOAD_BYTES_DEFAULT: Final = 1 * MEBIBYTE
# nats-server refuses a max_payload above max_pending, which is 64 MiB unless
# configured otherwise; we do not raise max_pending.
MAX_PAYLOAD_BYTES_CEILING: Final = 64 * MEBIBYTE

# Without these, JetStream claims 75 % of RAM and of the free disk space: too
# greedy for a laptop that also runs the exchange and a browser.
JETSTREAM_MEMORY_STORE_BYTES_DEFAULT: Final = 256 * MEBIBYTE
JETSTREAM_FILE_STORE_BYTES_DEFAULT: Final = 8 * GIBIBYTE

# How much of the server log a start error carries.
LOG_TAIL_LINES_MAX: Final = 30
LOG_TAIL_BYTES_MAX: Final = 16 * KIBIBYTE

PORT_MAX: Final = 65_535

# Per-agent admission (broker/admission.py), for every signed-request
# service (the exchange's and the portal's). One agent may send this many
# requests a second, with a burst: far more than a busy provider delivering
# a thousand contracts a second needs, far less than a worker can answer.
AGENT_REQUESTS_PER_S: Final = 1_000.0
AGENT_REQUEST_BURST: Final = 2_000
# Requests of one agent being answered at once: a quarter of an exchange
# worker's 256 (exchange/limits.py REQUEST_CONCURRENCY_MAX).
AGENT_REQUESTS_IN_FLIGHT_MAX: Final = 64
# The Python client keeps well within it, so a busy honest agent is never a flood.
assert AGENT_REQUESTS_IN_FLIGHT_MAX >= 2 * protocol_limits.REQUESTS_IN_FLIGHT_MAX
# Requests that fail the receiver's checks (malformed, forged, replayed): an
# honest client sends almost none, so a small budget; spent, every request
# of that agent is refused before decoding until it recovers.
AGENT_PROTOCOL_ERRORS_PER_S: Final = 5.0
AGENT_PROTOCOL_ERROR_BURST: Final = 20
# rate_limited answers per agent (each costs a signature); past them a
# refused request is dropped unanswered.
AGENT_REFUSAL_ANSWERS_PER_S: Final = 5.0
AGENT_REFUSAL_ANSWER_BURST: Final = 5
# Requests of one agent dropped unanswered (it went on past its refusals)
# that make it a flood: the broker disconnects it and refuses its key for a
# minute. An honest client that backs off on rate_limited never gets near.
AGENT_DROPS_BEFORE_EVICTION: Final = 50
# Agents whose admission state a worker remembers (about 300 B each).
AGENTS_TRACKED_MAX: Final = 100_000
# The auth callout. A server's authorization request or a user JWT is a few
# hundred bytes; anything near this bound is not one.
JWT_BYTES_MAX: Final = 16 * KIBIBYTE
# Requests waiting for the callout service at once; nats-server itself gives
# up on one after its auth timeout (the client is then refused), so a longer
# queue would only hold answers nobody waits for.
AUTH_REQUEST_PENDING_MAX: Final = 4_096
AUTH_CALLOUT_CONNECT_TIMEOUT_S: Final = 5.0
AUTH_CALLOUT_DRAIN_TIMEOUT_S: Final = 5
# Subscriptions one connection may hold (server-wide: with the auth callout
# in config mode, nats-server applies a user JWT's permissions but not its
# limits): an agent's reply inboxes, one per capability it serves, its
# negotiation and notice subjects; an exchange worker's endpoints.
SUBSCRIPTIONS_PER_CONNECTION_MAX: Final = 1_000
# Evicting a flooding agent (broker/evictions.py): its key is refused this
# long; the connections it had are remembered to be kicked, per agent and
# for this many agents; suspensions remembered; one kick's answer.
AGENT_SUSPENSION_S: Final = 60
CONNECTIONS_TRACKED_PER_AGENT_MAX: Final = 8
CONNECTIONS_TRACKED_AGENTS_MAX: Final = 100_000
SUSPENDED_AGENTS_MAX: Final = 100_000
KICK_TIMEOUT_S: Final = 2.0

assert 0 < READINESS_POLL_INTERVAL_S < HEALTH_PROBE_TIMEOUT_S < STARTUP_TIMEOUT_S_DEFAULT
assert STARTUP_TIMEOUT_S_DEFAULT <= LIFECYCLE_TIMEOUT_S_MAX
assert 0 < SHUTDOWN_TIMEOUT_S_DEFAULT <= LIFECYCLE_TIMEOUT_S_MAX
assert 0 < MAX_PAYLOAD_BYTES_DEFAULT <= MAX_PAYLOAD_BYTES_CEILING
# The exchange's largest signed reply must fit what the server carries.
assert protocol_limits.REPLY_BYTES_MAX <= MAX_PAYLOAD_BYTES_DEFAULT
# A stream must be able to hold at least one maximal message in memory.
assert MAX_PAYLOAD_BYTES_CEILING <= JETSTREAM_MEMORY_STORE_BYTES_DEFAULT
assert JETSTREAM_MEMORY_STORE_BYTES_DEFAULT <= JETSTREAM_FILE_STORE_BYTES_DEFAULT
assert LOG_TAIL_LINES_MAX > 0
assert HEALTH_RESPONSE_BYTES_MAX <= MONITOR_RESPONSE_BYTES_MAX
assert 0 < CLUSTER_POLL_INTERVAL_S < CLUSTER_FORMING_TIMEOUT_S_DEFAULT <= LIFECYCLE_TIMEOUT_S_MAX
# An orphan gets the same two waits as our own server, polled several times each.
assert 0 < ORPHAN_EXIT_POLL_INTERVAL_S < KILL_WAIT_TIMEOUT_S <= SHUTDOWN_TIMEOUT_S_DEFAULT
assert len(str(PROCESS_ID_MAX)) < PID_FILE_BYTES_MAX
assert 2 * PATH_BYTES_MAX + len("--config") + 1 <= COMMAND_LINE_BYTES_MAX
assert LOG_TAIL_BYTES_MAX > 0
assert 0 < JWT_BYTES_MAX <= MAX_PAYLOAD_BYTES_DEFAULT
assert AUTH_REQUEST_PENDING_MAX > 0 and SUBSCRIPTIONS_PER_CONNECTION_MAX > 0
assert 0 < KICK_TIMEOUT_S < AGENT_SUSPENSION_S
assert AGENT_PROTOCOL_ERROR_BURST <= AGENT_REQUEST_BURST
