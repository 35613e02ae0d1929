"""Wire protocol version 2: every message as a frozen msgspec Struct.

Two families travel on the wire, both as JSON:

* **Signed documents** (:data:`Document`), tagged by ``kind``. Each carries a
  :class:`Header` (issuer, audience, subject, issued-at, expiry, nonce) and is
  sent inside an :class:`Envelope` holding the document's exact JSON bytes and
  an ed25519 signature over those bytes (see :mod:`agent_client.signing`).
* **Replies** of the exchange (:data:`Reply`), tagged by ``kind``: a result or
  an :class:`ErrorReply` with a stable :class:`ErrorCode`.

Unknown kinds are rejected; unknown fields are ignored so that later minor
versions can add fields with defaults. docs/PROTOCOL.md is the reference.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Raw, Struct

from agent_client import limits

__all__ = [
    "DELIVERED_STATES",
    "EXCHANGE_REQUEST_TYPES",
    "HOLDING_STATES",
    "SETTLED_STATES",
    "AcceptDelivery",
    "AcknowledgeNotices",
    "Advertise",
    "AnalyticsReply",
    "BalanceReply",
    "BuyGoods",
    "CancelContract",
    "CancelSubscription",
    "CashOut",
    "CashOutReply",
    "ChunkStoredReply",
    "ClaimUsage",
    "CloseMetered",
    "ContractEventEntry",
    "ContractOpenedNotice",
    "ContractRecord",
    "ContractReply",
    "ContractState",
    "ContractUpdatedNotice",
    "ContractView",
    "Counter",
    "DayAnalytics",
    "Decline",
    "DeclineCode",
    "Deliver",
    "DeliveredNotice",
    "Document",
    "DownloadGoods",
    "Envelope",
    "ErrorCode",
    "ErrorReply",
    "EvidenceReply",
    "FeesReply",
    "GetAnalytics",
    "GetBalance",
    "GetContract",
    "GetEvidence",
    "GetFees",
    "GetGoods",
    "GetGoodsChunk",
    "GetListingHistory",
    "GetMetered",
    "GetMeteredEvidence",
    "GetReputation",
    "GetResult",
    "GetSubscription",
    "GetSubscriptionToken",
    "GoodsAccessReply",
    "GoodsChunkReply",
    "GoodsChunkStoredReply",
    "GoodsEvent",
    "GoodsKind",
    "GoodsLicence",
    "GoodsListReply",
    "GoodsNotice",
    "GoodsReply",
    "GoodsView",
    "Header",
    "InfoReply",
    "LinkHuman",
    "LinkedReply",
    "ListGoods",
    "ListPlans",
    "ListSubscriptions",
    "ListTransactions",
    "Listing",
    "ListingAnalytics",
    "ListingHistoryReply",
    "ListingReply",
    "ListingRevision",
    "MeteredCall",
    "MeteredCallReply",
    "MeteredClaimEntry",
    "MeteredEvent",
    "MeteredEvidenceReply",
    "MeteredNotice",
    "MeteredOffer",
    "MeteredOfferReply",
    "MeteredOfferRequest",
    "MeteredReply",
    "MeteredState",
    "MeteredView",
    "Mint",
    "MintReply",
    "Notice",
    "NoticesAckedReply",
    "NoticesReply",
    "OpenContract",
    "OpenMetered",
    "PlanName",
    "PlanReply",
    "PlanView",
    "PlansReply",
    "PublishGoods",
    "PublishPlan",
    "Quote",
    "RateContract",
    "RatingEntry",
    "RatingReply",
    "Reject",
    "RejectDelivery",
    "Reply",
    "Reputation",
    "ReputationReply",
    "Resolve",
    "ResultChunkReply",
    "ResultRef",
    "Rfq",
    "SearchCatalog",
    "SearchReply",
    "SearchSort",
    "SetFees",
    "SetListingStatus",
    "SignedReply",
    "Subscribe",
    "SubscribeNotices",
    "SubscriptionEvent",
    "SubscriptionNotice",
    "SubscriptionReply",
    "SubscriptionState",
    "SubscriptionToken",
    "SubscriptionTokenReply",
    "SubscriptionView",
    "SubscriptionsReply",
    "TransactionEntry",
    "TransactionsReply",
    "Transfer",
    "TransferReply",
    "UploadGoods",
    "UploadResult",
    "UsageReceipt",
    "endpoint_of",
    "price_of_units",
]

JSON_NULL = Raw(b"null")

# Constrained scalar types shared by many messages.
AgentId = Annotated[str, Meta(min_length=56, max_length=56, pattern=r"^U[A-Z2-7]{55}\Z")]
Audience = Annotated[str, Meta(min_length=1, max_length=64)]
Capability = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=limits.CAPABILITY_LENGTH_MAX,
        pattern=r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\Z",
    ),
]
Identifier = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+\Z")]
Text = Annotated[str, Meta(max_length=limits.TEXT_LENGTH_MAX)]
Sha256Hex = Annotated[str, Meta(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}\Z")]
TimestampMs = Annotated[int, Meta(ge=0, le=2**53)]
PriceMillicredits = Annotated[int, Meta(ge=1, le=limits.PRICE_MILLICREDITS_MAX)]
MintMillicredits = Annotated[int, Meta(ge=1, le=limits.MINT_MILLICREDITS_MAX)]
Nonce = Annotated[str, Meta(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+\Z")]
Base64Url = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]*\Z")]
Tag = Annotated[
    str, Meta(min_length=1, max_length=limits.TAG_LENGTH_MAX, pattern=r"^[a-z0-9][a-z0-9_-]*\Z")
]
RatingStars = Annotated[int, Meta(ge=limits.RATING_STARS_MIN, le=limits.RATING_STARS_MAX)]
# The orders a search can ask for; see docs/PROTOCOL.md, catalog.search.
SearchSort = Literal["price", "rating", "settled", "newest"]
CounterRound = Annotated[int, Meta(ge=1, le=limits.NEGOTIATION_ROUNDS_MAX)]
Code = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+\Z")]
# A stored result (see ResultRef) and one of its chunks.
StoredResultBytes = Annotated[int, Meta(ge=1, le=limits.RESULT_OBJECT_BYTES_MAX)]
ChunkCount = Annotated[int, Meta(ge=1, le=limits.RESULT_CHUNKS_MAX)]
ChunkIndex = Annotated[int, Meta(ge=0, lt=limits.RESULT_CHUNKS_MAX)]
ChunkText = Annotated[
    str,
    Meta(
        min_length=1, max_length=limits.RESULT_CHUNK_TEXT_LENGTH_MAX, pattern=r"^[A-Za-z0-9_-]*\Z"
    ),
]


class ErrorCode(enum.StrEnum):
    """Stable error codes; clients branch on these, never on messages."""

    MALFORMED = "malformed"
    UNKNOWN_KIND = "unknown_kind"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    SUBJECT_MISMATCH = "subject_mismatch"
    CLOCK_SKEW = "clock_skew"
    EXPIRED = "expired"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    REPLAYED = "replayed"
    BAD_SIGNATURE = "bad_signature"
    SIGNER_MISMATCH = "signer_mismatch"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_KIND = "wrong_kind"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    INVALID_REQUEST = "invalid_request"
    QUOTE_EXPIRED = "quote_expired"
    QUOTE_ALREADY_ACCEPTED = "quote_already_accepted"
    # The accepted quote is not the provider's latest offer of its
    # negotiation, or another offer of that negotiation already opened a contract.
    OFFER_SUPERSEDED = "offer_superseded"
    # The negotiation history sent with a quote does not hold together.
    INVALID_NEGOTIATION = "invalid_negotiation"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INVALID_STATE = "invalid_state"
    HASH_MISMATCH = "hash_mismatch"
    # Deliver: the chunks the exchange holds do not make up the result that
    # result_ref describes (one is missing, or has another size).
    RESULT_INCOMPLETE = "result_incomplete"
    SCHEMA_MISMATCH = "schema_mismatch"
    INVALID_SCHEMA = "invalid_schema"
    # Checking a result against the output schema ran out of its time budget.
    SCHEMA_TOO_COMPLEX = "schema_too_complex"
    NOT_SETTLED = "not_settled"
    ALREADY_RATED = "already_rated"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    # The agent sent more requests (or more bad ones) than its limits allow;
    # retry after a pause (docs/PROTOCOL.md section 6).
    RATE_LIMITED = "rate_limited"
    # A signed reply that answers another request than the one sent.
    REPLY_MISMATCH = "reply_mismatch"
    # Refusals of the human portal's controls (budgets, approvals) and of links.
    PENDING_APPROVAL = "pending_approval"
    APPROVAL_REJECTED = "approval_rejected"
    BUDGET_EXCEEDED = "budget_exceeded"
    AGENT_FROZEN = "agent_frozen"
    LINK_CODE_INVALID = "link_code_invalid"
    # goods.buy: the item's price is not the one the buyer agreed to pay.
    PRICE_CHANGED = "price_changed"
    # goods.publish: the sealed content key does not open with the exchange's
    # key, or does not open the uploaded ciphertext.
    CONTENT_KEY_INVALID = "content_key_invalid"


class DeclineCode(enum.StrEnum):
    """Why a provider declined an RFQ or a counter-offer (``decline.code``).

    A counter-offer that fails the request checks is declined with that
    check's :class:`ErrorCode` (``expired``, ``replayed``, ...) instead.
    """

    DECLINED = "declined"
    OVER_BUDGET = "over_budget"
    NOT_NEGOTIABLE = "not_negotiable"
    QUOTE_EXPIRED = "quote_expired"
    OFFER_SUPERSEDED = "offer_superseded"
    UNKNOWN_OFFER = "unknown_offer"
    NEGOTIATION_CLOSED = "negotiation_closed"
    INVALID_NEGOTIATION = "invalid_negotiation"
    ROUNDS_EXHAUSTED = "rounds_exhausted"
    WALKED_AWAY = "walked_away"


class ContractState(enum.StrEnum):
    """Where a contract is in its lifecycle (docs/PROTOCOL.md, "Contract lifecycle").

    ::

        open ──deliver──▶ delivered ──accept / review window passed──▶ released
          │                  │
          │                  └──reject──▶ disputed ──resolve / dispute window──▶ resolved
          └─ deadline passed / provider cancels ──▶ refunded

    The wire carries the values as plain strings; msgspec decodes them into
    members and refuses any other string.
    """

    OPEN = "open"
    DELIVERED = "delivered"
    DISPUTED = "disputed"
    RELEASED = "released"
    REFUNDED = "refunded"
    RESOLVED = "resolved"


# The states that hold the price in escrow, and the states that settled it.
HOLDING_STATES = frozenset({ContractState.OPEN, ContractState.DELIVERED, ContractState.DISPUTED})
SETTLED_STATES = frozenset({ContractState.RELEASED, ContractState.REFUNDED, ContractState.RESOLVED})
# The states a contract can be in once it was delivered: it holds its result.
DELIVERED_STATES = frozenset(
    {
        ContractState.DELIVERED,
        ContractState.DISPUTED,
        ContractState.RELEASED,
        ContractState.RESOLVED,
    }
)
assert frozenset(ContractState) == HOLDING_STATES | SETTLED_STATES
assert not HOLDING_STATES & SETTLED_STATES


class Envelope(Struct, frozen=True):
    """A signed document: its exact JSON bytes and the signature over them.

    Both fields are unpadded base64url so that the signed bytes survive any
    JSON re-encoding on the way; the receiver verifies the bytes it decodes
    from ``doc`` and never re-serialises the document to verify it.
    """

    doc: Base64Url
    sig: Base64Url


class Header(Struct, frozen=True, kw_only=True):
    issuer: AgentId
    audience: Audience
    subject: Annotated[str, Meta(min_length=1, max_length=256)]
    issued_at_ms: TimestampMs
    expires_at_ms: TimestampMs
    nonce: Nonce


class _Signed(Struct, frozen=True, kw_only=True, tag_field="kind"):
    header: Header


# --- Documents signed by agents -------------------------------------------------


class Advertise(_Signed, frozen=True, tag="catalog.advertise"):
    capability: Capability
    description: Text
    price_millicredits: PriceMillicredits
    input_schema: dict[str, Any] = {}
    output_schema: dict[str, Any] = {}
    version: Annotated[str, Meta(min_length=1, max_length=32)] = "1.0.0"
    status: Literal["active", "inactive"] = "active"
    tags: Annotated[list[Tag], Meta(max_length=limits.TAGS_PER_LISTING_MAX)] = []


class SearchCatalog(_Signed, frozen=True, tag="catalog.search"):
    capability: Capability | None = None
    text: Annotated[str, Meta(max_length=128)] | None = None
    price_max_millicredits: PriceMillicredits | None = None
    limit: Annotated[int, Meta(ge=1, le=limits.SEARCH_PAGE_SIZE_MAX)] = 20
    offset: Annotated[int, Meta(ge=0, le=limits.SEARCH_OFFSET_MAX)] = 0
    price_min_millicredits: PriceMillicredits | None = None
    # Every tag given must be on the listing.
    tags: Annotated[list[Tag], Meta(max_length=limits.SEARCH_TAGS_MAX)] = []
    rating_min: (
        Annotated[float, Meta(ge=limits.RATING_STARS_MIN, le=limits.RATING_STARS_MAX)] | None
    ) = None
    settled_count_min: Annotated[int, Meta(ge=0, le=2**53)] | None = None
    sort: SearchSort = "price"


class Rfq(_Signed, frozen=True, tag="rfq"):
    rfq_id: Identifier
    capability: Capability
    task_summary: Text
    budget_millicredits: PriceMillicredits
    delivery_within_s: Annotated[int, Meta(ge=1, le=limits.DELIVERY_DEADLINE_MAX_S)]
    # When the buyer stops collecting quotes; providers do not answer after
    # it. Null means the header's expiry, which it may not exceed.
    quote_deadline_ms: TimestampMs | None = None


class Quote(_Signed, frozen=True, tag="quote"):
    rfq_id: Identifier
    capability: Capability
    price_millicredits: PriceMillicredits
    delivery_deadline_ms: TimestampMs
    terms: Text = ""
    # 0 answers the RFQ; n answers the buyer's n-th counter-offer, whose
    # signed bytes hash to ``counter_sha256`` (null in round 0).
    round: Annotated[int, Meta(ge=0, le=limits.NEGOTIATION_ROUNDS_MAX)] = 0
    counter_sha256: Sha256Hex | None = None


class Decline(_Signed, frozen=True, tag="decline"):
    """A provider's no, to an RFQ or to a counter-offer, with a stable code."""

    rfq_id: Identifier
    reason: Text
    code: Code = DeclineCode.DECLINED.value


