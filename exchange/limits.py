"""Limits of the exchange service, in one place."""

from typing import Final

from agent_client import limits as protocol_limits

# Requests one worker handles at once; beyond this, NATS holds them in the
# subscription's bounded pending queue.
REQUEST_CONCURRENCY_MAX: Final = 256
# Notices are signed documents on core NATS; they must outlive delivery delays.
NOTICE_LIFETIME_S: Final = 60
# Listings returned per search page and how deep a search may page.
SEARCH_PAGE_SIZE_MAX: Final = protocol_limits.SEARCH_PAGE_SIZE_MAX
SEARCH_OFFSET_MAX: Final = protocol_limits.SEARCH_OFFSET_MAX
SCHEMA_BYTES_MAX: Final = protocol_limits.SCHEMA_BYTES_MAX

assert NOTICE_LIFETIME_S <= protocol_limits.REQUEST_LIFETIME_MAX_S
