"""Every limit the wire protocol depends on, in one place.

Both sides of the protocol read these: a client that stays inside them is
never rejected for size or time, and the exchange rejects anything outside
them with a typed error. Their relations are asserted at import time.
"""

from typing import Final

PROTOCOL_VERSION: Final = 1

# Clocks of agents on different machines disagree a little; a signed document
# whose issued-at is further than this from the receiver's clock is refused.
CLOCK_SKEW_MAX_S: Final = 30
# A request to the exchange is short-lived; bounding its lifetime bounds the
# replay cache, which must remember a nonce for as long as the document lives.
REQUEST_LIFETIME_MAX_S: Final = 60
# Quotes are evidence a buyer may accept a while after receiving them.
QUOTE_VALIDITY_MAX_S: Final = 3600
QUOTE_VALIDITY_DEFAULT_S: Final = 60
# Notices wait in the exchange's JetStream stream for offline agents; they
# stay verifiable (and the stream keeps them) this long.
NOTICE_LIFETIME_MAX_S: Final = 8 * 24 * 3600
# Negotiation: after the first quote, the buyer may send at most this many
# counter-offers to a provider, each answered by one new quote (round 1, 2,
# ...). The bound keeps the chatter finite and the evidence small: a
# contract on a round-n quote carries the 2n documents before it.
NEGOTIATION_ROUNDS_MAX: Final = 5
# A counter-offer is a request to the provider, so it is short-lived and
# nonce-checked like any request; the provider answers at once.
COUNTER_VALIDITY_DEFAULT_S: Final = 10
COUNTER_REPLY_TIMEOUT_DEFAULT_S: Final = 5.0
# A decline only needs to reach the buyer.
DECLINE_LIFETIME_S: Final = 10
# Negotiations a provider remembers at once (its latest offer in each); an
# entry is dropped when that offer expires.
NEGOTIATIONS_OPEN_MAX: Final = 10_000
# An exchange-signed contract record stays verifiable evidence this long.
CONTRACT_RECORD_LIFETIME_S: Final = 90 * 24 * 3600
# The delivery deadline a provider may promise, measured from now.
DELIVERY_DEADLINE_MAX_S: Final = 7 * 24 * 3600

MESSAGE_BYTES_MAX: Final = 512 * 1024
TASK_BYTES_MAX: Final = 64 * 1024
RESULT_BYTES_MAX: Final = 256 * 1024
# Larger results go to the JetStream object store, up to this size.
RESULT_OBJECT_BYTES_MAX: Final = 16 * 1024 * 1024
RESULT_BUCKET: Final = "agentx-results"
TEXT_LENGTH_MAX: Final = 1024
CAPABILITY_LENGTH_MAX: Final = 64
SCHEMA_BYTES_MAX: Final = 16 * 1024
NONCE_BYTES: Final = 16

# One deal's price ceiling in millicredits: a billion credits. It sits far
# below the ledger's own per-transfer limit so fees can never overflow it.
PRICE_MILLICREDITS_MAX: Final = 10**12
MINT_MILLICREDITS_MAX: Final = 10**12

REQUEST_TIMEOUT_DEFAULT_S: Final = 5.0
REQUEST_TIMEOUT_MAX_S: Final = 60.0
QUOTE_COLLECTION_TIMEOUT_DEFAULT_S: Final = 1.0
QUOTES_PER_RFQ_MAX: Final = 100
SEARCH_PAGE_SIZE_MAX: Final = 100
SEARCH_OFFSET_MAX: Final = 10_000
TRANSACTIONS_PAGE_SIZE_MAX: Final = 200

# The catalog: a listing's tags, the filters of one search, and the pages of a
# listing's history and of a provider's reputation.
TAGS_PER_LISTING_MAX: Final = 8
TAG_LENGTH_MAX: Final = 32
SEARCH_TEXT_LENGTH_MAX: Final = 128
SEARCH_TAGS_MAX: Final = 4
LISTING_HISTORY_PAGE_SIZE_MAX: Final = 100
REPUTATION_CAPABILITIES_MAX: Final = 100
RATINGS_PAGE_SIZE_MAX: Final = 50
# A buyer rates a released contract once, with 1 to 5 stars and a comment.
RATING_STARS_MIN: Final = 1
RATING_STARS_MAX: Final = 5
RATING_COMMENT_LENGTH_MAX: Final = 500
# A direct transfer between agents moves at most what one deal may cost.
TRANSFER_MILLICREDITS_MAX: Final = PRICE_MILLICREDITS_MAX
TRANSFER_MEMO_LENGTH_MAX: Final = 256

# Replay protection remembers each (issuer, nonce) until the document
# expires; the cache refuses new entries rather than grow without bound.
REPLAY_CACHE_ENTRIES_MAX: Final = 1_000_000
VERIFY_KEY_CACHE_ENTRIES_MAX: Final = 100_000
# Handlers an agent runs at once (RFQs answered, tasks executed).
AGENT_HANDLER_CONCURRENCY_MAX: Final = 64

assert TASK_BYTES_MAX < MESSAGE_BYTES_MAX
assert RESULT_BYTES_MAX * 4 // 3 + TEXT_LENGTH_MAX < MESSAGE_BYTES_MAX  # base64 of a result fits
assert QUOTE_VALIDITY_DEFAULT_S <= QUOTE_VALIDITY_MAX_S
assert REQUEST_TIMEOUT_DEFAULT_S <= REQUEST_TIMEOUT_MAX_S <= REQUEST_LIFETIME_MAX_S
assert CLOCK_SKEW_MAX_S < REQUEST_LIFETIME_MAX_S
assert DELIVERY_DEADLINE_MAX_S < CONTRACT_RECORD_LIFETIME_S
assert SEARCH_TAGS_MAX <= TAGS_PER_LISTING_MAX
assert 1 <= RATING_STARS_MIN < RATING_STARS_MAX
assert RATING_COMMENT_LENGTH_MAX <= TEXT_LENGTH_MAX
assert TRANSFER_MEMO_LENGTH_MAX <= TEXT_LENGTH_MAX
assert NOTICE_LIFETIME_MAX_S < CONTRACT_RECORD_LIFETIME_S
assert 1 <= NEGOTIATION_ROUNDS_MAX <= 20
assert COUNTER_REPLY_TIMEOUT_DEFAULT_S < COUNTER_VALIDITY_DEFAULT_S <= REQUEST_LIFETIME_MAX_S
assert DECLINE_LIFETIME_S <= REQUEST_LIFETIME_MAX_S