class Counter(_Signed, frozen=True, tag="counter"):
    """The buyer's counter-offer to one quote: "I would pay this instead".

    Sent as a request on the provider's negotiation subject; answered by a
    quote of the next round or a decline. It names the quote it counters by
    the hash of its signed bytes, so a chain of rounds can be checked.
    """

    rfq_id: Identifier
    capability: Capability
    round: CounterRound
    quote_sha256: Sha256Hex
    price_millicredits: PriceMillicredits


class Reject(_Signed, frozen=True, tag="reject"):
    """The buyer walks away from a negotiation (published, not answered)."""

    rfq_id: Identifier
    quote_sha256: Sha256Hex
    reason: Text = ""


class OpenContract(_Signed, frozen=True, tag="contract.open"):
    """The buyer's signed acceptance of one quote, carrying the task."""

    quote: Envelope
    task: Raw
    # Ask the provider to seal the result to the buyer's key (end to end).
    seal_result: bool = False
    # The negotiation before the accepted quote, oldest first: the round-0
    # quote, the buyer's first counter-offer, the round-1 quote, ... ending
    # with the counter-offer the accepted quote answers. Empty for round 0.
    history: Annotated[
        tuple[Envelope, ...], Meta(max_length=2 * limits.NEGOTIATION_ROUNDS_MAX)
    ] = ()


