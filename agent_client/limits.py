"""Every limit the wire protocol depends on, in one place.

Both sides of the protocol read these: a client that stays inside them is
never rejected for size or time, and the exchange rejects anything outside
them with a typed error. Their relations are asserted at import time.
"""

import sys
from typing import Final

PROTOCOL_VERSION: Final = 2

# Clocks of agents on different machines disagree a little; a signed document
# whose issued-at is further than this from the receiver's clock is refused.
CLOCK_SKEW_MAX_S: Final = 30
# A request to the exchange is short-lived; bounding its lifetime bounds the
# replay cache, which must remember a nonce for as long as the document lives.
REQUEST_LIFETIME_MAX_S: Final = 60
# Requests one Agent sends at once; more wait their turn in the client. The
# exchange answers at most 64 of one agent's at once and treats an agent that
# keeps sending past that as a flood (broker/limits.py); half leaves room for
# requests the client gave up on (timed out) that the exchange still works on.
REQUESTS_IN_FLIGHT_MAX: Final = 32
# Quotes are evidence a buyer may accept a while after receiving them.
QUOTE_VALIDITY_MAX_S: Final = 3600
QUOTE_VALIDITY_DEFAULT_S: Final = 60
# Notices wait in the exchange's outbox for offline agents; they stay
# verifiable (and the outbox keeps them) this long.
NOTICE_LIFETIME_MAX_S: Final = 8 * 24 * 3600
# Notice ids in one notices.ack at most.
NOTICE_ACK_IDS_MAX: Final = 256
# A client acknowledges what it handled at most this often, or once it holds
# NOTICE_ACK_BATCH ids: one signed request per batch, not one per notice.
NOTICE_ACK_INTERVAL_S: Final = 1.0
NOTICE_ACK_BATCH: Final = 100
# Ids handled but not yet acknowledged that a client keeps (the exchange
# sends again whatever it never heard of, so past this the oldest are dropped).
NOTICE_ACKS_PENDING_MAX: Final = 10_000
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
# A signed reply of the exchange or the portal may be larger than what an
# agent sends: its body (an evidence bundle with a task and an inline
# result, a page of listings) travels base64-encoded inside the signed
# document. It stays under the 1 MiB every NATS server carries by default.
REPLY_BYTES_MAX: Final = 1024 * 1024 - 16 * 1024
# The largest reply body that, signed and encoded, fits in REPLY_BYTES_MAX.
REPLY_BODY_BYTES_MAX: Final = (REPLY_BYTES_MAX - 4 * 1024) * 3 // 4
TASK_BYTES_MAX: Final = 64 * 1024
RESULT_BYTES_MAX: Final = 256 * 1024
# Larger results are stored by the exchange, up to this size: the provider
# uploads them in chunks (contract.upload) and the buyer reads them back
# (contract.result), one chunk per request.
RESULT_OBJECT_BYTES_MAX: Final = 16 * 1024 * 1024
# Raw bytes of one chunk; every chunk but the last has exactly this many. A
# chunk travels base64url-encoded in a document that the envelope encodes
# again, so it grows to 16/9 of its size on the wire: 128 KiB keeps a signed
# upload, and the signed reply carrying a chunk back, under half of
# MESSAGE_BYTES_MAX, and 16 MiB is exactly 128 chunks.
RESULT_CHUNK_BYTES_MAX: Final = 128 * 1024
RESULT_CHUNKS_MAX: Final = RESULT_OBJECT_BYTES_MAX // RESULT_CHUNK_BYTES_MAX
# A chunk's unpadded base64url text on the wire.
RESULT_CHUNK_TEXT_LENGTH_MAX: Final = (4 * RESULT_CHUNK_BYTES_MAX + 2) // 3
# A client sends a chunk request (upload or read) at most this many times:
# after a timeout or ``unavailable`` it asks again, which is safe because
# storing the same chunk twice stores it once and reading changes nothing.
RESULT_CHUNK_REQUEST_ATTEMPTS_MAX: Final = 3
# Everything a signed request or reply holds besides its free-form payload
# (header, ids, signature, JSON punctuation), with room to spare.
SIGNED_DOCUMENT_OVERHEAD_BYTES_MAX: Final = 2 * 1024
TEXT_LENGTH_MAX: Final = 1024
CAPABILITY_LENGTH_MAX: Final = 64
SCHEMA_BYTES_MAX: Final = 16 * 1024
NONCE_BYTES: Final = 16

