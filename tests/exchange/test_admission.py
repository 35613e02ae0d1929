"""Per-agent admission (broker/admission.py), a pure core tested with a hand-moved clock.

It proves each of the three limits on its own (rate with burst, protocol-
error budget, in-flight share), that refusals are answered only a few times
a second before they turn silent, that agents never share a budget, and
that the number of agents remembered is bounded.
"""

from __future__ import annotations

import pytest

from broker.admission import AdmissionLimits, AgentAdmission, Verdict

LIMITS = AdmissionLimits(
    requests_per_s=10.0,
    request_burst=20,
    in_flight_max=5,
    protocol_errors_per_s=1.0,
    protocol_error_burst=3,
    refusal_answers_per_s=2.0,
    refusal_answer_burst=2,
    agents_tracked_max=100,
    evict_after_drops=10,
)


def admit_and_finish(admission: AgentAdmission, agent: str, *, now_s: float) -> Verdict:
    verdict = admission.admit(agent, now_s=now_s)
    if verdict is Verdict.ADMIT:
        admission.finished(agent)
    return verdict


def test_a_burst_is_admitted_then_the_rate_holds():
    admission = AgentAdmission(LIMITS)
    verdicts = [admit_and_finish(admission, "a", now_s=0.0) for _ in range(25)]
    assert verdicts.count(Verdict.ADMIT) == 20
    # The first refusals are answered, the rest dropped.
    assert verdicts[20:] == [
        Verdict.REFUSE,
        Verdict.REFUSE,
        Verdict.DROP,
        Verdict.DROP,
        Verdict.DROP,
    ]
    # Half a second later, five more tokens (10/s).
    later = [admit_and_finish(admission, "a", now_s=0.5) for _ in range(6)]
    assert later.count(Verdict.ADMIT) == 5


def test_protocol_errors_spend_a_small_budget_after_which_everything_is_refused():
    admission = AgentAdmission(LIMITS)
    for _ in range(3):
        assert admit_and_finish(admission, "junk", now_s=0.0) is Verdict.ADMIT
        admission.protocol_error("junk", now_s=0.0)
    assert admission.admit("junk", now_s=0.0) is not Verdict.ADMIT
    # One error token back after a second (1/s): admitted again.
    assert admit_and_finish(admission, "junk", now_s=1.0) is Verdict.ADMIT


def test_one_agent_holds_at_most_its_share_of_requests_in_flight():
    admission = AgentAdmission(LIMITS)
    held = [admission.admit("slow", now_s=0.0) for _ in range(5)]
    assert held == [Verdict.ADMIT] * 5
    assert admission.admit("slow", now_s=0.0) is not Verdict.ADMIT
    admission.finished("slow")
    assert admission.admit("slow", now_s=0.0) is Verdict.ADMIT


def test_agents_do_not_share_budgets():
    admission = AgentAdmission(LIMITS)
    for _ in range(40):
        admit_and_finish(admission, "flooder", now_s=0.0)
    for _ in range(3):
        admission.protocol_error("flooder", now_s=0.0)
    assert admit_and_finish(admission, "honest", now_s=0.0) is Verdict.ADMIT


def test_an_agent_that_floods_past_its_refusals_is_reported_once_for_eviction():
    admission = AgentAdmission(LIMITS)
    verdicts = [admit_and_finish(admission, "flooder", now_s=0.0) for _ in range(100)]
    # 20 admitted, 2 refusals answered, then drops: the 10th drop is a flood.
    assert verdicts.count(Verdict.EVICT) == 1
    assert verdicts.index(Verdict.EVICT) == 20 + 2 + 9
    # An agent admitted again starts counting from zero.
    assert admit_and_finish(admission, "flooder", now_s=10.0) is Verdict.ADMIT


def test_the_agents_remembered_are_bounded():
    admission = AgentAdmission(LIMITS)
    for index in range(1_000):
        admit_and_finish(admission, f"agent-{index}", now_s=0.0)
    assert len(admission) == LIMITS.agents_tracked_max


@pytest.mark.parametrize(
    "changes",
    [{"requests_per_s": 0.0}, {"in_flight_max": 0}, {"protocol_error_burst": 0}],
)
def test_limits_that_make_no_sense_are_refused(changes):
    values = {
        "requests_per_s": 1.0,
        "request_burst": 1,
        "in_flight_max": 1,
        "protocol_errors_per_s": 1.0,
        "protocol_error_burst": 1,
        "refusal_answers_per_s": 1.0,
        "refusal_answer_burst": 1,
        "agents_tracked_max": 1,
        "evict_after_drops": 1,
    }
    with pytest.raises(AssertionError):
        AdmissionLimits(**{**values, **changes})