class MeteredOfferRequest(_Signed, frozen=True, tag="metered.offer_request"):
    """A buyer asks a provider for its metered terms (sent to the provider directly)."""

    capability: Capability


class MeteredOffer(_Signed, frozen=True, tag="metered.offer"):
    """A provider's signed metered terms for one buyer (the ``audience``).

    ``unit_price_millicredits`` is the price of ``units_per_price`` units (1:
    per call; 1000: per thousand units such as tokens). A usage of ``n`` units
    costs ``n * unit_price_millicredits // units_per_price``.
    """

    capability: Capability
    unit_price_millicredits: PriceMillicredits
    units_per_price: Literal[1, 1000] = 1
    terms: Text = ""


def price_of_units(units: int, /, *, unit_price_millicredits: int, units_per_price: int) -> int:
    """What ``units`` cost under a metered offer: rounded down, on the cumulative
    count (the exchange captures by it; clients predict with it)."""
    assert units >= 0 and unit_price_millicredits > 0 and units_per_price in (1, 1000)
    return units * unit_price_millicredits // units_per_price


class OpenMetered(_Signed, frozen=True, tag="metered.open"):
    """The buyer accepts a metered offer: the exchange holds ``ceiling_millicredits``."""

    offer: Envelope
    ceiling_millicredits: PriceMillicredits
    session_s: Annotated[int, Meta(ge=1, le=limits.METERED_SESSION_MAX_S)] = (
        limits.METERED_SESSION_DEFAULT_S
    )


class UsageReceipt(_Signed, frozen=True, tag="metered.receipt"):
    """The buyer's signed word: "I have received ``units`` units under this session".

    Cumulative and monotonically increasing; addressed to the provider, who
    claims against the latest one it holds. Subject: ``metered_subject(id)``.
    """

    contract_id: Identifier
    units: Annotated[int, Meta(ge=0, le=limits.METERED_UNITS_MAX)]


class ClaimUsage(_Signed, frozen=True, tag="metered.claim"):
    """The provider claims the usage of its latest receipt (a partial capture)."""

    receipt: Envelope


class CloseMetered(_Signed, frozen=True, tag="metered.close"):
    """A party ends the session. The provider may claim a final receipt with it;
    the buyer's close leaves the provider the claim window first."""

    contract_id: Identifier
    final_receipt: Envelope | None = None


class GetMetered(_Signed, frozen=True, tag="metered.get"):
    contract_id: Identifier


class GetMeteredEvidence(_Signed, frozen=True, tag="metered.evidence"):
    """A party (or an operator) reads a session's evidence: the signed offer and
    acceptance and every claim with the receipt it claimed, newest first."""

    contract_id: Identifier
    limit: Annotated[int, Meta(ge=1, le=limits.METERED_EVIDENCE_CLAIMS_MAX)] = 50
    # Page on: only claims of fewer units than this.
    before_units: Annotated[int, Meta(ge=0, le=limits.METERED_UNITS_MAX)] | None = None


class MeteredCall(_Signed, frozen=True, tag="metered.call"):
    """One call under a session (buyer to provider, directly), with the receipt
    for every unit received so far (null before the first answer)."""

    contract_id: Identifier
    input: Raw
    receipt: Envelope | None = None


# --- subscriptions (docs/PROTOCOL.md, "Subscriptions") ------------------------------

PlanName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*\Z")]
PeriodSeconds = Annotated[
    int, Meta(ge=limits.SUBSCRIPTION_PERIOD_MIN_S, le=limits.SUBSCRIPTION_PERIOD_MAX_S)
]
TrialSeconds = Annotated[int, Meta(ge=0, le=limits.SUBSCRIPTION_TRIAL_MAX_S)]


class PublishPlan(_Signed, frozen=True, tag="plan.publish"):
    """A provider offers a plan on one of its capabilities, or withdraws it.

    A plan's terms never change once published (a new price is a new plan):
    publishing the same terms again changes nothing, and ``active: false``
    withdraws it (new subscriptions are refused; running ones go on).
    """

    plan: PlanName
    capability: Capability
    price_millicredits: PriceMillicredits
    period_s: PeriodSeconds
    trial_s: TrialSeconds = 0
    description: Text = ""
    active: bool = True


class ListPlans(_Signed, frozen=True, tag="plan.list"):
    """Any agent lists the active plans of a provider, or of a capability."""

    provider_id: AgentId | None = None
    capability: Capability | None = None
    limit: Annotated[int, Meta(ge=1, le=limits.PLANS_PER_PAGE_MAX)] = 50


class Subscribe(_Signed, frozen=True, tag="subscription.start"):
    """The buyer subscribes to a plan; the price and period it states must be the plan's.

    ``request_id`` is the buyer's key for this subscription: a retry with the
    same key answers the subscription it started (and charges nothing more).
    """

    plan_id: Identifier
    price_millicredits: PriceMillicredits
    period_s: PeriodSeconds
    request_id: Identifier


class CancelSubscription(_Signed, frozen=True, tag="subscription.cancel"):
    """The buyer or the provider cancels: effective at the end of the paid period."""

    subscription_id: Identifier


class GetSubscription(_Signed, frozen=True, tag="subscription.get"):
    subscription_id: Identifier


class ListSubscriptions(_Signed, frozen=True, tag="subscription.list"):
    """A party's subscriptions, as buyer or as provider, by id; page with ``after_id``."""

    role: Literal["buyer", "provider"] = "buyer"
    limit: Annotated[int, Meta(ge=1, le=limits.SUBSCRIPTIONS_PER_PAGE_MAX)] = 50
    after_id: Identifier | None = None


class GetSubscriptionToken(_Signed, frozen=True, tag="subscription.token"):
    """The buyer asks for a fresh token to show the provider."""

    subscription_id: Identifier


# --- digital goods (docs/PROTOCOL.md, "Digital goods") ------------------------------

