"""The eviction bookkeeping (broker/evictions.py): who is connected, who is suspended, bounded.

A kick must reach every connection the callout admitted for the agent
(the latest few per agent), a suspension lasts exactly as long as it was
given and then is forgotten, and neither table grows past its bound.
"""

from __future__ import annotations

from broker.evictions import ConnectionBook, ServerConnection, Suspensions


def test_the_book_hands_over_an_agents_latest_connections_once():
    book = ConnectionBook(agents_max=10, connections_per_agent_max=2)
    for client_id in (1, 2, 3):
        book.admitted("agent", ServerConnection("server", client_id))
    book.admitted("other", ServerConnection("server", 9))
    assert book.take("agent") == [ServerConnection("server", 2), ServerConnection("server", 3)]
    assert book.take("agent") == []
    assert book.take("other") == [ServerConnection("server", 9)]


def test_the_book_forgets_the_agents_seen_longest_ago():
    book = ConnectionBook(agents_max=3, connections_per_agent_max=1)
    for index in range(10):
        book.admitted(f"agent-{index}", ServerConnection("server", index))
    assert len(book) == 3
    assert book.take("agent-0") == []
    assert book.take("agent-9") == [ServerConnection("server", 9)]


def test_a_suspension_lasts_as_long_as_given_and_is_then_forgotten():
    suspensions = Suspensions(agents_max=10)
    suspensions.suspend("agent", until_s=100.0)
    assert suspensions.seconds_left("agent", now_s=40.0) == 60.0
    assert suspensions.seconds_left("agent", now_s=100.0) == 0.0
    assert suspensions.seconds_left("stranger", now_s=0.0) == 0.0


def test_suspensions_are_bounded():
    suspensions = Suspensions(agents_max=2)
    for index in range(5):
        suspensions.suspend(f"agent-{index}", until_s=1_000.0)
    assert suspensions.seconds_left("agent-0", now_s=0.0) == 0.0
    assert suspensions.seconds_left("agent-4", now_s=0.0) == 1_000.0
