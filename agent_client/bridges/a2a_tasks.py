"""The A2A gateway's pure parts: task states, message parts, the lifetime budget.

Nothing here does I/O, so each rule is tested alone
(tests/bridges/test_a2a_gateway.py):

- :func:`task_state_for` maps each step of a purchase onto the A2A task
  state the client sees (the table in docs/BRIDGES.md, section 3);
- :func:`task_input` and :func:`task_for_schema` turn a message's parts
  into the task JSON a listing asks for, or say why they cannot;
- :func:`schema_problem` checks a task against a listing's input schema
  (the exchange does not: it checks results only) in bounded work;
- :class:`LifetimeBudget` keeps the gateway under ``--budget-credits`` for
  its whole life, counting what is held by purchases in flight.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from a2a.helpers import get_data_parts
from a2a.types import Part, TaskState

from agent_client.schema_checks import SchemaTooComplex, SchemaUnusable, failing_reasons

__all__ = [
    "BadMessage",
    "LifetimeBudget",
    "PurchaseStep",
    "Reservation",
    "TaskInput",
    "schema_problem",
    "task_for_schema",
    "task_input",
    "task_state_for",
]

TEXT_FIELD = "text"


class PurchaseStep(enum.Enum):
    """Where one A2A task's purchase is; each step is one A2A task state."""

    RFQ_SENT = "rfq_sent"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    HIRED = "hired"
    DELIVERED = "delivered"
    RELEASED = "released"
    NO_QUOTE = "no_quote"
    REFUNDED = "refunded"
    DELIVERY_FAILED = "delivery_failed"
    BAD_TASK = "bad_task"
    UNKNOWN_CAPABILITY = "unknown_capability"
    OVER_CEILING = "over_ceiling"
    OVER_BUDGET = "over_budget"
    REFUSED_BY_CONTROLS = "refused_by_controls"
    BUSY = "busy"
    CANCELED_BEFORE_HIRE = "canceled_before_hire"
    CANCELED_AFTER_HIRE = "canceled_after_hire"


_STATE_BY_STEP: Mapping[PurchaseStep, TaskState] = {
    PurchaseStep.RFQ_SENT: TaskState.TASK_STATE_SUBMITTED,
    # The hire is above the human's approval threshold: the approval happens
    # out of band, in the portal, while the gateway retries the same hire.
    PurchaseStep.WAITING_FOR_APPROVAL: TaskState.TASK_STATE_AUTH_REQUIRED,
    PurchaseStep.HIRED: TaskState.TASK_STATE_WORKING,
    PurchaseStep.DELIVERED: TaskState.TASK_STATE_WORKING,
    PurchaseStep.RELEASED: TaskState.TASK_STATE_COMPLETED,
    PurchaseStep.NO_QUOTE: TaskState.TASK_STATE_FAILED,
    PurchaseStep.REFUNDED: TaskState.TASK_STATE_FAILED,
    PurchaseStep.DELIVERY_FAILED: TaskState.TASK_STATE_FAILED,
    PurchaseStep.BAD_TASK: TaskState.TASK_STATE_FAILED,
    # Nothing was spent on these: the gateway will not (or may not) buy.
    PurchaseStep.UNKNOWN_CAPABILITY: TaskState.TASK_STATE_REJECTED,
    PurchaseStep.OVER_CEILING: TaskState.TASK_STATE_REJECTED,
    PurchaseStep.OVER_BUDGET: TaskState.TASK_STATE_REJECTED,
    # The human's portal controls refused the hire (a limit, the freeze, an
    # approval refused or not given in time).
    PurchaseStep.REFUSED_BY_CONTROLS: TaskState.TASK_STATE_REJECTED,
    PurchaseStep.BUSY: TaskState.TASK_STATE_REJECTED,
    PurchaseStep.CANCELED_BEFORE_HIRE: TaskState.TASK_STATE_CANCELED,
    PurchaseStep.CANCELED_AFTER_HIRE: TaskState.TASK_STATE_CANCELED,
}
assert set(_STATE_BY_STEP) == set(PurchaseStep), "every step has a state"


def task_state_for(step: PurchaseStep, /) -> TaskState:
    """The A2A task state of a purchase step (``input-required`` is never used)."""
    return _STATE_BY_STEP[step]


# --- message parts -------------------------------------------------------------


class BadMessage(Exception):
    """The message's parts cannot become a task (the reason is for the client)."""


@dataclass(frozen=True, slots=True)
class TaskInput:
    """What a message asks for: structured data, or text only."""

    data: Any = None
    text: str | None = None


