"""The buyer's MCP tools on paper: their arguments, their schemas, and how answers look.

Pure: no I/O, no MCP session. Each tool's arguments are one msgspec Struct,
which both decodes a call (with plain-worded errors) and gives the tool's
JSON Schema, so the two cannot drift. Answers are a :class:`ToolOutcome`:
a sentence for the LLM, the same facts as structured data, and whether it
is an error; :mod:`agent_client.bridges.mcp_buyer` turns it into MCP content.

Amounts cross the MCP side in credits (what people and LLMs read, exact to
the millicredit) and also in millicredits (the exchange's integer unit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta, Struct

from agent_client import limits
from agent_client.credit_text import MILLICREDITS_PER_CREDIT, format_millicredits
from agent_client.offers import ReceivedQuote
from agent_client.protocol import BalanceReply, ContractView, Listing, TransactionEntry

__all__ = [
    "HIRE_TOOL_PREFIX",
    "RESULT_WAIT_MAX_S",
    "STATIC_TOOLS",
    "AcceptArguments",
    "BalanceArguments",
    "FindServicesArguments",
    "GetQuotesArguments",
    "HireArguments",
    "RejectArguments",
    "ToolOutcome",
    "TransactionsArguments",
    "WaitResultArguments",
    "balance_view",
    "contract_view",
    "credits_to_millicredits",
    "decode_arguments",
    "delivery_text",
    "hire_tool_name",
    "hire_tool_schema",
    "listing_view",
    "quote_view",
    "tool_schema",
    "transaction_view",
]

_S = TypeVar("_S", bound=Struct)

HIRE_TOOL_PREFIX = "hire_"
# Tool names many hosts accept (Claude's API: ^[a-zA-Z0-9_-]{1,64}$).
TOOL_NAME_LENGTH_MAX = 64
RESULT_WAIT_MAX_S = 120.0
FIND_RESULTS_MAX = 50
QUOTE_WAIT_MAX_S = 30.0
TRANSACTIONS_SHOWN_MAX = 50
REASON_LENGTH_MAX = 1024

QuoteId = Annotated[
    str, Meta(min_length=1, max_length=32, description="a quote id that get_quotes returned")
]
ContractId = Annotated[
    str, Meta(min_length=1, max_length=64, description="the contract id that hire returned")
]
CapabilityText = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=limits.CAPABILITY_LENGTH_MAX,
        pattern=r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$",
        description="a capability name, such as text.upper",
    ),
]


class FindServicesArguments(Struct, forbid_unknown_fields=True, kw_only=True):
    query: Annotated[
        str, Meta(max_length=128, description="words to find in capability, description, tags")
    ] = ""
    capability_prefix: Annotated[
        str,
        Meta(
            max_length=limits.CAPABILITY_LENGTH_MAX,
            pattern=r"^[a-z0-9_.-]*$",
            description="only capabilities starting with this, e.g. 'text.' (whole words)",
        ),
    ] = ""
    tags: Annotated[
        list[Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=32)]],
        Meta(max_length=limits.SEARCH_TAGS_MAX, description="tags every listing must have"),
    ] = []
    max_results: Annotated[int, Meta(ge=1, le=FIND_RESULTS_MAX)] = 10


class GetQuotesArguments(Struct, forbid_unknown_fields=True, kw_only=True):
    capability: CapabilityText
    budget_credits: Annotated[
        float, Meta(gt=0, description="the most you would pay, in credits (1 credit = $0.10)")
    ]
    task_summary: Annotated[
        str,
        Meta(max_length=limits.TEXT_LENGTH_MAX, description="one line providers see; no secrets"),
    ] = ""
    timeout_s: Annotated[
        float, Meta(gt=0, le=QUOTE_WAIT_MAX_S, description="how long to collect quotes")
    ] = 2.0
    delivery_within_s: Annotated[int, Meta(ge=1, le=limits.DELIVERY_DEADLINE_MAX_S)] = 60


class HireArguments(Struct, forbid_unknown_fields=True, kw_only=True):
    quote_id: QuoteId
    task: Annotated[Any, Meta(description="the task; it must match the listing's input_schema")]


class WaitResultArguments(Struct, forbid_unknown_fields=True, kw_only=True):
    contract_id: ContractId
    timeout_s: Annotated[float, Meta(gt=0, le=RESULT_WAIT_MAX_S)] = 30.0


class AcceptArguments(Struct, forbid_unknown_fields=True, kw_only=True):
    contract_id: ContractId


class RejectArguments(Struct, forbid_unknown_fields=True, kw_only=True):
    contract_id: ContractId
    reason: Annotated[
        str, Meta(min_length=1, max_length=REASON_LENGTH_MAX, description="what is wrong")
    ]


class BalanceArguments(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class TransactionsArguments(Struct, forbid_unknown_fields=True, kw_only=True):
    limit: Annotated[int, Meta(ge=1, le=TRANSACTIONS_SHOWN_MAX)] = 10


# Name -> (arguments, description): the tools every server has.
STATIC_TOOLS: dict[str, tuple[type[Struct], str]] = {
    "find_services": (
        FindServicesArguments,
        "Search the exchange's listings. Each result has its capability, description, price "
        "(credits), provider, rating and input_schema (the task a hire must send), and the "
        "name of its hire_<capability> tool.",
    ),
    "get_quotes": (
        GetQuotesArguments,
        "Ask every provider of a capability for a signed quote within a budget. Returns quotes "
        "(quote_id, price, provider, expiry), best first; nothing is spent.",
    ),
    "hire": (
        HireArguments,
        "Hire with a quote: the task is checked against the listing's input_schema first, then "
        "the exchange holds the price in escrow until you accept or reject the delivery. "
        "Prefer the hire_<capability> tool, whose task schema is the listing's.",
    ),
    "wait_result": (
        WaitResultArguments,
        "Wait (at most 120 s) for a hired contract's result; opened with this agent's key if "
        "sealed.",
    ),
    "accept_delivery": (
        AcceptArguments,
        "Accept a result you read with wait_result: the exchange pays the provider.",
    ),
    "reject_delivery": (
        RejectArguments,
        "Reject a result with a reason: the contract goes to dispute, the price stays held.",
    ),
    "balance": (BalanceArguments, "This agent's credits: available and held in escrow."),
    "recent_transactions": (TransactionsArguments, "This agent's latest ledger entries."),
}


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool answers: a sentence, the same facts as data, and whether it failed."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)
    is_error: bool = False


def tool_schema(arguments: type[Struct], /) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments (an object at the root, as MCP asks)."""
    document = msgspec.json.schema(arguments)
    schema: dict[str, Any] = document["$defs"][arguments.__name__]
    schema.pop("title", None)
    return schema