GoodsSlug = Annotated[
    str,
    Meta(min_length=1, max_length=limits.GOODS_SLUG_LENGTH_MAX, pattern=r"^[a-z0-9][a-z0-9_-]*\Z"),
]
GoodsKind = Literal["package", "credentials"]
GoodsVersion = Annotated[int, Meta(ge=1, le=limits.GOODS_VERSIONS_MAX)]
GoodsCiphertextBytes = Annotated[int, Meta(ge=1, le=limits.GOODS_CIPHERTEXT_BYTES_MAX)]
SealedKeyText = Annotated[
    str,
    Meta(
        min_length=limits.GOODS_SEALED_KEY_TEXT_LENGTH,
        max_length=limits.GOODS_SEALED_KEY_TEXT_LENGTH,
        pattern=r"^[A-Za-z0-9_-]*\Z",
    ),
]


class UploadGoods(_Signed, frozen=True, tag="goods.upload"):
    """One chunk of the ciphertext of an item's next version, before it is published.

    Only the item's provider (the signer: the item id derives from it and the
    slug) uploads, and only the version after the item's current one; the
    layout is a stored result's (:class:`ResultRef`). Answered by
    :class:`GoodsChunkStoredReply`.
    """

    slug: GoodsSlug
    version: GoodsVersion
    index: ChunkIndex
    chunk_count: ChunkCount
    size_bytes: GoodsCiphertextBytes
    chunk: ChunkText


class PublishGoods(_Signed, frozen=True, tag="goods.publish"):
    """The provider publishes the next version of an item (version 1 creates it).

    ``sealed_key`` is the version's content key sealed to the exchange's id;
    ``ciphertext_sha256`` and ``size_bytes`` describe the uploaded chunks.
    ``updates_included`` is how many later versions a licence sold from now
    on covers (null: every later version).
    """

    slug: GoodsSlug
    title: Annotated[str, Meta(min_length=1, max_length=limits.GOODS_TITLE_LENGTH_MAX)]
    artifact_kind: GoodsKind
    capability: Capability
    price_millicredits: PriceMillicredits
    version: GoodsVersion
    ciphertext_sha256: Sha256Hex
    size_bytes: GoodsCiphertextBytes
    sealed_key: SealedKeyText
    description: Annotated[str, Meta(max_length=limits.GOODS_DESCRIPTION_LENGTH_MAX)] = ""
    terms: Annotated[str, Meta(max_length=limits.GOODS_TERMS_LENGTH_MAX)] = ""
    updates_included: Annotated[int, Meta(ge=0, le=limits.GOODS_VERSIONS_MAX)] | None = None


class BuyGoods(_Signed, frozen=True, tag="goods.buy"):
    """The buyer pays the item's price (which must be ``price_millicredits``) and gets
    a licence; a holder asking again gets its licence back, charged nothing."""

    item_id: Identifier
    price_millicredits: PriceMillicredits


class DownloadGoods(_Signed, frozen=True, tag="goods.download"):
    """A holder asks for a version's content key (null: the newest its licence covers)."""

    item_id: Identifier
    version: GoodsVersion | None = None


class GetGoodsChunk(_Signed, frozen=True, tag="goods.chunk"):
    """A holder (or the provider) reads chunk ``index`` of a version's ciphertext."""

    item_id: Identifier
    version: GoodsVersion
    index: ChunkIndex


class GetGoods(_Signed, frozen=True, tag="goods.get"):
    """Any agent reads an item's public view."""

    item_id: Identifier


class ListGoods(_Signed, frozen=True, tag="goods.list"):
    """Any agent lists items, oldest first (of one provider, when named)."""

    provider_id: AgentId | None = None
    limit: Annotated[int, Meta(ge=1, le=limits.GOODS_PAGE_SIZE_MAX)] = 20
    offset: Annotated[int, Meta(ge=0, le=limits.SEARCH_OFFSET_MAX)] = 0


# A fee rate in basis points, and a category's capability prefix.
FeeBps = Annotated[int, Meta(ge=0, le=10_000)]
FeeName = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z_]+\Z")]
CategoryPrefix = Annotated[
    str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\Z")
]


class GetFees(_Signed, frozen=True, tag="fees.get"):
    """Any agent asks for the fee table in force (shown before it pays)."""


class SetFees(_Signed, frozen=True, tag="operator.fees"):
    """An operator changes fee rates: ``rates`` by kind; ``categories`` by capability
    prefix (null removes a category's commission). What is not named stays."""

    rates: Annotated[dict[FeeName, FeeBps], Meta(max_length=16)] = {}
    categories: Annotated[
        dict[CategoryPrefix, FeeBps | None], Meta(max_length=limits.FEE_CATEGORIES_MAX)
    ] = {}
    reason: Text = ""


class GetAnalytics(_Signed, frozen=True, tag="provider.analytics"):
    """A provider asks for its own figures per listing over the last ``days`` days
    (UTC days, today included); naming a ``capability`` adds its figures per day."""

    days: Annotated[int, Meta(ge=1, le=limits.ANALYTICS_DAYS_MAX)] = 30
    capability: Capability | None = None


class ResultRef(Struct, frozen=True, kw_only=True):
    """A result too large to send inline, stored by the exchange in chunks.

    The provider uploads it (:class:`UploadResult`) before it delivers; the
    buyer reads it back (:class:`GetResult`). Every chunk but the last holds
    ``limits.RESULT_CHUNK_BYTES_MAX`` bytes, so ``chunk_count`` is
    ``size_bytes`` divided by that, rounded up; the exchange refuses any other.
    """

    size_bytes: StoredResultBytes
    chunk_count: ChunkCount


class Deliver(_Signed, frozen=True, tag="contract.deliver"):
    """The provider's result: inline JSON, or a reference to the chunks it uploaded.

    ``result_sha256`` is over the exact bytes of the result (inline, or the
    stored chunks joined in order). When the buyer asked for a sealed
    result, ``sealed`` is true and the result is a JSON string: base64url of
    a box sealed to the buyer's key, which the exchange cannot open (nor
    check against a schema).
    """

    contract_id: Identifier
    result_sha256: Sha256Hex
    result: Raw = JSON_NULL
    result_ref: ResultRef | None = None
    sealed: bool = False


class UploadResult(_Signed, frozen=True, tag="contract.upload"):
    """One chunk of a result too large to send inline, sent before the delivery.

    Only the contract's provider may upload, while the contract is open and
    before its deadline; uploading chunk ``index`` again replaces it. Every
    chunk names the whole result's ``size_bytes`` and ``chunk_count`` (see
    :class:`ResultRef`); ``chunk`` is base64url of the chunk's raw bytes.
    Answered by :class:`ChunkStoredReply`.
    """

    contract_id: Identifier
    index: ChunkIndex
    chunk_count: ChunkCount
    size_bytes: StoredResultBytes
    chunk: ChunkText


class GetResult(_Signed, frozen=True, tag="contract.result"):
    """The buyer (or an operator) reads chunk ``index`` of a delivered stored result."""

    contract_id: Identifier
    index: ChunkIndex


class AcceptDelivery(_Signed, frozen=True, tag="contract.accept"):
    contract_id: Identifier
    result_sha256: Sha256Hex


class GetContract(_Signed, frozen=True, tag="contract.get"):
    contract_id: Identifier


