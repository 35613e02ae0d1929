"""Negotiation strategies and quote ranking: pure decisions, no I/O.

The ``Agent`` asks a strategy what to do at each step and does the talking
itself, so a strategy is a small object that is easy to test and to replace:

* a **buyer strategy** (:class:`BuyerStrategy`) looks at the provider's
  current offer and answers :class:`Accept`, :class:`CounterOffer` or
  :class:`WalkAway`; :class:`TargetPriceBuyer` is the ready one;
* a **provider strategy** (:class:`ProviderStrategy`) looks at a buyer's
  counter-offer and answers :class:`Propose` (a new price) or
  :class:`WalkAway`; :class:`ConcedingProvider` is the ready one;
* a **ranking** (:class:`Ranking`) orders the quotes an RFQ brought in;
  :class:`WeightedRanking` (the default, :data:`rank_quotes`) weighs price,
  promised delivery time and, when the caller has it, provider reputation.

Write your own by implementing the protocol; the Agent enforces the rules
that do not depend on taste (the round limit, never paying above the
RFQ's budget, a provider never answering an expired offer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent_client import limits
from agent_client.offers import ReceivedQuote
from agent_client.protocol import DeclineCode, Rfq

__all__ = [
    "Accept",
    "BuyerMove",
    "BuyerSituation",
    "BuyerStrategy",
    "ConcedingProvider",
    "CounterOffer",
    "CounterSituation",
    "Propose",
    "ProviderMove",
    "ProviderStrategy",
    "Ranking",
    "TargetPriceBuyer",
    "WalkAway",
    "WeightedRanking",
    "rank_quotes",
]


# --- moves -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accept:
    """Buyer: take the current offer as it is."""


@dataclass(frozen=True, slots=True)
class CounterOffer:
    """Buyer: ask the provider for this price instead."""

    price_millicredits: int


@dataclass(frozen=True, slots=True)
class Propose:
    """Provider: answer a counter-offer with a new quote at this price."""

    price_millicredits: int


@dataclass(frozen=True, slots=True)
class WalkAway:
    """Either side: end this negotiation. ``code`` is what a provider's decline says."""

    reason: str
    code: DeclineCode = DeclineCode.WALKED_AWAY


BuyerMove = Accept | CounterOffer | WalkAway
ProviderMove = Propose | WalkAway


# --- what a strategy sees ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuyerSituation:
    """The provider's current offer, as the buyer's strategy sees it.

    ``round`` is the offer's round, which is also how many counter-offers
    this provider has answered; no counter-offer may be sent once
    ``round`` reaches ``rounds_max`` (the protocol's limit).
    """

    provider_id: str
    price_millicredits: int
    delivery_deadline_ms: int
    round: int
    rounds_max: int = limits.NEGOTIATION_ROUNDS_MAX


@dataclass(frozen=True, slots=True)
class CounterSituation:
    """A buyer's counter-offer, as the provider's strategy sees it.

    ``round`` is the counter-offer's round (1 for the first); the answer, if
    any, is the quote of that round. ``offered_millicredits`` is the price of
    the provider's quote being countered.
    """

    buyer_id: str
    capability: str
    round: int
    offered_millicredits: int
    countered_millicredits: int
    budget_millicredits: int
    rounds_max: int = limits.NEGOTIATION_ROUNDS_MAX


class BuyerStrategy(Protocol):
    """Decides, offer by offer, whether to accept, counter or walk away.

    ``budget_millicredits`` is the most this strategy pays: the Agent refuses
    to accept a quote above it, or above the budget of the
    :class:`~agent_client.offers.QuoteRequest` (which the RFQ announces).
    """

    @property
    def budget_millicredits(self) -> int: ...

    def decide(self, situation: BuyerSituation, /) -> BuyerMove: ...


class ProviderStrategy(Protocol):
    """Sets the first quote's price, then answers each counter-offer."""

    def opening_price(
        self, list_price_millicredits: int, budget_millicredits: int, /
    ) -> int | None:
        """The round-0 quote's price, given the pricing's price and the RFQ's
        budget; None keeps the pricing's price (declined if over the budget)."""
        ...

    def answer(self, situation: CounterSituation, /) -> ProviderMove: ...


