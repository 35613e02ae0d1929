"""Limits and default windows of the exchange service, in one place."""

from typing import Final

from agent_client import limits as protocol_limits
from broker import limits as broker_limits

# Requests one worker handles at once; beyond this, NATS holds them in the
# subscription's bounded pending queue.
REQUEST_CONCURRENCY_MAX: Final = 256
# The info request's body is the requester's fresh nonce, nothing more: an
# empty one would make a reply anyone could replay to anyone.
INFO_REQUEST_BYTES_MIN: Final = 16
INFO_REQUEST_BYTES_MAX: Final = 128


# Notices wait in the outbox for agents that are offline, so they must stay
# verifiable as long as the outbox keeps them.
NOTICE_LIFETIME_S: Final = protocol_limits.NOTICE_LIFETIME_MAX_S
# Listings returned per search page and how deep a search may page.
SEARCH_PAGE_SIZE_MAX: Final = protocol_limits.SEARCH_PAGE_SIZE_MAX
SEARCH_OFFSET_MAX: Final = protocol_limits.SEARCH_OFFSET_MAX
SCHEMA_BYTES_MAX: Final = protocol_limits.SCHEMA_BYTES_MAX
# Words of a search text that reach the full-text index; more are ignored, so
# one request cannot build an arbitrarily long match expression.
SEARCH_TERMS_MAX: Final = 8
# A search starts from a filter matching fewer listings than this (fetching
# and sorting them all), or else walks its sort order; see exchange.domain.search_plans.
SEARCH_CANDIDATES_MAX: Final = 2_000
# Full-text matches are counted this far: enough to tell words most listings
# contain (which a search tests listing by listing, on pages ending within
# SEARCH_PROBE_PAGE_END_MAX) in a catalog of up to twice this many listings.
SEARCH_TEXT_COUNT_MAX: Final = 50_000
SEARCH_PROBE_PAGE_END_MAX: Final = 50
# A walk tests a tag with a primary-key probe, far cheaper than reading a
# listing, so a search starts from a tag only below this many matches.
SEARCH_TAG_CANDIDATES_MAX: Final = 500

assert SEARCH_TAG_CANDIDATES_MAX <= SEARCH_CANDIDATES_MAX <= SEARCH_TEXT_COUNT_MAX

# A buyer silent this long after a delivery has accepted it (auto-release).
REVIEW_WINDOW_DEFAULT_S: Final = 24 * 3600
# A dispute no operator resolved within this window ends with the default
# outcome: the price split evenly (documented in docs/PROTOCOL.md).
DISPUTE_WINDOW_DEFAULT_S: Final = 7 * 24 * 3600
DISPUTE_DEFAULT_PROVIDER_SHARE_BPS: Final = 5_000

# The sweeper and the outbox relay: how often they wake, how much they take.
SWEEP_INTERVAL_S: Final = 1.0
SWEEP_BATCH_MAX: Final = 200
# A notice stays in the outbox until its recipient acknowledges it; one not
# acknowledged this long after it was sent is sent again, and then after
# waits as long as its age, up to NOTICE_RESEND_MAX_S (an agent that stays
# offline costs ever fewer sends; its notices.subscribe gets it everything).
NOTICE_ACK_WAIT_S: Final = 30.0
NOTICE_RESEND_MAX_S: Final = 1_800.0
# notices.subscribe sends again what the agent has not acknowledged, a page
# at a time, at most NOTICES_PER_AGENT_MAX in all.
NOTICE_CATCH_UP_PAGE: Final = 256
NOTICES_PER_AGENT_MAX: Final = 100_000
# Catch-ups one worker runs at once; past that an agent's missed notices
# come with the relay's next sends instead.
NOTICE_CATCH_UPS_MAX: Final = 64
# Notices past their lifetime (no receiver accepts them) leave the outbox,
# this many per pass.
OUTBOX_PRUNE_BATCH_MAX: Final = 5_000
OUTBOX_PRUNE_INTERVAL_S: Final = 60.0
# How often each worker checks that its streams exist (two JetStream look-ups).
STREAMS_CHECK_INTERVAL_S: Final = 10.0
OUTBOX_BATCH_MAX: Final = 500
# Several workers share one database: each sweep and the relay run on the one
# worker holding that job's lease (exchange/use_cases/timer_leases.py). The
# holder renews it at its first pass after half of it has run, so the lease
# outlives several passes and lapses this many sweep intervals after its
# holder died or stalled.
TIMER_LEASE_TTL_INTERVALS: Final = 5
# Each loop sleeps its interval stretched or shrunk by up to this fraction, so
# workers (and one worker's loops) do not all wake and query at one instant.
TIMER_JITTER_FRACTION: Final = 0.2
# The outbox relay backs off while notices cannot be sent: the delay starts
# here, doubles on each failed pass and stays at the maximum until one succeeds.
OUTBOX_RELAY_BACKOFF_MIN_S: Final = 1.0
OUTBOX_RELAY_BACKOFF_MAX_S: Final = 30.0

