"""The exchange's NATS endpoints: decode, verify, call the service, map errors.

Every worker serves every endpoint in one queue group, as a NATS micro
service (so ``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS`` work for free).
A handler never lets an exception escape: each request gets either a result
or an :class:`~agent_client.protocol.ErrorReply` with a stable code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import nats.micro
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.micro.request import Request
from nats.micro.service import Service

from agent_client import limits as protocol_limits
from agent_client import subjects
from agent_client.errors import SignatureRejected
from agent_client.limits import PROTOCOL_VERSION
from agent_client.protocol import (
    AcceptDelivery,
    Advertise,
    CancelContract,
    ContractReply,
    Deliver,
    ErrorCode,
    ErrorReply,
    GetBalance,
    GetContract,
    GetEvidence,
    GetListingHistory,
    GetReputation,
    InfoReply,
    ListingReply,
    ListTransactions,
    Mint,
    ObjectRef,
    OpenContract,
    RateContract,
    RejectDelivery,
    Reply,
    Resolve,
    SearchCatalog,
    SetListingStatus,
    TransactionsReply,
    Transfer,
    json_encoder,
)
from agent_client.signing import Clock, ReplayGuard, VerifiedDocument, open_envelope, verify_request
from agent_client.transport import flush_subscriptions
from exchange.errors import ExchangeError
from exchange.limits import REQUEST_CONCURRENCY_MAX
from exchange.use_cases import (
    AccountUseCases,
    CatalogUseCases,
    ContractUseCases,
    ExchangeContext,
    ReputationUseCases,
    TransferUseCases,
)
from wallet import LedgerUnavailable, UnsupportedDatabase, ValueOutOfRange

__all__ = ["ExchangeEndpoints", "JetStreamNoticePublisher", "JetStreamResultStore"]

log = logging.getLogger(__name__)

SERVICE_NAME = "agentx-exchange"
SERVICE_VERSION = "0.1.0"
EXCHANGE_AUDIENCE = "exchange"
NOTICE_PUBLISH_TIMEOUT_S = 5.0

UseCase = Callable[[str, VerifiedDocument], Awaitable[Reply]]


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
    """Reads result objects from the exchange's object store bucket, within limits."""

    def __init__(self, js: JetStreamContext, /) -> None:
        self._js = js

    async def fetch(self, reference: ObjectRef, /) -> bytes:
        if reference.bucket != protocol_limits.RESULT_BUCKET:
            raise ExchangeError(
                ErrorCode.INVALID_REQUEST, "results live in the agentx-results bucket"
            )
        try:
            store = await self._js.object_store(reference.bucket)
            info = await store.get_info(reference.name)
            if info.size != reference.size_bytes:
                raise ExchangeError(
                    ErrorCode.HASH_MISMATCH, "the object's size is not the one sent"
                )
            result = await store.get(reference.name)
        except nats.errors.Error as exc:
            raise ExchangeError(
                ErrorCode.NOT_FOUND, f"the result object is missing: {exc}"
            ) from exc
        return bytes(result.data or b"")