# One deal's price ceiling in millicredits: a billion credits. It sits far
# below the ledger's own per-transfer limit so fees can never overflow it.
PRICE_MILLICREDITS_MAX: Final = 10**12
MINT_MILLICREDITS_MAX: Final = 10**12

# A signed reply of the exchange or the portal answers one request; it need
# not stay verifiable longer than a request lives.
REPLY_LIFETIME_S: Final = 60

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

# Nesting depth of any JSON decoded from an untrusted sender, checked before
# the decoder runs: msgspec recurses once per level and fails with a
# RecursionError near the interpreter's limit (1000 by default), so the limit
# sits far below it. The deepest legitimate document uses three levels of its
# own (the document, its history list, an envelope in it); its free-form
# fields (a task, a result, an advertised input or output schema) start at
# level 2. That leaves them 31 levels: a JSON Schema spends two per nested
# object ("properties", then the property's schema), so 32 allows objects
# nested 15 deep, far more than real tasks and schemas use.
JSON_DEPTH_MAX: Final = 32
# A reply carries agents' values (a task, a result, a listing's schema) at
# most three levels deeper than the request that brought them (the reply
# document, its body, the contract or the page of listings): replies may
# nest that much more, or a deep but valid task would make its own
# contract unreadable.
REPLY_JSON_DEPTH_MAX: Final = JSON_DEPTH_MAX + 4

# Replay protection remembers each (issuer, nonce) until the document
# expires, as a keyed digest of the pair. Seven bytes make the digest an int
# of two 30-bit digits, a 32-byte object; eight would need a third digit and
# take 48 bytes once the allocator rounds up.
REPLAY_CACHE_DIGEST_BYTES: Final = 7
# An entry costs the int (32 B), its set slot (16 B at a load between 30 %
# and 60 %, so 27 to 54 B) and its place in its expiry second's list (8 B and
# some spare): at most 93 B measured with tracemalloc from 50,000 entries up
# (tests/agent_client/test_replay_guard.py).
REPLAY_CACHE_BYTES_PER_ENTRY_MAX: Final = 100
# The cache refuses new entries rather than grow past this per process.
REPLAY_CACHE_BYTES_MAX: Final = 96 * 1024 * 1024
REPLAY_CACHE_ENTRIES_MAX: Final = 1_000_000
VERIFY_KEY_CACHE_ENTRIES_MAX: Final = 100_000
# Handlers an agent runs at once (RFQs answered, tasks executed).
AGENT_HANDLER_CONCURRENCY_MAX: Final = 64