# --- ready strategies -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConcedingProvider:
    """Concede a fixed step per round toward the buyer, never below a floor.

    * ``floor_millicredits``: the lowest price this provider ever quotes in
      answer to a counter-offer.
    * ``step_millicredits``: how much it comes down per round at most.
    * ``rounds_max``: the counter-offers it answers; the next one is declined
      with ``rounds_exhausted`` (at most the protocol's limit).

    It opens at the list price, or at the RFQ's budget when that is lower
    but not below the floor (so a buyer with a tight budget still gets a
    quote to bargain over). Each answer is the highest of the floor, the
    buyer's price and the last price minus the step, capped at the last
    price: a counter-offer at or above the last price gets the last price again.
    """

    floor_millicredits: int
    step_millicredits: int
    rounds_max: int = limits.NEGOTIATION_ROUNDS_MAX

    def __post_init__(self) -> None:
        if not 1 <= self.floor_millicredits <= limits.PRICE_MILLICREDITS_MAX:
            raise ValueError("floor_millicredits must be a valid price")
        if not 0 <= self.step_millicredits <= limits.PRICE_MILLICREDITS_MAX:
            raise ValueError("step_millicredits must be between 0 and the price limit")
        if not 0 <= self.rounds_max <= limits.NEGOTIATION_ROUNDS_MAX:
            raise ValueError(f"rounds_max must be between 0 and {limits.NEGOTIATION_ROUNDS_MAX}")

    def opening_price(
        self, list_price_millicredits: int, budget_millicredits: int, /
    ) -> int | None:
        price = max(self.floor_millicredits, min(list_price_millicredits, budget_millicredits))
        return price if price <= budget_millicredits else None

    def answer(self, situation: CounterSituation, /) -> ProviderMove:
        if situation.round > min(self.rounds_max, situation.rounds_max):
            return WalkAway(
                f"no more than {self.rounds_max} counter-offers", DeclineCode.ROUNDS_EXHAUSTED
            )
        last = situation.offered_millicredits
        conceded = max(situation.countered_millicredits, last - self.step_millicredits)
        # The floor wins over everything, even over a last price below it.
        return Propose(max(self.floor_millicredits, min(last, conceded)))


@dataclass(frozen=True, slots=True)
class TargetPriceBuyer:
    """Aim for a target price, settle within a budget.

    * ``target_millicredits``: an offer at or below it is accepted at once.
    * ``budget_millicredits``: the most it will pay (usually the
      :class:`~agent_client.offers.QuoteRequest`'s budget too).
    * ``rounds_max``: counter-offers it sends to one provider at most.

    Above the target, it counters while rounds remain, starting at the
    target and moving toward the budget in equal steps (the k-th counter of
    ``rounds_max`` is ``target + (budget - target) * (k - 1) // rounds_max``).
    When the provider's price is at or below what it would counter, or the
    rounds have run out, it accepts if the price is within the budget and
    walks away otherwise.
    """

    target_millicredits: int
    budget_millicredits: int
    rounds_max: int = limits.NEGOTIATION_ROUNDS_MAX

    def __post_init__(self) -> None:
        if not 1 <= self.target_millicredits <= self.budget_millicredits:
            raise ValueError("the target must be at least 1 and at most the budget")
        if self.budget_millicredits > limits.PRICE_MILLICREDITS_MAX:
            raise ValueError("the budget is over the price limit")
        if not 0 <= self.rounds_max <= limits.NEGOTIATION_ROUNDS_MAX:
            raise ValueError(f"rounds_max must be between 0 and {limits.NEGOTIATION_ROUNDS_MAX}")

    def decide(self, situation: BuyerSituation, /) -> BuyerMove:
        price = situation.price_millicredits
        if price <= self.target_millicredits:
            return Accept()
        rounds_max = min(self.rounds_max, situation.rounds_max)
        if situation.round < rounds_max:
            spread = self.budget_millicredits - self.target_millicredits
            counter = self.target_millicredits + spread * situation.round // rounds_max
            if counter < price:
                return CounterOffer(counter)
        if price <= self.budget_millicredits:
            return Accept()
        return WalkAway(f"the last price is over the budget after {situation.round} rounds")


# --- ranking -----------------------------------------------------------------------


class Ranking(Protocol):
    """Orders the quotes of one RFQ, best first.

    ``reputation`` maps provider ids to a score between 0 (worst) and 1
    (best); it is None when the caller has no reputation data.
    """

    def __call__(
        self,
        quotes: Sequence[ReceivedQuote],
        /,
        *,
        rfq: Rfq,
        reputation: Mapping[str, float] | None,
    ) -> list[ReceivedQuote]: ...


@dataclass(frozen=True, slots=True)
class WeightedRanking:
    """Lowest weighted cost first: price, promised delivery time, reputation.

    Each term is scaled to about 0..1 so the weights compare: the price as a
    share of the budget, the promised delivery time as a share of the time
    the RFQ allowed, and one minus the provider's reputation (ignored when
    no reputation mapping is given; ``reputation_unknown`` for a provider
    the mapping does not name). Ties go to the cheaper, then the sooner,
    then the lower provider id, so the order is deterministic.
    """

    price_weight: float = 1.0
    delivery_weight: float = 0.25
    reputation_weight: float = 0.5
    reputation_unknown: float = 0.5

    def __call__(
        self,
        quotes: Sequence[ReceivedQuote],
        /,
        *,
        rfq: Rfq,
        reputation: Mapping[str, float] | None = None,
    ) -> list[ReceivedQuote]:
        def cost(received: ReceivedQuote) -> tuple[float, int, int, str]:
            quote = received.quote
            delivery_ms = max(0, quote.delivery_deadline_ms - rfq.header.issued_at_ms)
            score = self.price_weight * quote.price_millicredits / rfq.budget_millicredits
            score += self.delivery_weight * delivery_ms / (rfq.delivery_within_s * 1000)
            if reputation is not None:
                known = reputation.get(received.provider_id, self.reputation_unknown)
                score += self.reputation_weight * (1.0 - min(1.0, max(0.0, known)))
            deadline_ms = quote.delivery_deadline_ms
            return (score, quote.price_millicredits, deadline_ms, received.provider_id)

        return sorted(quotes, key=cost)


rank_quotes: Ranking = WeightedRanking()
"""The default ranking."""