class RejectDelivery(_Signed, frozen=True, tag="contract.reject"):
    """The buyer refuses a delivery: the contract goes to dispute."""

    contract_id: Identifier
    reason: Annotated[str, Meta(min_length=1, max_length=limits.TEXT_LENGTH_MAX)]


class CancelContract(_Signed, frozen=True, tag="contract.cancel"):
    """Before delivery: the provider's cancel refunds the buyer at once; the
    buyer's cancel is a request that refunds once the provider cancels too."""

    contract_id: Identifier
    reason: Text = ""


class GetEvidence(_Signed, frozen=True, tag="contract.evidence"):
    """A contract's evidence bundle, for its parties and operators."""

    contract_id: Identifier


class Resolve(_Signed, frozen=True, tag="operator.resolve"):
    """Operator only: end a dispute, giving the provider a share of the price.

    10,000 bps releases all to the provider, 0 refunds all to the buyer,
    anything between splits (the fee applies to the provider's share).
    """

    contract_id: Identifier
    provider_share_bps: Annotated[int, Meta(ge=0, le=10_000)]
    note: Text = ""


class GetBalance(_Signed, frozen=True, tag="wallet.balance"):
    pass


class ListTransactions(_Signed, frozen=True, tag="wallet.transactions"):
    limit: Annotated[int, Meta(ge=1, le=limits.TRANSACTIONS_PAGE_SIZE_MAX)] = 50
    before_timestamp_us: Annotated[int, Meta(ge=0, le=2**63 - 1)] | None = None


class Mint(_Signed, frozen=True, tag="operator.mint"):
    """Operator-only grant of credits, recorded in the audit log.

    ``mint_id`` is the operator's idempotency key: retrying with the same
    ``mint_id`` (in a freshly signed request) returns the first outcome and
    never mints twice.
    """

    mint_id: Identifier
    recipient_id: AgentId
    amount_millicredits: MintMillicredits
    reason: Annotated[str, Meta(min_length=1, max_length=limits.TEXT_LENGTH_MAX)]


class SetListingStatus(_Signed, frozen=True, tag="catalog.status"):
    """A provider deactivates its listing (hidden from search, no new
    contracts) or reactivates it; either way a new revision is recorded.

    An operator may do it to any provider's listing by naming ``provider_id``
    (recorded in the operator audit log); for anyone else it must be absent
    or the signer's own id.
    """

    capability: Capability
    status: Literal["active", "inactive"]
    provider_id: AgentId | None = None


class GetListingHistory(_Signed, frozen=True, tag="catalog.history"):
    """A listing's revisions, newest first; anyone may read them."""

    provider_id: AgentId
    capability: Capability
    limit: Annotated[int, Meta(ge=1, le=limits.LISTING_HISTORY_PAGE_SIZE_MAX)] = 20
    before_revision: Annotated[int, Meta(ge=1, le=2**31)] | None = None


class GetReputation(_Signed, frozen=True, tag="catalog.reputation"):
    """A provider's reputation, overall and per capability (or for one)."""

    provider_id: AgentId
    capability: Capability | None = None
    ratings_limit: Annotated[int, Meta(ge=0, le=limits.RATINGS_PAGE_SIZE_MAX)] = 10


class RateContract(_Signed, frozen=True, tag="contract.rate"):
    """The buyer's rating of a released contract: once per contract."""

    contract_id: Identifier
    stars: RatingStars
    comment: Annotated[str, Meta(max_length=limits.RATING_COMMENT_LENGTH_MAX)] = ""


class Transfer(_Signed, frozen=True, tag="wallet.transfer"):
    """A direct payment to another agent; the transfer fee comes out of it.

    ``transfer_id`` is the payer's idempotency key: a retry with the same
    key returns the first outcome and never pays twice.
    """

    transfer_id: Identifier
    payee_id: AgentId
    amount_millicredits: Annotated[int, Meta(ge=1, le=limits.TRANSFER_MILLICREDITS_MAX)]
    memo: Annotated[str, Meta(max_length=limits.TRANSFER_MEMO_LENGTH_MAX)] = ""


class LinkHuman(_Signed, frozen=True, tag="portal.link"):
    """An agent's proof that it holds its key, for the human who was shown ``code``.

    Sent to the human portal (audience ``portal``) on
    ``agentx.v2.portal.<agent id>.link``; the portal links the agent to the
    account that issued the one-time code and answers :class:`LinkedReply`.
    """

    code: Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9 -]+\Z")]


class CashOut(_Signed, frozen=True, tag="portal.cash_out"):
    """An agent asks the portal to cash out its credits to its human's Stripe account.

    Sent on ``agentx.v2.portal.<agent id>.cash_out`` (audience ``portal``); it
    needs the human's standing permission. ``request_id`` is the idempotency
    key: a retry with it returns the first payout, never a second one.
    """

    request_id: Identifier
    credits: Annotated[int, Meta(ge=1, le=1_000_000)]


class SubscribeNotices(_Signed, frozen=True, tag="notices.subscribe"):
    """An agent says it listens for its notices (at every connect and reconnect).

    The agent queue-subscribes its notice subject first; the exchange answers
    where (:class:`NoticesReply`) and then sends again, oldest first, every
    notice the agent has not acknowledged that is not in flight (PROTOCOL.md
    section 1.7.2).
    """


class AcknowledgeNotices(_Signed, frozen=True, tag="notices.ack"):
    """An agent has handled these notices (their ``header.nonce``): the exchange
    stops sending them. Ids that are not the signer's, or already acknowledged,
    are ignored, so a repeat is harmless."""

    notice_ids: Annotated[list[Nonce], Meta(min_length=1, max_length=limits.NOTICE_ACK_IDS_MAX)]


# --- Documents signed by the exchange ---------------------------------------------


# The exchange's endpoints, in the protocol's order: each is one request
# document type, and its name is the document's tag (docs/PROTOCOL.md, 5).
EXCHANGE_REQUEST_TYPES: tuple[type[_Signed], ...] = (
    Advertise,
    SearchCatalog,
    SetListingStatus,
    GetListingHistory,
    GetReputation,
    OpenContract,
    Deliver,
    UploadResult,
    GetResult,
    AcceptDelivery,
    GetContract,
    RejectDelivery,
    CancelContract,
    GetEvidence,
    Resolve,
    RateContract,
    GetBalance,
    ListTransactions,
    Transfer,
    Mint,
    SubscribeNotices,
    AcknowledgeNotices,
    OpenMetered,
    ClaimUsage,
    CloseMetered,
    GetMetered,
    GetFees,
    SetFees,
    GetAnalytics,
    GetMeteredEvidence,
    PublishPlan,
    ListPlans,
    Subscribe,
    CancelSubscription,
    GetSubscription,
    ListSubscriptions,
    GetSubscriptionToken,
    UploadGoods,
    PublishGoods,
    BuyGoods,
    DownloadGoods,
    GetGoodsChunk,
    GetGoods,
    ListGoods,
)


def endpoint_of(document_type: type[Struct], /) -> str:
    """The endpoint (and subject suffix) a request document goes to: its tag."""
    tag = document_type.__struct_config__.tag
    assert isinstance(tag, str), document_type
    return tag


