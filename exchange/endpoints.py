"""The exchange's NATS endpoints: each document type bound to its use case.

The signed-request service (exchange/signed_service.py) does the rest:
admission, verification, error mapping and signed answers. Every worker
serves every endpoint in one queue group, as a NATS micro service (so
``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS`` work for free).
"""

from __future__ import annotations

import logging

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck, RawStreamMsg
from nats.js.errors import NotFoundError

from agent_client import subjects
from agent_client.limits import PROTOCOL_VERSION
from agent_client.protocol import (
    AcceptDelivery,
    Advertise,
    CancelContract,
    ContractReply,
    Deliver,
    Document,
    ErrorCode,
    ErrorReply,
    GetBalance,
    GetContract,
    GetEvidence,
    GetListingHistory,
    GetReputation,
    GetResult,
    InfoReply,
    ListingReply,
    ListTransactions,
    Mint,
    NoticesReply,
    OpenContract,
    RateContract,
    RejectDelivery,
    Reply,
    Resolve,
    SearchCatalog,
    SetListingStatus,
    SubscribeNotices,
    TransactionsReply,
    Transfer,
    UploadResult,
)
from agent_client.signing import Clock, VerifiedDocument, sha256_hex
from broker.streams import RESULT_STREAM, ensure_notice_consumer, notice_consumer_name
from exchange.admission import AdmissionLimits, AgentAdmission
from exchange.errors import ExchangeError
from exchange.limits import (
    AGENT_DROPS_BEFORE_EVICTION,
    AGENT_PROTOCOL_ERROR_BURST,
    AGENT_PROTOCOL_ERRORS_PER_S,
    AGENT_REFUSAL_ANSWER_BURST,
    AGENT_REFUSAL_ANSWERS_PER_S,
    AGENT_REQUEST_BURST,
    AGENT_REQUESTS_IN_FLIGHT_MAX,
    AGENT_REQUESTS_PER_S,
    AGENTS_TRACKED_MAX,
    INFO_REQUEST_BYTES_MAX,
    INFO_REQUEST_BYTES_MIN,
    REQUEST_CONCURRENCY_MAX,
)
from exchange.signed_service import (
    AgentEvictor,
    Answer,
    OpenRoute,
    Route,
    ServiceIdentity,
    SignedRequestService,
)
from exchange.use_cases import (
    AccountUseCases,
    CatalogUseCases,
    ContractUseCases,
    ExchangeContext,
    ReputationUseCases,
    TransferUseCases,
)
from exchange.use_cases.results import ResultUseCases
from wallet import LedgerUnavailable, UnsupportedDatabase, ValueOutOfRange

__all__ = [
    "DEFAULT_ADMISSION",
    "ExchangeEndpoints",
    "JetStreamNoticePublisher",
    "JetStreamResultStore",
    "map_exchange_error",
]

log = logging.getLogger(__name__)

SERVICE = ServiceIdentity(
    name="agentx-exchange",
    version="0.2.0",
    description="Agent Exchange: catalog, contracts, escrow, wallets",
    queue_group=subjects.EXCHANGE_QUEUE_GROUP,
    audience="exchange",
)
NOTICE_PUBLISH_TIMEOUT_S = 5.0
# One chunk stored (JetStream's acknowledgement) or read back.
RESULT_STORE_TIMEOUT_S = 5.0
DEFAULT_ADMISSION = AdmissionLimits(
    requests_per_s=AGENT_REQUESTS_PER_S,
    request_burst=AGENT_REQUEST_BURST,
    in_flight_max=AGENT_REQUESTS_IN_FLIGHT_MAX,
    protocol_errors_per_s=AGENT_PROTOCOL_ERRORS_PER_S,
    protocol_error_burst=AGENT_PROTOCOL_ERROR_BURST,
    refusal_answers_per_s=AGENT_REFUSAL_ANSWERS_PER_S,
    refusal_answer_burst=AGENT_REFUSAL_ANSWER_BURST,
    agents_tracked_max=AGENTS_TRACKED_MAX,
    evict_after_drops=AGENT_DROPS_BEFORE_EVICTION,
)


class JetStreamNoticePublisher:
    """Publishes notices into the notice stream; the notice id deduplicates retries."""

    def __init__(
        self, js: JetStreamContext, /, *, timeout_s: float = NOTICE_PUBLISH_TIMEOUT_S
    ) -> None:
        self._js = js
        self._timeout_s = timeout_s

    async def publish_notice(self, subject: str, payload: bytes, /, *, notice_id: str) -> None:
        await self._js.publish(
            subject, payload, timeout=self._timeout_s, headers={"Nats-Msg-Id": notice_id}
        )


