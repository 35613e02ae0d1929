"""Every limit and default of the broker package, named in one place.

The assertions at the bottom state how the limits relate; breaking one is a
programmer error caught at import time, not at three in the morning.
"""

from __future__ import annotations

from typing import Final

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

# Readiness is polled: the ports file, then GET /healthz on the monitor port.
READINESS_POLL_INTERVAL_S: Final = 0.02
HEALTH_PROBE_TIMEOUT_S: Final = 1.0
HEALTH_RESPONSE_BYTES_MAX: Final = 4 * KIBIBYTE
PORTS_FILE_BYTES_MAX: Final = 64 * KIBIBYTE

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

assert 0 < READINESS_POLL_INTERVAL_S < HEALTH_PROBE_TIMEOUT_S < STARTUP_TIMEOUT_S_DEFAULT
assert STARTUP_TIMEOUT_S_DEFAULT <= LIFECYCLE_TIMEOUT_S_MAX
assert 0 < SHUTDOWN_TIMEOUT_S_DEFAULT <= LIFECYCLE_TIMEOUT_S_MAX
assert 0 < MAX_PAYLOAD_BYTES_DEFAULT <= MAX_PAYLOAD_BYTES_CEILING
# A stream must be able to hold at least one maximal message in memory.
assert MAX_PAYLOAD_BYTES_CEILING <= JETSTREAM_MEMORY_STORE_BYTES_DEFAULT
assert JETSTREAM_MEMORY_STORE_BYTES_DEFAULT <= JETSTREAM_FILE_STORE_BYTES_DEFAULT
assert LOG_TAIL_LINES_MAX > 0
assert LOG_TAIL_BYTES_MAX > 0