class ContractRecord(_Signed, frozen=True, tag="contract.record"):
    """The exchange's statement that a contract is open and its price held.

    Together with the quote and acceptance it names by hash, it is the
    evidence of the contract that any party can verify.
    """

    contract_id: Identifier
    buyer_id: AgentId
    provider_id: AgentId
    capability: Capability
    price_millicredits: PriceMillicredits
    fee_millicredits: Annotated[int, Meta(ge=0)]
    delivery_deadline_ms: TimestampMs
    quote_sha256: Sha256Hex
    acceptance_sha256: Sha256Hex


class ContractOpenedNotice(_Signed, frozen=True, tag="notice.contract_opened"):
    record: Envelope
    task: Raw
    # The buyer wants the result sealed to its key (see Deliver).
    seal_result: bool = False


class MeteredNotice(_Signed, frozen=True, tag="notice.metered"):
    """A metered session changed: ``opened``, ``claimed``, ``closing`` or ``closed``."""

    event: MeteredEvent
    metered: MeteredView


class SubscriptionNotice(_Signed, frozen=True, tag="notice.subscription"):
    """A subscription changed: ``started``, ``renewed``, ``renewal_failed`` (with
    ``reason``), ``lapsed``, ``cancelling`` (ends at the period's end) or ``ended``."""

    event: SubscriptionEvent
    subscription: SubscriptionView
    reason: Text = ""


class SubscriptionToken(_Signed, frozen=True, tag="subscription.access"):
    """The exchange's signed, short-lived word that a subscription gives access.

    Issuer: the exchange; audience: the provider; subject:
    ``subscription_subject(subscription_id)``. A provider checks it offline
    with the exchange's id (no request), as any signed document.
    """

    subscription_id: Identifier
    plan_id: Identifier
    plan: PlanName
    buyer_id: AgentId
    capability: Capability
    state: SubscriptionState
    period_ends_at_ms: TimestampMs


class GoodsLicence(_Signed, frozen=True, tag="goods.licence"):
    """The exchange's signed word that ``buyer_id`` paid for ``item_id`` and may use its
    versions ``min_version`` to ``max_version`` (null: every later one) under ``terms``.

    Issuer: the exchange; audience ``*``; subject ``subjects.goods(item_id)``.
    Anyone checks it offline with the exchange's id (``agent_client.goods.verify_licence``).
    ``header.issued_at_ms`` is when it was sold.
    """

    licence_id: Identifier
    buyer_id: AgentId
    provider_id: AgentId
    item_id: Identifier
    min_version: GoodsVersion
    max_version: GoodsVersion | None
    terms: Annotated[str, Meta(max_length=limits.GOODS_TERMS_LENGTH_MAX)]
    price_millicredits: PriceMillicredits


GoodsEvent = Literal["version", "sold"]


class GoodsNotice(_Signed, frozen=True, tag="notice.goods"):
    """An item changed: a new ``version`` (to each holder whose licence covers it) or
    a ``sold`` licence (to the provider, with the licence)."""

    event: GoodsEvent
    # The version published, or the first version of the licence sold.
    version: GoodsVersion
    goods: GoodsView
    licence: Envelope | None = None


class DeliveredNotice(_Signed, frozen=True, tag="notice.delivered"):
    contract_id: Identifier
    result_sha256: Sha256Hex
    result: Raw = JSON_NULL
    result_ref: ResultRef | None = None
    sealed: bool = False


class ContractUpdatedNotice(_Signed, frozen=True, tag="notice.contract_updated"):
    """A transition of a contract, to the party whose request did not cause it,
    and to both parties when it settles the contract (PROTOCOL.md 1.7.1)."""

    contract_id: Identifier
    state: ContractState
    event: str
    price_millicredits: PriceMillicredits
    fee_millicredits: Annotated[int, Meta(ge=0)]
    net_millicredits: Annotated[int, Meta(ge=0)] | None = None
    refunded_millicredits: Annotated[int, Meta(ge=0)] = 0
    detail: Text = ""


# --- Replies of the exchange and the portal (each sent inside a SignedReply) -------


class _Reply(Struct, frozen=True, kw_only=True, tag_field="kind"):
    pass


class ErrorReply(_Reply, frozen=True, tag="error"):
    code: str
    message: str
    contract_id: str | None = None


class Reputation(Struct, frozen=True, kw_only=True):
    """A provider's record, from settled contracts only (released, refunded
    or resolved); ``capability`` is None for the provider's overall record.
    Rates are fractions of ``settled_count`` (None while it is 0); the mean
    rating is None until a buyer rates."""

    provider_id: str
    capability: str | None
    settled_count: int
    on_time_rate: float | None
    dispute_rate: float | None
    refund_rate: float | None
    rating_mean: float | None
    rating_count: int
    unique_buyer_count: int


class Listing(Struct, frozen=True, kw_only=True):
    listing_id: str
    provider_id: str
    capability: str
    description: str
    price_millicredits: int
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    version: str
    status: str
    updated_at_ms: int
    tags: list[str] = []
    # The listing's revision number: 1 when created, +1 on every change.
    revision: int = 1
    created_at_ms: int = 0
    reputation: Reputation | None = None


class ListingReply(_Reply, frozen=True, tag="listing"):
    listing: Listing


class SearchReply(_Reply, frozen=True, tag="listings"):
    listings: list[Listing]
    offset: int
    has_more: bool


class ContractView(Struct, frozen=True, kw_only=True):
    contract_id: str
    state: ContractState
    buyer_id: str
    provider_id: str
    capability: str
    price_millicredits: int
    fee_millicredits: int
    delivery_deadline_ms: int
    result_sha256: str | None
    record: Envelope
    created_at_ms: int
    updated_at_ms: int
    net_millicredits: int | None = None
    refunded_millicredits: int = 0
    seal_result: bool = False
    result_ref: ResultRef | None = None
    review_deadline_ms: int | None = None
    dispute_deadline_ms: int | None = None
    dispute_reason: str | None = None
    # How a dispute ended: "operator" or "default" (the window passed).
    resolution: str | None = None
    # Only in replies to contract.get, so a party that missed a notice can
    # still read the task (provider) or the delivered result (buyer); JSON
    # null elsewhere. (msgspec cannot decode Raw inside a union with None.)
    task: Raw = JSON_NULL
    result: Raw = JSON_NULL


class FeesReply(_Reply, frozen=True, tag="fees"):
    """The fee table in force: each kind's rate and each category's commission."""

    rates: dict[str, int]
    categories: dict[str, int]
    updated_at_ms: int


class DayAnalytics(Struct, frozen=True, kw_only=True):
    day_start_ms: int
    contracts: int
    revenue_net_millicredits: int
    rating_count: int
    rating_sum: int


class ListingAnalytics(Struct, frozen=True, kw_only=True):
    capability: str
    # Contracts opened in the window, and metered sessions and their units.
    contracts: int
    metered_sessions: int
    metered_units: int
    # What settled contracts and metered claims paid the provider, and the fees.
    revenue_net_millicredits: int
    fees_millicredits: int
    refunds: int
    disputes: int
    rating_count: int
    rating_sum: int
    # From opening to delivery, nearest-rank percentiles (null: nothing delivered).
    delivery_p50_ms: int | None
    delivery_p90_ms: int | None
    delivery_p99_ms: int | None
    days: list[DayAnalytics]
    # Subscription periods charged and digital goods sold in the window (their
    # net is in revenue_net_millicredits, their fees in fees_millicredits).
    subscription_periods: int = 0
    goods_sold: int = 0