def _base64_length(byte_count: int, /) -> int:
    """Characters of ``byte_count`` bytes in base64 (padded: an upper bound)."""
    return -(-byte_count // 3) * 4


assert TASK_BYTES_MAX < MESSAGE_BYTES_MAX < REPLY_BYTES_MAX
assert RESULT_BYTES_MAX * 4 // 3 + TEXT_LENGTH_MAX < MESSAGE_BYTES_MAX  # base64 of a result fits
assert RESULT_BYTES_MAX < RESULT_OBJECT_BYTES_MAX
assert RESULT_CHUNKS_MAX * RESULT_CHUNK_BYTES_MAX == RESULT_OBJECT_BYTES_MAX
assert _base64_length(RESULT_CHUNK_BYTES_MAX) >= RESULT_CHUNK_TEXT_LENGTH_MAX
assert RESULT_CHUNK_REQUEST_ATTEMPTS_MAX >= 1
# A chunk, base64url in its document, base64url again in the envelope, fits
# twice over in one message (the same holds for the reply that carries it).
assert (
    _base64_length(_base64_length(RESULT_CHUNK_BYTES_MAX) + SIGNED_DOCUMENT_OVERHEAD_BYTES_MAX)
    + SIGNED_DOCUMENT_OVERHEAD_BYTES_MAX
) * 2 <= MESSAGE_BYTES_MAX
assert QUOTE_VALIDITY_DEFAULT_S <= QUOTE_VALIDITY_MAX_S
assert REQUEST_TIMEOUT_DEFAULT_S <= REQUEST_TIMEOUT_MAX_S <= REQUEST_LIFETIME_MAX_S
assert CLOCK_SKEW_MAX_S < REPLY_LIFETIME_S <= REQUEST_LIFETIME_MAX_S
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
assert sys.getrecursionlimit() >= REPLY_JSON_DEPTH_MAX * 10
assert 1 <= REPLAY_CACHE_DIGEST_BYTES * 8 <= 60  # two 30-bit digits
assert REPLAY_CACHE_ENTRIES_MAX * REPLAY_CACHE_BYTES_PER_ENTRY_MAX <= REPLAY_CACHE_BYTES_MAX

# --- JSON checked against another party's JSON Schema (agent_client/schema_checks.py) --

# A schema document nests at most this deep (objects and arrays), checked when
# a listing is advertised and again before a check: jsonschema recurses once
# per level.
SCHEMA_DEPTH_MAX: Final = 32
# Compiled validators and RE2 patterns kept for reuse, and the memory RE2 may
# use for one pattern (its compiled program and its lazy DFA, which falls back
# to slower linear-time matching when full), so the caches stay bounded.
SCHEMA_VALIDATORS_CACHED_MAX: Final = 256
SCHEMA_PATTERNS_CACHED_MAX: Final = 256
SCHEMA_PATTERN_MEMORY_BYTES_MAX: Final = 1024 * 1024
# A check names this many failing paths by default, each reason cut to this
# length, so its message about a large instance stays short; a pattern, or a
# string that does not match one, is quoted up to this many characters.
SCHEMA_ERRORS_REPORTED_MAX: Final = 3
SCHEMA_ERROR_REASON_CHARS_MAX: Final = 200
SCHEMA_PATTERN_QUOTED_CHARS_MAX: Final = 64

assert SCHEMA_ERRORS_REPORTED_MAX * SCHEMA_ERROR_REASON_CHARS_MAX < TEXT_LENGTH_MAX
assert SCHEMA_PATTERN_QUOTED_CHARS_MAX * 2 < SCHEMA_ERROR_REASON_CHARS_MAX
assert sys.getrecursionlimit() >= SCHEMA_DEPTH_MAX * 10

# --- metered sessions (docs/PROTOCOL.md, "Metered calls") ---------------------------

# A metered session lasts at most this long; after it ends (or after the buyer
# closes it) the provider has a claim window for the last receipts it holds,
# then the unused hold returns to the buyer.
METERED_SESSION_MAX_S: Final = 7 * 24 * 3600
METERED_SESSION_DEFAULT_S: Final = 24 * 3600
METERED_CLAIM_WINDOW_S: Final = 600
# A receipt stays claimable for the session and its claim window.
METERED_RECEIPT_LIFETIME_MAX_S: Final = METERED_SESSION_MAX_S + METERED_CLAIM_WINDOW_S
# Usage counts (cumulative units) and the unit blocks prices are quoted per.
METERED_UNITS_MAX: Final = 2**53
METERED_UNITS_PER_PRICE: Final = (1, 1000)
# A metered call's input and output, inline (larger payloads are not metered calls).
METERED_CALL_BYTES_MAX: Final = 256 * 1024

assert METERED_SESSION_DEFAULT_S <= METERED_SESSION_MAX_S < CONTRACT_RECORD_LIFETIME_S

# Categories with a commission of their own in the fee table (wallet's FEE_CATEGORIES_MAX).
FEE_CATEGORIES_MAX: Final = 100

# A provider's analytics (provider.analytics): at most this many days back,
# and this many listings' figures in one answer.
ANALYTICS_DAYS_MAX: Final = 90
ANALYTICS_LISTINGS_MAX: Final = 200
# A metered session's evidence lists at most this many claims per page
# (each with its receipt, under 1 KiB), newest first.
METERED_EVIDENCE_CLAIMS_MAX: Final = 200

# --- digital goods (docs/PROTOCOL.md, "Digital goods") --------------------------------

# An item's slug (its name within its provider), title, description and terms.
GOODS_SLUG_LENGTH_MAX: Final = 64
GOODS_TITLE_LENGTH_MAX: Final = 128
GOODS_DESCRIPTION_LENGTH_MAX: Final = TEXT_LENGTH_MAX
GOODS_TERMS_LENGTH_MAX: Final = TEXT_LENGTH_MAX
# The artifact is encrypted by its provider with a random 32-byte content key
# (XSalsa20-Poly1305, a 24-byte nonce first and a 16-byte tag: 40 bytes more),
# and the ciphertext is stored in the exchange's chunks like a large result.
GOODS_CONTENT_KEY_BYTES: Final = 32
GOODS_SEALING_OVERHEAD_BYTES: Final = 24 + 16
GOODS_CIPHERTEXT_BYTES_MAX: Final = RESULT_OBJECT_BYTES_MAX
GOODS_ARTIFACT_BYTES_MAX: Final = GOODS_CIPHERTEXT_BYTES_MAX - GOODS_SEALING_OVERHEAD_BYTES
# A content key sealed to an agent id (an X25519 sealed box: 32-byte ephemeral
# key, the key, 16-byte tag), and its unpadded base64url text.
GOODS_SEALED_KEY_BYTES: Final = 32 + GOODS_CONTENT_KEY_BYTES + 16
GOODS_SEALED_KEY_TEXT_LENGTH: Final = (4 * GOODS_SEALED_KEY_BYTES + 2) // 3
# Versions one item may have (1, 2, ...), and the updates a licence may include.
GOODS_VERSIONS_MAX: Final = 1000
# Items one provider may sell.
GOODS_ITEMS_PER_PROVIDER_MAX: Final = 1000
# Versions a provider has uploaded and not yet published (each at most
# GOODS_CIPHERTEXT_BYTES_MAX): what unpublished ciphertext one provider can store.
GOODS_DRAFTS_PER_PROVIDER_MAX: Final = 4
# A new version is announced to the holders it reaches in batches of this many
# notices: the first batch commits with the publish, the sweeper sends the rest.
GOODS_HOLDERS_NOTIFIED_PER_BATCH: Final = 500
# A licence the exchange signed stays verifiable evidence this long.
GOODS_LICENCE_LIFETIME_S: Final = 5 * 365 * 24 * 3600
GOODS_PAGE_SIZE_MAX: Final = 100

assert GOODS_ARTIFACT_BYTES_MAX > 0
assert GOODS_TERMS_LENGTH_MAX <= TEXT_LENGTH_MAX
assert GOODS_SLUG_LENGTH_MAX <= 64  # an item id is a hash, but the slug travels in documents
assert GOODS_LICENCE_LIFETIME_S * 1000 < 2**53

# --- subscriptions (docs/PROTOCOL.md, "Subscriptions") --------------------------------

# A plan's period and trial. Periods as short as a minute serve demos and
# trials of a service; a year is the longest a plan bills for at once.
SUBSCRIPTION_PERIOD_MIN_S: Final = 60
SUBSCRIPTION_PERIOD_MAX_S: Final = 366 * 24 * 3600
SUBSCRIPTION_TRIAL_MAX_S: Final = 90 * 24 * 3600
# After a renewal fails, access continues and the exchange retries the charge
# every retry interval until the grace period ends; then the subscription lapses.
SUBSCRIPTION_GRACE_S: Final = 3 * 24 * 3600
SUBSCRIPTION_RETRY_S: Final = 3600
# A subscription token (the exchange's signed pass the provider checks
# offline) lives this long at most, and never past the paid period's grace.
SUBSCRIPTION_TOKEN_LIFETIME_S: Final = 15 * 60
# Plans per provider, plans and subscriptions per answer.
PLANS_PER_PROVIDER_MAX: Final = 100
PLANS_PER_PAGE_MAX: Final = 100
SUBSCRIPTIONS_PER_PAGE_MAX: Final = 100

assert SUBSCRIPTION_PERIOD_MIN_S <= SUBSCRIPTION_RETRY_S <= SUBSCRIPTION_GRACE_S
assert SUBSCRIPTION_TOKEN_LIFETIME_S < SUBSCRIPTION_RETRY_S
