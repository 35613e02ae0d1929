"""Acknowledgements of handled notices go out in batches, and none is lost to a failure.

Pure tests of agent_client/notice_acks.py with a stand-in for the request
(the real request is exercised by every deal over NATS).
"""

from __future__ import annotations

import asyncio

from agent_client import limits
from agent_client.errors import AgentClientError, AgentClosed
from agent_client.notice_acks import NoticeAcks

LONG_S = 60.0  # an interval no test waits for


class Exchange:
    """Records each batch; fails while ``down``."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.sent = asyncio.Event()

    async def take(self, ids: list[str]) -> None:
        if self.down:
            raise AgentClientError("the exchange did not answer (test)")
        self.batches.append(ids)
        self.sent.set()


async def test_a_full_batch_goes_at_once_without_waiting_for_the_interval():
    exchange = Exchange()
    acks = NoticeAcks(exchange.take, interval_s=LONG_S, batch=3)
    for notice_id in ("a", "b", "c"):
        acks.add(notice_id)
    await asyncio.wait_for(exchange.sent.wait(), 1)
    assert exchange.batches == [["a", "b", "c"]] and acks.pending == 0
    await acks.close()


async def test_fewer_wait_for_the_interval_and_repeats_count_once():
    exchange = Exchange()
    acks = NoticeAcks(exchange.take, interval_s=0.05, batch=100)
    for notice_id in ("a", "b", "a"):
        acks.add(notice_id)
    assert exchange.batches == []
    await asyncio.wait_for(exchange.sent.wait(), 1)
    assert exchange.batches == [["a", "b"]]
    await acks.close()


async def test_a_failed_batch_is_kept_and_sent_with_the_next_try():
    exchange = Exchange()
    exchange.down = True
    acks = NoticeAcks(exchange.take, interval_s=0.02, batch=100)
    acks.add("a")
    await asyncio.sleep(0.1)  # a few failed tries
    assert exchange.batches == [] and acks.pending == 1
    exchange.down = False
    acks.add("b")
    await asyncio.wait_for(exchange.sent.wait(), 1)
    assert exchange.batches == [["a", "b"]] and acks.pending == 0
    await acks.close()


async def test_closing_sends_what_waits_in_requests_of_at_most_the_protocols_bound():
    exchange = Exchange()
    acks = NoticeAcks(exchange.take, interval_s=LONG_S, batch=limits.NOTICE_ACK_IDS_MAX)
    count = limits.NOTICE_ACK_IDS_MAX + 10
    for number in range(count):
        acks.add(f"n{number}")
    await acks.close()
    assert [len(batch) for batch in exchange.batches] == [limits.NOTICE_ACK_IDS_MAX, 10]
    assert [ids for batch in exchange.batches for ids in batch] == [f"n{n}" for n in range(count)]


async def test_past_the_bound_the_oldest_ids_are_dropped_for_the_exchange_to_send_again():
    exchange = Exchange()
    exchange.down = True
    bound = limits.NOTICE_ACK_IDS_MAX
    acks = NoticeAcks(exchange.take, interval_s=LONG_S, batch=bound, pending_max=bound)
    for number in range(bound + 5):
        acks.add(f"n{number}")
    assert acks.pending == bound
    exchange.down = False
    await acks.close()
    assert exchange.batches == [[f"n{number}" for number in range(5, bound + 5)]]


async def test_a_closed_agent_stops_trying_without_a_warning(caplog):
    async def closed(ids: list[str]) -> None:
        raise AgentClosed()

    acks = NoticeAcks(closed, interval_s=LONG_S)
    acks.add("a")
    await acks.close()
    assert acks.pending == 1 and caplog.records == []


async def test_under_a_steady_stream_each_request_carries_a_full_batch():
    """Ids arriving while a batch is on its way wait for the next full batch: a
    request per round trip, each carrying a few ids, would cost a signature each."""
    batches: list[list[str]] = []

    async def round_trip(ids: list[str]) -> None:
        batches.append(ids)
        await asyncio.sleep(0.005)

    acks = NoticeAcks(round_trip, interval_s=LONG_S, batch=20)
    for number in range(200):
        acks.add(f"n{number}")
        await asyncio.sleep(0.001)
    await acks.close()
    assert [ids for batch in batches for ids in batch] == [f"n{n}" for n in range(200)]
    assert all(len(batch) >= 20 for batch in batches[:-1]), [len(b) for b in batches]