class AnalyticsReply(_Reply, frozen=True, tag="analytics"):
    provider_id: str
    since_ms: int
    until_ms: int
    # True: the window held more rows than one answer reads (the newest count).
    truncated: bool
    listings: list[ListingAnalytics]


MeteredEvent = Literal["opened", "claimed", "closing", "closed"]


class MeteredState(enum.StrEnum):
    """Where a metered session is: claims are taken while ``open`` and ``closing``."""

    OPEN = "open"
    CLOSING = "closing"  # the buyer closed it, or it expired: the claim window runs
    CLOSED = "closed"  # the unused hold went back to the buyer


class MeteredView(Struct, frozen=True, kw_only=True):
    contract_id: str
    buyer_id: str
    provider_id: str
    capability: str
    unit_price_millicredits: int
    units_per_price: int
    ceiling_millicredits: int
    state: MeteredState
    claimed_units: int
    # What the claims captured from the hold, and how it was split.
    captured_millicredits: int
    fee_millicredits: int
    net_millicredits: int
    # Returned to the buyer when the session closed (0 before).
    released_millicredits: int
    expires_at_ms: int
    # When the claim window ends (null while open).
    closes_at_ms: int | None
    created_at_ms: int
    updated_at_ms: int


class MeteredReply(_Reply, frozen=True, tag="metered"):
    metered: MeteredView


class MeteredClaimEntry(Struct, frozen=True, kw_only=True):
    units: int
    captured_millicredits: int
    fee_millicredits: int
    claimed_at_ms: int
    # The buyer's signed receipt, exactly as the provider claimed it.
    receipt: Envelope


class MeteredEvidenceReply(_Reply, frozen=True, tag="metered_evidence"):
    metered: MeteredView
    offer: Envelope
    acceptance: Envelope
    claims: list[MeteredClaimEntry]
    has_more: bool


class MeteredOfferReply(_Reply, frozen=True, tag="metered_offer"):
    """The provider's answer to an offer request: its signed offer."""

    offer: Envelope


class MeteredCallReply(_Reply, frozen=True, tag="metered.result"):
    """The provider's answer to a call: the output and the units it consumed."""

    output: Raw
    units: Annotated[int, Meta(ge=0, le=limits.METERED_UNITS_MAX)]


class SubscriptionState(enum.StrEnum):
    """Where a subscription is; a token is issued in the first four."""

    TRIALING = "trialing"  # the plan's free trial runs; the first charge is at its end
    ACTIVE = "active"  # the current period is paid
    PAST_DUE = "past_due"  # a renewal failed: access goes on, the charge is retried
    CANCELLING = "cancelling"  # paid to the period's end, and not renewed then
    ENDED = "ended"  # cancelled, and the period it was cancelled in is over
    LAPSED = "lapsed"  # the grace period ended with no successful renewal


SubscriptionEvent = Literal["started", "renewed", "renewal_failed", "lapsed", "cancelling", "ended"]


class PlanView(Struct, frozen=True, kw_only=True):
    plan_id: str
    provider_id: str
    plan: str
    capability: str
    price_millicredits: int
    period_s: int
    trial_s: int
    description: str
    active: bool
    created_at_ms: int
    updated_at_ms: int


class SubscriptionView(Struct, frozen=True, kw_only=True):
    subscription_id: str
    plan_id: str
    plan: str
    buyer_id: str
    provider_id: str
    capability: str
    price_millicredits: int
    period_s: int
    state: SubscriptionState
    # Paid periods so far (a trial is not one), and what they cost in all.
    periods_charged: int
    charged_millicredits: int
    # The current period (or trial): access is paid until its end.
    period_started_at_ms: int
    period_ends_at_ms: int
    # past_due: when the charge is tried again, and when the grace ends.
    next_attempt_at_ms: int | None
    grace_ends_at_ms: int | None
    cancel_at_period_end: bool
    # Why the last renewal failed ("" when none did): an error code and words;
    # and how many tries of the current period's charge were refused.
    failure: str
    failed_attempts: int
    created_at_ms: int
    updated_at_ms: int
    # A human cancelled in the portal; the exchange applies it within seconds.
    cancel_requested: bool = False


class PlanReply(_Reply, frozen=True, tag="plan"):
    plan: PlanView


class PlansReply(_Reply, frozen=True, tag="plans"):
    plans: list[PlanView]


class SubscriptionReply(_Reply, frozen=True, tag="subscription"):
    subscription: SubscriptionView


class SubscriptionsReply(_Reply, frozen=True, tag="subscriptions"):
    subscriptions: list[SubscriptionView]
    has_more: bool


class SubscriptionTokenReply(_Reply, frozen=True, tag="subscription_token"):
    """A signed ``subscription.access`` token, for the buyer to show its provider."""

    token: Envelope


class GoodsView(Struct, frozen=True, kw_only=True):
    """An item as anyone may see it: its newest version's public facts, never a key."""

    item_id: str
    provider_id: str
    slug: str
    title: str
    description: str
    artifact_kind: str
    capability: str
    price_millicredits: int
    # The newest version, and the SHA-256 and size of its ciphertext.
    version: int
    ciphertext_sha256: str
    size_bytes: int
    terms: str
    # How many later versions a licence sold now covers (null: all).
    updates_included: int | None
    created_at_ms: int
    updated_at_ms: int


class GoodsReply(_Reply, frozen=True, tag="goods"):
    goods: GoodsView


class GoodsListReply(_Reply, frozen=True, tag="goods_list"):
    items: list[GoodsView]
    has_more: bool


class GoodsAccessReply(_Reply, frozen=True, tag="goods_access"):
    """A holder's way into one version: its licence, the version's content key sealed
    to the requester's id, and the ciphertext's layout and hash (read it with
    ``goods.chunk``). ``charged`` is true only in the answer to the ``goods.buy`` that paid."""

    licence: Envelope
    item_id: str
    version: int
    sealed_key: str
    ciphertext_sha256: str
    size_bytes: int
    chunk_count: int
    charged: bool


class GoodsChunkStoredReply(_Reply, frozen=True, tag="goods_chunk_stored"):
    """The exchange stored chunk ``index`` of a version: ``chunk_sha256`` is the SHA-256
    of the raw bytes it holds."""

    item_id: str
    version: int
    index: int
    chunk_sha256: str


class GoodsChunkReply(_Reply, frozen=True, tag="goods_chunk"):
    """Chunk ``index`` of a version's ciphertext (base64url of its raw bytes)."""

    item_id: str
    version: int
    index: int
    chunk_count: int
    size_bytes: int
    chunk: str


class ContractReply(_Reply, frozen=True, tag="contract"):
    contract: ContractView


class ContractEventEntry(Struct, frozen=True, kw_only=True):
    event: str
    actor_id: str
    to_state: ContractState
    detail: str
    at_ms: int


class EvidenceReply(_Reply, frozen=True, tag="evidence"):
    """Everything that shows what was agreed and what happened."""

    contract: ContractView
    quote: Envelope
    acceptance: Envelope
    record: Envelope
    events: list[ContractEventEntry]


class BalanceReply(_Reply, frozen=True, tag="balance"):
    agent_id: str
    available_millicredits: int
    held_millicredits: int
    credits_posted_millicredits: int
    debits_posted_millicredits: int