class JetStreamResultStore:
    """Keeps result chunks in the ``AGENTX_RESULTS`` stream, one subject per chunk.

    A chunk is published with a message id naming the chunk and its bytes, and
    only counts once JetStream acknowledged it; a retried upload within the
    stream's duplicate window is stored once. The window would also take the
    same bytes stored, replaced and stored again for a duplicate and drop
    them, so a duplicate is checked against what the stream holds, and sent
    again under an id of its own if it is not what the stream holds.
    """

    def __init__(
        self, js: JetStreamContext, /, *, timeout_s: float = RESULT_STORE_TIMEOUT_S
    ) -> None:
        self._js = js
        self._timeout_s = timeout_s

    async def put_chunk(self, contract_id: str, index: int, chunk: bytes, /) -> None:
        subject = subjects.result_chunk(contract_id, index)
        message_id = f"{contract_id}.{index}.{sha256_hex(chunk)}"
        try:
            acknowledgement = await self._publish(subject, chunk, message_id)
            if acknowledgement.duplicate:
                stored = await self._last(subject)
                if stored is None or stored.data != chunk:
                    replaced_sequence = acknowledgement.seq if stored is None else stored.seq
                    await self._publish(subject, chunk, f"{message_id}.{replaced_sequence}")
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not store chunk %d of %s: %s", index, contract_id, exc)
            raise ExchangeError(
                ErrorCode.UNAVAILABLE, "the result store did not take the chunk, retry later"
            ) from exc

    async def get_chunk(self, contract_id: str, index: int, /) -> bytes | None:
        try:
            stored = await self._last(subjects.result_chunk(contract_id, index))
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not read chunk %d of %s: %s", index, contract_id, exc)
            raise ExchangeError(
                ErrorCode.UNAVAILABLE, "the result store is unavailable, retry later"
            ) from exc
        return None if stored is None else bytes(stored.data or b"")

    async def _publish(self, subject: str, chunk: bytes, message_id: str) -> PubAck:
        return await self._js.publish(
            subject,
            chunk,
            timeout=self._timeout_s,
            stream=RESULT_STREAM,
            headers={"Nats-Msg-Id": message_id},
        )

    async def _last(self, subject: str) -> RawStreamMsg | None:
        try:
            return await self._js.get_last_msg(RESULT_STREAM, subject)
        except NotFoundError:
            return None