# A holder renews once half the lease has run; at least two passes (each at most
# an interval and its jitter away) must fit in the other half, or a pass that
# runs late would let workers take the job from each other.
assert TIMER_LEASE_TTL_INTERVALS / 2 >= 2 * (1 + TIMER_JITTER_FRACTION)
assert 0 < TIMER_JITTER_FRACTION < 1
assert 0 < OUTBOX_RELAY_BACKOFF_MIN_S <= OUTBOX_RELAY_BACKOFF_MAX_S
assert 0 < NOTICE_ACK_WAIT_S <= NOTICE_RESEND_MAX_S
# Notices being published after their step's reply went out (bounded, so a
# slow JetStream slows the repliers instead of piling up tasks).
NOTICES_PUBLISHING_MAX: Final = 4_096
CONTRACT_EVENTS_MAX: Final = 200

assert NOTICE_LIFETIME_S >= DISPUTE_WINDOW_DEFAULT_S
assert 0 <= DISPUTE_DEFAULT_PROVIDER_SHARE_BPS <= 10_000

# Group commit (exchange/use_cases/group_commit.py): contract steps applied in
# one transaction, and how many may wait for the writer before new ones are
# refused with ``unavailable``. A group's ledger batch (at most four
# transfers per step) stays far below the wallet's BATCH_SIZE_MAX.
GROUP_JOBS_MAX: Final = 256
GROUP_QUEUE_MAX: Final = 8_192

# Deliveries of stored results (up to 16 MiB each, read into memory to be
# checked) one worker checks at once: at most 64 MiB of results in memory.
STORED_RESULT_DELIVERIES_MAX: Final = 4
# Contracts whose delivery terms (output schema, provider, sealed) a worker
# remembers from their opening, so a delivery needs no read first: at most
# 16 MiB, as a schema is at most 16 KiB (exchange/use_cases/opened_contracts.py).
OPENED_CONTRACTS_KEPT_MAX: Final = 1024

# Checking a result against the provider's output schema (exchange/domain/delivery_checks.py).
# Regular expressions run on RE2 in linear time, but jsonschema's own work can
# still be exponential (a recursive $ref under anyOf), so one check stops at
# this deadline. An honest check of an inline result (RESULT_BYTES_MAX) takes
# about a tenth of a second, so the budget leaves room for stored results of a
# few MiB while a pathological schema holds a thread for two seconds at most.
SCHEMA_CHECK_TIME_BUDGET_S: Final = 2.0
# Checks run in threads off the event loop, at most this many at once, so a
# flood of deliveries waits here instead of taking every thread of the
# default executor (min(32, cores + 4) threads) that other work needs.
SCHEMA_CHECKS_RUNNING_MAX: Final = 2
# The other bounds of a check (depth, caches, RE2's memory, how much of a
# mismatch is reported) live with the checker, in agent_client/limits.py; the
# depth is restated here because advertising a listing refuses deeper schemas.
SCHEMA_DEPTH_MAX: Final = protocol_limits.SCHEMA_DEPTH_MAX

assert SCHEMA_CHECKS_RUNNING_MAX <= REQUEST_CONCURRENCY_MAX

# One agent holds at most a quarter of a worker (broker/limits.py).
assert broker_limits.AGENT_REQUESTS_IN_FLIGHT_MAX <= REQUEST_CONCURRENCY_MAX // 4

# Spending controls (exchange/use_cases/spending.py): an approval is asked for
# a day at most, and "spent today" is read from at most this many ledger
# transfers of the buyer (a buyer past it is refused, never let through).
APPROVAL_LIFETIME_MAX_S: Final = 24 * 3600
SPENDING_SCAN_PAGE_SIZE: Final = 1000
SPENDING_SCAN_PAGES_MAX: Final = 20

# A provider's analytics read at most this many of its newest contracts (and
# as many ratings and metered sessions) per request; the answer says when
# the window held more.
ANALYTICS_ROWS_MAX: Final = 20_000
