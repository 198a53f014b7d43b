"""The warm-pool replay (analyzer/warm_pool.py) against a brute-force count and hand-worked cases."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.warm_pool import NS, replay, sizes_curve


def brute_force_empty(arrivals_ns: list[int], size: int, cold_start_s: float) -> int:
    """A claim is warm exactly when fewer than `size` earlier warm claims are still being replaced."""
    refill_ns = round(cold_start_s * NS)
    warm: list[int] = []
    empty = 0
    for t in arrivals_ns:
        refilling = sum(1 for w in warm if w + refill_ns > t)
        if refilling < size:
            warm.append(t)
        else:
            empty += 1
    return empty


def seconds(*values: float) -> list[int]:
    return [round(v * NS) for v in values]


def test_hand_worked_pool_of_two() -> None:
    # cold start 10 s; claims at 0, 1, 2 (pool of 2 empties at 2), 10 (first refill ready exactly then),
    # 10.5 (second refill ready at 11: empty), 11 (ready), 25 (all refilled).
    arrivals = seconds(0, 1, 2, 10, 10.5, 11, 25)
    result = replay(arrivals, size=2, cold_start_s=10)
    assert (result.claims, result.empty_claims) == (7, 2)
    assert result.empty_fraction == pytest.approx(2 / 7)


def test_size_zero_is_always_empty_and_negative_is_refused() -> None:
    assert replay(seconds(0, 5, 9), 0, 8).empty_claims == 3
    with pytest.raises(ValueError, match="size"):
        replay(seconds(0), -1, 8)


def test_empty_arrivals() -> None:
    result = replay([], 3, 8)
    assert (result.claims, result.empty_claims, result.empty_fraction) == (0, 0, 0.0)


def test_sizes_curve_stops_at_first_size_without_empty_claims() -> None:
    # 5 claims within one start-up time: sizes 0..5 are needed, 5 is the first with no empty claim.
    arrivals = seconds(0, 1, 2, 3, 4, 100)
    curve = sizes_curve(arrivals, cold_start_s=8)
    assert [r.size for r in curve] == [0, 1, 2, 3, 4, 5]
    assert [r.empty_claims for r in curve] == [6, 4, 3, 2, 1, 0]


def test_sizes_curve_respects_max_size() -> None:
    arrivals = seconds(*range(20))
    curve = sizes_curve(arrivals, cold_start_s=100, max_size=3)
    assert [r.empty_claims for r in curve] == [20, 19, 18, 17]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_poisson_and_bursty_replays_equal_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    t, arrivals = 0.0, []
    for _ in range(400):
        # bursts: mostly short gaps, sometimes a long idle pause
        t += rng.expovariate(1 / 2.0) if rng.random() < 0.8 else rng.uniform(30, 300)
        arrivals.append(round(t * NS))
    for size in range(0, 8):
        for cold_start in (0.0, 1.5, 8.0, 30.0):
            assert replay(arrivals, size, cold_start).empty_claims == brute_force_empty(arrivals, size, cold_start)


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=20), max_size=60),
    size=st.integers(min_value=0, max_value=6),
    cold_start=st.integers(min_value=0, max_value=25),
)
def test_replay_equals_brute_force_on_any_sequence(gaps: list[int], size: int, cold_start: int) -> None:
    arrivals, t = [], 0
    for gap in gaps:  # integer seconds: many ties between refills and claims
        t += gap
        arrivals.append(t * NS)
    assert replay(arrivals, size, cold_start).empty_claims == brute_force_empty(arrivals, size, cold_start)