class ExchangeEndpoints:
    """Binds the use cases to their document types, served by one signed-request service."""

    def __init__(
        self,
        client: Client,
        context: ExchangeContext,
        js: JetStreamContext,
        /,
        *,
        clock: Clock,
        escrow_fee_bps: int,
        portal_id: str | None = None,
        previous_exchange_ids: frozenset[str] = frozenset(),
        admission: AdmissionLimits = DEFAULT_ADMISSION,
        concurrency_max: int = REQUEST_CONCURRENCY_MAX,
        evictor: AgentEvictor | None = None,
    ) -> None:
        self._js = js
        self._catalog = CatalogUseCases(context)
        self._contracts = ContractUseCases(context)
        self._accounts = AccountUseCases(context)
        self._reputation = ReputationUseCases(context, self._contracts)
        # The product plan's escrow fee is also the fee of a direct transfer.
        self._transfers = TransferUseCases(context, fee_rate_bps=escrow_fee_bps)
        self._results = ResultUseCases(context)
        routes = [
            _route(document_type, answer) for document_type, answer in self._answers().items()
        ]
        assert {route.name for route in routes} == set(subjects.EXCHANGE_ENDPOINTS)
        info = InfoReply(
            exchange_id=context.exchange_id,
            protocol_version=PROTOCOL_VERSION,
            escrow_fee_bps=escrow_fee_bps,
            endpoints=list(subjects.EXCHANGE_ENDPOINTS),
            portal_id=portal_id,
            previous_exchange_ids=sorted(previous_exchange_ids),
        )
        self._service = SignedRequestService(
            client,
            context.keys,
            identity=SERVICE,
            routes=routes,
            open_routes=[
                OpenRoute(
                    "info",
                    subjects.EXCHANGE_INFO,
                    info,
                    INFO_REQUEST_BYTES_MIN,
                    INFO_REQUEST_BYTES_MAX,
                )
            ],
            map_error=map_exchange_error,
            admission=AgentAdmission(admission),
            clock=clock,
            concurrency_max=concurrency_max,
            evictor=evictor,
        )

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()

    def _answers(self) -> dict[type[Document], Answer]:
        """Each request document and the use case that answers it."""
        return {
            Advertise: self._advertise,
            SearchCatalog: self._search,
            SetListingStatus: self._set_listing_status,
            GetListingHistory: self._listing_history,
            GetReputation: self._reputation_of,
            OpenContract: self._open_contract,
            Deliver: self._deliver,
            UploadResult: self._upload_result,
            GetResult: self._read_result,
            AcceptDelivery: self._accept_delivery,
            GetContract: self._get_contract,
            RejectDelivery: self._reject_delivery,
            CancelContract: self._cancel,
            GetEvidence: self._evidence,
            Resolve: self._resolve,
            RateContract: self._rate,
            GetBalance: self._balance,
            ListTransactions: self._transactions,
            Transfer: self._transfer,
            Mint: self._mint,
            SubscribeNotices: self._subscribe_notices,
        }

    # Each answer below only unpacks the verified document for its use case.

    async def _advertise(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, Advertise)
        return ListingReply(listing=await self._catalog.advertise(signer, verified.document))

    async def _search(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, SearchCatalog)
        return await self._catalog.search(verified.document)

    async def _set_listing_status(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, SetListingStatus)
        return ListingReply(listing=await self._catalog.set_status(signer, verified.document))

    async def _listing_history(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, GetListingHistory)
        return await self._catalog.history(verified.document)

    async def _reputation_of(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, GetReputation)
        return await self._reputation.reputation(verified.document)

    async def _rate(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, RateContract)
        return await self._reputation.rate(signer, verified.document)

    async def _transfer(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, Transfer)
        return await self._transfers.transfer(signer, verified.document)

    async def _open_contract(self, signer: str, verified: VerifiedDocument) -> Reply:
        return ContractReply(contract=await self._contracts.open_contract(signer, verified))

    async def _deliver(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, Deliver)
        return ContractReply(contract=await self._contracts.deliver(signer, verified.document))

    async def _upload_result(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, UploadResult)
        return await self._results.upload(signer, verified.document)

    async def _read_result(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, GetResult)
        return await self._results.read(signer, verified.document)

    async def _accept_delivery(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, AcceptDelivery)
        contract = await self._contracts.accept_delivery(signer, verified.document)
        return ContractReply(contract=contract)

    async def _get_contract(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, GetContract)
        contract = await self._contracts.get_contract(signer, verified.document.contract_id)
        return ContractReply(contract=contract)

    async def _reject_delivery(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, RejectDelivery)
        contract = await self._contracts.reject_delivery(signer, verified.document)
        return ContractReply(contract=contract)

    async def _cancel(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, CancelContract)
        return ContractReply(contract=await self._contracts.cancel(signer, verified.document))

    async def _evidence(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, GetEvidence)
        return await self._contracts.evidence(signer, verified.document.contract_id)

    async def _resolve(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, Resolve)
        return ContractReply(contract=await self._contracts.resolve(signer, verified.document))

    async def _balance(self, signer: str, verified: VerifiedDocument) -> Reply:
        return await self._accounts.balance(signer)

    async def _transactions(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, ListTransactions)
        entries = await self._accounts.transactions(signer, verified.document)
        return TransactionsReply(entries=entries)

    async def _mint(self, signer: str, verified: VerifiedDocument) -> Reply:
        assert isinstance(verified.document, Mint)
        return await self._accounts.mint(signer, verified.document)

    async def _subscribe_notices(self, signer: str, verified: VerifiedDocument) -> Reply:
        """Create (or keep) the agent's notice consumer; agents cannot touch JetStream."""
        try:
            await ensure_notice_consumer(self._js, signer)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("could not set up the notice consumer of %s: %s", signer, exc)
            raise ExchangeError(ErrorCode.UNAVAILABLE, "notices are unavailable, retry") from exc
        return NoticesReply(
            deliver_subject=subjects.notice_deliver_subject(signer),
            queue_group=notice_consumer_name(signer),
        )


def _route(document_type: type[Document], answer: Answer) -> Route:
    """The endpoint of a document type: its name is the document's tag."""
    tag = document_type.__struct_config__.tag
    assert isinstance(tag, str)
    return Route(tag, subjects.exchange_request_wildcard(tag), document_type, answer)


def map_exchange_error(exc: Exception, /) -> ErrorReply | None:
    """The wire error for a refusal of the use cases; None for a bug."""
    if isinstance(exc, ExchangeError):
        return ErrorReply(code=exc.code.value, message=exc.message, contract_id=exc.contract_id)
    if isinstance(exc, LedgerUnavailable | UnsupportedDatabase):
        log.warning("ledger unavailable: %s", exc)
        return ErrorReply(
            code=ErrorCode.UNAVAILABLE.value, message="the ledger is unavailable, retry later"
        )
    if isinstance(exc, ValueOutOfRange):
        return ErrorReply(code=ErrorCode.INVALID_REQUEST.value, message=str(exc))
    return None
