"""The replay cache detects replays, forgets only expired nonces, and has a memory bound.

Pure tests of ``ReplayGuard`` driven by explicit times. The memory test
fills a guard with 200,000 (issuer, nonce) pairs from throwaway issuers,
as a flood would, and measures with tracemalloc the bytes the guard holds
at every 10,000 entries (the set's load, hence an entry's cost, changes as
it grows). From 50,000 entries on, the bytes per entry must stay under
``REPLAY_CACHE_BYTES_PER_ENTRY_MAX``, the figure ``limits`` multiplies by
``REPLAY_CACHE_ENTRIES_MAX`` to bound the cache's memory. Below that, CPython
grows a set fourfold rather than twofold, so an entry costs more, but all
of them together cost less than 50,000 entries at the bound.
"""

import secrets
import tracemalloc

import pytest

from agent_client import SignatureRejected, limits
from agent_client.signing import ReplayGuard, new_nonce

NOW_MS = 1_800_000_000_000
SKEW_MS = limits.CLOCK_SKEW_MAX_S * 1000
ISSUER = "U" + "A" * 55
MEASURED_ENTRIES = 200_000
MEASURE_EVERY_ENTRIES = 10_000
SET_FOURFOLD_GROWTH_ENTRIES = 50_000
# A flood's nonces expire within a request's lifetime of now.
FLOOD_SPREAD_S = limits.REQUEST_LIFETIME_MAX_S


def throwaway_issuer() -> str:
    return "U" + secrets.token_hex(28).upper()[:55]


def test_a_remembered_nonce_is_seen_again_and_others_are_not():
    guard = ReplayGuard()
    guard.remember(ISSUER, "nonce-1", NOW_MS + 10_000, now_ms=NOW_MS)
    assert guard.seen(ISSUER, "nonce-1")
    assert not guard.seen(ISSUER, "nonce-2")
    assert not guard.seen("U" + "B" * 55, "nonce-1")


def test_issuer_and_nonce_are_not_confused_at_their_boundary():
    guard = ReplayGuard()
    guard.remember("ab", "c", NOW_MS + 10_000, now_ms=NOW_MS)
    assert not guard.seen("a", "bc")


def test_a_nonce_is_kept_until_its_expiry_plus_the_skew_window_then_forgotten():
    guard = ReplayGuard()
    # Not on a whole second, so that rounding the wrong way shows.
    expires_at_ms = NOW_MS + 10_500
    guard.remember(ISSUER, "old", expires_at_ms, now_ms=NOW_MS)
    guard.remember(ISSUER, "probe-1", NOW_MS + 60_000, now_ms=expires_at_ms + SKEW_MS - 1)
    assert guard.seen(ISSUER, "old")
    guard.remember(ISSUER, "probe-2", NOW_MS + 60_000, now_ms=expires_at_ms + SKEW_MS + 1_000)
    assert not guard.seen(ISSUER, "old")
    assert len(guard) == 2


def test_expired_entries_free_their_room_in_a_full_guard():
    guard = ReplayGuard(entries_max=100)
    for index in range(100):
        guard.remember(ISSUER, f"n{index}", NOW_MS + 1_000 + index, now_ms=NOW_MS)
    later_ms = NOW_MS + 2_000 + SKEW_MS
    guard.remember(ISSUER, "fresh", later_ms + 1_000, now_ms=later_ms)
    assert len(guard) == 1
    assert guard.seen(ISSUER, "fresh")


def test_a_full_guard_refuses_with_unavailable_rather_than_forget_a_live_nonce():
    guard = ReplayGuard(entries_max=3)
    for index in range(3):
        guard.remember(ISSUER, f"n{index}", NOW_MS + 10_000, now_ms=NOW_MS)
    with pytest.raises(SignatureRejected) as caught:
        guard.remember(ISSUER, "n3", NOW_MS + 10_000, now_ms=NOW_MS + 9_000)
    assert caught.value.code == "unavailable"
    assert all(guard.seen(ISSUER, f"n{index}") for index in range(3))
    assert not guard.seen(ISSUER, "n3")


def test_memory_per_entry_stays_under_the_named_bound():
    pairs = [(throwaway_issuer(), new_nonce()) for _ in range(MEASURED_ENTRIES)]
    guard = ReplayGuard(entries_max=MEASURED_ENTRIES)
    used_bytes_by_entries: dict[int, int] = {}
    tracemalloc.start()
    try:
        baseline_bytes = tracemalloc.get_traced_memory()[0]
        for entries, (issuer, nonce) in enumerate(pairs, start=1):
            spread_ms = entries * FLOOD_SPREAD_S * 1000 // MEASURED_ENTRIES
            guard.remember(issuer, nonce, NOW_MS + spread_ms, now_ms=NOW_MS)
            if entries % MEASURE_EVERY_ENTRIES == 0:
                used_bytes = tracemalloc.get_traced_memory()[0] - baseline_bytes
                used_bytes_by_entries[entries] = used_bytes
    finally:
        tracemalloc.stop()
    assert len(guard) == MEASURED_ENTRIES
    bytes_per_entry_worst = max(
        used_bytes / entries
        for entries, used_bytes in used_bytes_by_entries.items()
        if entries >= SET_FOURFOLD_GROWTH_ENTRIES
    )
    print(f"replay cache: at most {bytes_per_entry_worst:.1f} B per entry")
    assert bytes_per_entry_worst <= limits.REPLAY_CACHE_BYTES_PER_ENTRY_MAX
    for entries, used_bytes in used_bytes_by_entries.items():
        counted_entries = max(entries, SET_FOURFOLD_GROWTH_ENTRIES)
        assert used_bytes <= counted_entries * limits.REPLAY_CACHE_BYTES_PER_ENTRY_MAX