class ExchangeEndpoints:
    """Binds the service's use cases to NATS subjects."""

    def __init__(
        self,
        client: Client,
        context: ExchangeContext,
        /,
        *,
        clock: Clock,
        escrow_fee_bps: int,
        concurrency_max: int = REQUEST_CONCURRENCY_MAX,
    ) -> None:
        self._client = client
        self._catalog = CatalogUseCases(context)
        self._contracts = ContractUseCases(context)
        self._accounts = AccountUseCases(context)
        self._reputation = ReputationUseCases(context, self._contracts)
        # The product plan's escrow fee is also the fee of a direct transfer.
        self._transfers = TransferUseCases(context, fee_rate_bps=escrow_fee_bps)
        self._clock = clock
        self._replay_guard = ReplayGuard()
        self._slots = asyncio.Semaphore(concurrency_max)
        self._tasks: set[asyncio.Task[None]] = set()
        self._micro: Service | None = None
        self._info = json_encoder.encode(
            InfoReply(
                exchange_id=context.exchange_id,
                protocol_version=PROTOCOL_VERSION,
                escrow_fee_bps=escrow_fee_bps,
                endpoints=list(subjects.EXCHANGE_ENDPOINTS),
            )
        )
        self._routes: dict[str, tuple[type[Any], UseCase]] = {
            "catalog.advertise": (Advertise, self._advertise),
            "catalog.search": (SearchCatalog, self._search),
            "catalog.status": (SetListingStatus, self._set_listing_status),
            "catalog.history": (GetListingHistory, self._listing_history),
            "catalog.reputation": (GetReputation, self._reputation_of),
            "contract.open": (OpenContract, self._open_contract),
            "contract.deliver": (Deliver, self._deliver),
            "contract.accept": (AcceptDelivery, self._accept_delivery),
            "contract.get": (GetContract, self._get_contract),
            "contract.reject": (RejectDelivery, self._reject_delivery),
            "contract.cancel": (CancelContract, self._cancel),
            "contract.evidence": (GetEvidence, self._evidence),
            "operator.resolve": (Resolve, self._resolve),
            "contract.rate": (RateContract, self._rate),
            "wallet.balance": (GetBalance, self._balance),
            "wallet.transactions": (ListTransactions, self._transactions),
            "wallet.transfer": (Transfer, self._transfer),
            "operator.mint": (Mint, self._mint),
        }
        assert set(self._routes) == set(subjects.EXCHANGE_ENDPOINTS)

    async def start(self) -> None:
        self._micro = await nats.micro.add_service(
            self._client,
            name=SERVICE_NAME,
            version=SERVICE_VERSION,
            description="Agent Exchange: catalog, contracts, escrow, wallets",
            queue_group=subjects.EXCHANGE_QUEUE_GROUP,
        )
        await self._micro.add_endpoint(
            name="info", subject=subjects.EXCHANGE_INFO, handler=self._answer_info
        )
        for endpoint in self._routes:
            await self._micro.add_endpoint(
                name=endpoint.replace(".", "-"),
                subject=subjects.exchange_request_wildcard(endpoint),
                handler=self._dispatcher(endpoint),
            )
        await flush_subscriptions(self._client)

    async def stop(self) -> None:
        if self._micro is not None:
            await self._micro.stop()
            self._micro = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _answer_info(self, request: Request) -> None:
        await request.respond(self._info)

    def _dispatcher(self, endpoint: str) -> Callable[[Request], Awaitable[None]]:
        # nats-py runs one subscription's callbacks one at a time; handing each
        # request to a task (bounded by the semaphore) lets slow database work
        # overlap instead of queueing behind one another.
        async def dispatch(request: Request) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(endpoint, request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return dispatch

    async def _handle(self, endpoint: str, request: Request) -> None:
        try:
            reply = await self._reply_for(endpoint, request.subject, request.data)
            await request.respond(json_encoder.encode(reply))
        except Exception:
            log.exception("could not answer a request on %s", request.subject)
        finally:
            self._slots.release()

    async def _reply_for(self, endpoint: str, subject: str, data: bytes) -> Reply:
        expected_type, use_case = self._routes[endpoint]
        try:
            verified = verify_request(
                open_envelope(data),
                subject=subject,
                subject_agent_id=subjects.agent_id_in_request_subject(subject),
                clock=self._clock,
                replay_guard=self._replay_guard,
            )
            document = verified.document
            if not isinstance(document, expected_type):
                return _error(ErrorCode.WRONG_KIND, f"{endpoint} takes {expected_type.__name__}")
            if document.header.audience != EXCHANGE_AUDIENCE:
                return _error(ErrorCode.WRONG_AUDIENCE, "requests are addressed to 'exchange'")
            return await use_case(document.header.issuer, verified)
        except SignatureRejected as exc:
            return _error(ErrorCode(exc.code), exc.message)
        except ExchangeError as exc:
            return ErrorReply(code=exc.code.value, message=exc.message, contract_id=exc.contract_id)
        except (LedgerUnavailable, UnsupportedDatabase) as exc:
            log.warning("ledger unavailable on %s: %s", subject, exc)
            return _error(ErrorCode.UNAVAILABLE, "the ledger is unavailable, retry later")
        except ValueOutOfRange as exc:
            return _error(ErrorCode.INVALID_REQUEST, str(exc))
        except Exception:
            log.exception("internal error on %s", subject)
            return _error(ErrorCode.INTERNAL, "internal error")

    # Each route below only unpacks the verified document for its use case.

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


def _error(code: ErrorCode, message: str) -> ErrorReply:
    return ErrorReply(code=code.value, message=message)
