"""Limits and default windows of the exchange service, in one place."""

from typing import Final

from agent_client import limits as protocol_limits

# Requests one worker handles at once; beyond this, NATS holds them in the
# subscription's bounded pending queue.
REQUEST_CONCURRENCY_MAX: Final = 256
# Notices wait in JetStream for agents that are offline, so they must stay
# verifiable as long as the stream keeps them.
NOTICE_LIFETIME_S: Final = protocol_limits.NOTICE_LIFETIME_MAX_S
# Listings returned per search page and how deep a search may page.
SEARCH_PAGE_SIZE_MAX: Final = protocol_limits.SEARCH_PAGE_SIZE_MAX
SEARCH_OFFSET_MAX: Final = protocol_limits.SEARCH_OFFSET_MAX
SCHEMA_BYTES_MAX: Final = protocol_limits.SCHEMA_BYTES_MAX
# Words of a search text that reach the full-text index; more are ignored, so
# one request cannot build an arbitrarily long match expression.
SEARCH_TERMS_MAX: Final = 8
# A search starts from a filter matching fewer listings than this (fetching
# and sorting them all), or else walks its sort order; see exchange.search.
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
OUTBOX_RELAY_DELAY_MS: Final = 2_000
OUTBOX_BATCH_MAX: Final = 500
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