class TransactionEntry(Struct, frozen=True, kw_only=True):
    transfer_id: str
    code: str
    direction: Literal["in", "out"]
    amount_millicredits: int
    counterparty_account_id: str
    # True for an escrow hold (a pending transfer), whatever became of it later.
    is_hold: bool
    # The transfer's reference: the contract id for escrow steps, the
    # operator for mints.
    reference: str
    timestamp_us: int


class TransactionsReply(_Reply, frozen=True, tag="transactions"):
    entries: list[TransactionEntry]


class MintReply(_Reply, frozen=True, tag="minted"):
    transfer_id: str
    recipient_id: str
    amount_millicredits: int


class ListingRevision(Struct, frozen=True, kw_only=True):
    revision: int
    description: str
    price_millicredits: int
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    version: str
    tags: list[str]
    status: str
    changed_at_ms: int


class ListingHistoryReply(_Reply, frozen=True, tag="listing_history"):
    listing_id: str
    revisions: list[ListingRevision]
    has_more: bool


class RatingEntry(Struct, frozen=True, kw_only=True):
    contract_id: str
    provider_id: str
    buyer_id: str
    capability: str
    stars: int
    comment: str
    rated_at_ms: int


class RatingReply(_Reply, frozen=True, tag="rating"):
    rating: RatingEntry
    reputation: Reputation


class ReputationReply(_Reply, frozen=True, tag="reputation"):
    provider_id: str
    overall: Reputation
    capabilities: list[Reputation]
    ratings: list[RatingEntry]


class TransferReply(_Reply, frozen=True, tag="transferred"):
    transfer_id: str
    # The ledger reference of the transfer, as ``wallet.transactions`` shows it.
    reference: str
    payer_id: str
    payee_id: str
    amount_millicredits: int
    fee_millicredits: int
    net_millicredits: int
    memo: str
    created_at_ms: int
    # True when this answers a retry: the first outcome, nothing moved again.
    replayed: bool


class CashOutReply(_Reply, frozen=True, tag="cash_out"):
    """The payout a cash-out request made: ``paid``, ``failed`` or still ``pending``."""

    payout_id: str
    status: str
    credits: int
    gross_cents: int
    fee_cents: int
    net_cents: int
    failure_reason: str | None = None


class LinkedReply(_Reply, frozen=True, tag="linked"):
    """The portal linked the agent to the human account that issued the code."""

    agent_id: str
    label: str


class InfoReply(_Reply, frozen=True, tag="info"):
    exchange_id: str
    protocol_version: int
    escrow_fee_bps: int
    endpoints: list[str]
    # The human portal's key: it signs the portal's replies. None: no portal.
    portal_id: str | None = None
    # Keys the exchange signed with before its current one: records and
    # notices they signed are still the exchange's (docs/SECURITY.md).
    previous_exchange_ids: list[str] = []


class NoticesReply(_Reply, frozen=True, tag="notices"):
    """Where the agent's notices arrive: the agent queue-subscribes ``deliver_subject``
    with ``queue_group`` (before asking) and acknowledges what it handled with
    ``notices.ack`` (PROTOCOL.md section 1.7.2)."""

    deliver_subject: str
    queue_group: str


class NoticesAckedReply(_Reply, frozen=True, tag="notices_acked"):
    """How many of the acknowledged notices the exchange still held, and dropped."""

    removed: int


class ChunkStoredReply(_Reply, frozen=True, tag="chunk_stored"):
    """The exchange stored chunk ``index``: ``chunk_sha256`` is the SHA-256 of the
    raw bytes it holds, so the provider can check they are the ones it sent."""

    contract_id: str
    index: int
    chunk_sha256: str


class ResultChunkReply(_Reply, frozen=True, tag="result_chunk"):
    """Chunk ``index`` of a delivered stored result (base64url of its raw bytes)."""

    contract_id: str
    index: int
    chunk_count: int
    size_bytes: int
    chunk: str


Reply = (
    ErrorReply
    | ListingReply
    | SearchReply
    | ContractReply
    | EvidenceReply
    | BalanceReply
    | TransactionsReply
    | MintReply
    | InfoReply
    | LinkedReply
    | CashOutReply
    | ListingHistoryReply
    | RatingReply
    | ReputationReply
    | TransferReply
    | NoticesReply
    | NoticesAckedReply
    | ChunkStoredReply
    | ResultChunkReply
    | MeteredReply
    | MeteredCallReply
    | MeteredOfferReply
    | FeesReply
    | AnalyticsReply
    | MeteredEvidenceReply
    | GoodsReply
    | GoodsListReply
    | GoodsAccessReply
    | GoodsChunkStoredReply
    | GoodsChunkReply
    | PlanReply
    | PlansReply
    | SubscriptionReply
    | SubscriptionsReply
    | SubscriptionTokenReply
)


class SignedReply(_Signed, frozen=True, tag="reply"):
    """The exchange's (or the portal's) answer to one request, signed by its key.

    ``header.subject`` is the request's subject, ``header.audience`` the
    requester (``*`` for the unsigned ``info`` request), and
    ``request_sha256`` the SHA-256 of the request's exact payload bytes: a
    reply answers that request and no other (agent_client/replies.py).
    """

    request_sha256: Sha256Hex
    body: Reply


Document = (
    Advertise
    | SearchCatalog
    | Rfq
    | Quote
    | Decline
    | Counter
    | Reject
    | OpenContract
    | Deliver
    | UploadResult
    | GetResult
    | AcceptDelivery
    | GetContract
    | RejectDelivery
    | CancelContract
    | GetEvidence
    | Resolve
    | GetBalance
    | ListTransactions
    | Mint
    | LinkHuman
    | CashOut
    | SetListingStatus
    | GetListingHistory
    | GetReputation
    | RateContract
    | Transfer
    | ContractRecord
    | ContractOpenedNotice
    | DeliveredNotice
    | ContractUpdatedNotice
    | SubscribeNotices
    | AcknowledgeNotices
    | MeteredOfferRequest
    | MeteredOffer
    | OpenMetered
    | UsageReceipt
    | ClaimUsage
    | CloseMetered
    | GetMetered
    | MeteredCall
    | MeteredNotice
    | GetFees
    | SetFees
    | GetAnalytics
    | GetMeteredEvidence
    | UploadGoods
    | PublishGoods
    | BuyGoods
    | DownloadGoods
    | GetGoodsChunk
    | GetGoods
    | ListGoods
    | GoodsLicence
    | GoodsNotice
    | PublishPlan
    | ListPlans
    | Subscribe
    | CancelSubscription
    | GetSubscription
    | ListSubscriptions
    | GetSubscriptionToken
    | SubscriptionNotice
    | SubscriptionToken
    | SignedReply
)
Notice = ContractOpenedNotice | DeliveredNotice | ContractUpdatedNotice

# Encoders and decoders are built once: building them is the costly part.
json_encoder = msgspec.json.Encoder()
envelope_decoder = msgspec.json.Decoder(Envelope)
document_decoder: msgspec.json.Decoder[Document] = msgspec.json.Decoder(Document)
reply_decoder: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)


class KindProbe(Struct, frozen=True):
    """Decodes only ``kind``, to tell an unknown kind from a malformed one."""

    kind: str = ""


kind_probe_decoder = msgspec.json.Decoder(KindProbe)
DOCUMENT_KINDS: frozenset[str] = frozenset(
    tag
    for document_type in Document.__args__
    if isinstance(tag := document_type.__struct_config__.tag, str)
)