def task_input(parts: Sequence[Part], /, *, parts_max: int) -> TaskInput:
    """One data part (the task JSON) or text parts (joined by newlines), nothing else."""
    if not parts:
        raise BadMessage("the message has no parts: send one data part (the task JSON) or text")
    if len(parts) > parts_max:
        raise BadMessage(f"the message has {len(parts)} parts; at most {parts_max}")
    kinds = {part.WhichOneof("content") for part in parts}
    if kinds == {"data"} and len(parts) == 1:
        return TaskInput(data=_whole_numbers(get_data_parts(parts)[0]))
    if kinds == {"text"}:
        return TaskInput(text="\n".join(part.text for part in parts))
    raise BadMessage(
        "send exactly one data part (the task JSON) or only text parts; "
        f"this message has {', '.join(sorted(str(kind) for kind in kinds))} parts"
    )


def _whole_numbers(value: Any) -> Any:
    """A2A data parts carry every number as a double; a whole one is an integer here."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def task_for_schema(requested: TaskInput, input_schema: Mapping[str, Any], /) -> Any:
    """The task JSON for a listing; text becomes ``{"text": ...}`` where that fits."""
    if requested.text is None:
        return requested.data
    properties = input_schema.get("properties")
    if (
        isinstance(properties, dict)
        and input_schema.get("type") == "object"
        and (TEXT_FIELD in properties)
    ):
        return {TEXT_FIELD: requested.text}
    raise BadMessage(
        "this capability takes structured input (its schema has no text field): "
        "send one data part with the task JSON"
    )


# --- the input schema ------------------------------------------------------------


def schema_problem(
    task: Any, input_schema: Mapping[str, Any], /, *, time_budget_s: float
) -> str | None:
    """Why ``task`` fails the listing's input schema (a few paths), or None.

    The check is agent_client/schema_checks.py (RE2 patterns, a deadline of
    ``time_budget_s``); synchronous, so the gateway runs it in a worker thread.
    """
    if not input_schema:
        return None
    try:
        reasons = failing_reasons(task, input_schema, time_budget_s=time_budget_s)
    except SchemaUnusable as exc:
        return f"the listing's input schema cannot be checked: {exc.reason}"
    except SchemaTooComplex as exc:
        return f"the listing's input schema is too complex to check: the check {exc.reason}"
    if not reasons:
        return None
    return "the task does not match the listing's input schema: " + "; ".join(reasons)


# --- money -------------------------------------------------------------------------


class LifetimeBudget:
    """What the gateway may still spend: ``--budget-credits`` less spent and held.

    A purchase reserves its RFQ budget before asking for quotes, shrinks the
    reservation to the hired price, then either spends it (released, or a
    contract whose outcome is unknown: counted as spent, to stay under the
    cap) or gives it back (no hire, refunded).
    """

    def __init__(self, total_millicredits: int, /) -> None:
        assert total_millicredits >= 0
        self.total_millicredits = total_millicredits
        self.spent_millicredits = 0
        self.reserved_millicredits = 0

    @property
    def available_millicredits(self) -> int:
        return self.total_millicredits - self.spent_millicredits - self.reserved_millicredits

    def reserve(self, amount_millicredits: int, /) -> None:
        assert 0 < amount_millicredits <= self.available_millicredits
        self.reserved_millicredits += amount_millicredits
        self._check()

    def release(self, amount_millicredits: int, /) -> None:
        assert 0 <= amount_millicredits <= self.reserved_millicredits
        self.reserved_millicredits -= amount_millicredits
        self._check()

    def spend(self, amount_millicredits: int, /) -> None:
        """Turn ``amount_millicredits`` of the reservation into spending."""
        assert 0 <= amount_millicredits <= self.reserved_millicredits
        self.reserved_millicredits -= amount_millicredits
        self.spent_millicredits += amount_millicredits
        self._check()

    def _check(self) -> None:
        assert self.spent_millicredits + self.reserved_millicredits <= self.total_millicredits
        assert self.reserved_millicredits >= 0


class Reservation:
    """One purchase's share of a :class:`LifetimeBudget`, from RFQ to settlement."""

    def __init__(self, budget: LifetimeBudget, amount_millicredits: int, /) -> None:
        budget.reserve(amount_millicredits)
        self._budget = budget
        self.amount_millicredits = amount_millicredits

    def shrink_to(self, amount_millicredits: int, /) -> None:
        """Hired at ``amount_millicredits``: give back the rest of the RFQ budget."""
        assert 0 < amount_millicredits <= self.amount_millicredits
        self._budget.release(self.amount_millicredits - amount_millicredits)
        self.amount_millicredits = amount_millicredits

    def spend(self) -> None:
        self._budget.spend(self.amount_millicredits)
        self.amount_millicredits = 0

    def release(self) -> None:
        self._budget.release(self.amount_millicredits)
        self.amount_millicredits = 0