def decode_arguments(arguments: dict[str, Any] | None, kind: type[_S], /) -> _S | str:
    """The decoded arguments, or what is wrong with them in one line."""
    try:
        return msgspec.convert(arguments or {}, type=kind)
    except msgspec.ValidationError as exc:
        return f"invalid arguments: {exc}"


def hire_tool_name(capability: str, /) -> str:
    """``hire_text_upper`` for ``text.upper``: letters, digits, ``_`` and ``-`` only."""
    name = HIRE_TOOL_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", capability)
    return name[:TOOL_NAME_LENGTH_MAX]


def hire_tool_schema(input_schema: dict[str, Any], /) -> dict[str, Any]:
    """A hire_<capability> tool's arguments: a quote id, and the listing's schema as ``task``."""
    return {
        "type": "object",
        "properties": {
            "quote_id": {"type": "string", "minLength": 1, "maxLength": 32},
            "task": input_schema or {"description": "any JSON value"},
        },
        "required": ["quote_id", "task"],
        "additionalProperties": False,
    }


def credits_to_millicredits(credits: float, /) -> int | None:
    """Exact millicredits of an amount in credits, or None if it is finer than 0.001."""
    try:
        amount = Decimal(str(credits)) * MILLICREDITS_PER_CREDIT
    except InvalidOperation:
        return None
    if amount != amount.to_integral_value() or not amount.is_finite():
        return None
    return int(amount)


def _money(amount_millicredits: int, /) -> dict[str, Any]:
    return {
        "credits": format_millicredits(amount_millicredits),
        "millicredits": amount_millicredits,
    }


def listing_view(listing: Listing, /) -> dict[str, Any]:
    reputation = listing.reputation
    return {
        "capability": listing.capability,
        "description": listing.description,
        "price": _money(listing.price_millicredits),
        "provider_id": listing.provider_id,
        "rating": None if reputation is None else reputation.rating_mean,
        "settled_contracts": 0 if reputation is None else reputation.settled_count,
        "tags": list(listing.tags),
        "input_schema": listing.input_schema,
        "hire_tool": hire_tool_name(listing.capability),
    }


def quote_view(quote_id: str, quote: ReceivedQuote, /) -> dict[str, Any]:
    return {
        "quote_id": quote_id,
        "capability": quote.quote.capability,
        "price": _money(quote.price_millicredits),
        "provider_id": quote.provider_id,
        "expires_at_ms": quote.quote.header.expires_at_ms,
        "delivery_deadline_ms": quote.quote.delivery_deadline_ms,
        "terms": quote.quote.terms,
    }


def contract_view(view: ContractView, /) -> dict[str, Any]:
    return {
        "contract_id": view.contract_id,
        "state": view.state.value,
        "capability": view.capability,
        "provider_id": view.provider_id,
        "price": _money(view.price_millicredits),
        "delivery_deadline_ms": view.delivery_deadline_ms,
    }


def balance_view(balance: BalanceReply, /) -> dict[str, Any]:
    return {
        "agent_id": balance.agent_id,
        "available": _money(balance.available_millicredits),
        "held": _money(balance.held_millicredits),
    }


def transaction_view(entry: TransactionEntry, /) -> dict[str, Any]:
    return {
        "transfer_id": entry.transfer_id,
        "kind": entry.code,
        "direction": entry.direction,
        "amount": _money(entry.amount_millicredits),
        "escrow_hold": entry.is_hold,
        "reference": entry.reference,
        "timestamp_us": entry.timestamp_us,
    }


def delivery_text(result: Any, /) -> str:
    """A result as text: a string as it is, any other JSON value as JSON."""
    if isinstance(result, str):
        return result
    return msgspec.json.encode(result).decode()
