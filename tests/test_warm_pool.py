"""The warm-pool replay (analyzer/warm_pool.py) against a brute-force count and hand-worked cases."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plan_replay_walk import walk_replay_plan

from analyzer.warm_pool import (
    NS,
    KedaPlan,
    PlanReplay,
    PlanResult,
    busiest_window,
    replay,
    replay_plan,
    replicas_for_busiest,
    sizes_curve,
)


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


def bursty_arrivals(
    seed: int, count: int, mean_gap_s: float, burst_share: float, pause_s: tuple[float, float]
) -> list[int]:
    """Arrival times (ns) in bursts: a share of the gaps short (exponential, mean_gap_s), the rest a long idle
    pause (uniform over pause_s)."""
    rng = random.Random(seed)
    t, arrivals = 0.0, []
    for _ in range(count):
        t += rng.expovariate(1 / mean_gap_s) if rng.random() < burst_share else rng.uniform(*pause_s)
        arrivals.append(round(t * NS))
    return arrivals


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
    arrivals = bursty_arrivals(seed, 400, mean_gap_s=2.0, burst_share=0.8, pause_s=(30, 300))
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


# -- a pool scaled by KEDA on the unclaimed sandboxes wanted ----------------------------------------------

PLAN = KedaPlan(
    warm_floor=0, cooldown_s=300, startup_s=10, rate_window_s=60, polling_s=10, stabilization_s=300, max_replicas=5
)


def test_hand_worked_scale_to_zero_plan() -> None:
    """Claims at 0 (drives the pool, not scored), 100, 200, 1000, 5000. The claim at 0 finds the pool at zero;
    the poll at 0 asks for ceil(1/60 x 10) = 1 sandbox (ready at 10). The window empties at the poll at 60,
    so the metric last read > 0 at 50: the claims at 100 and 200 find the sandbox (each replaced at once) and
    keep it wanted, last > 0 at 250; KEDA scales to zero at the poll at 550 (250 + 300). 1000 and 5000 are
    cold, and 1000's sandbox lives until 1350. Unclaimed: [0, 550) + [1000, 1350) = 900 s."""
    result = replay_plan(seconds(0, 100, 200, 1000, 5000), PLAN)
    assert result == PlanResult(claims=4, empty_claims=2, unclaimed_s=900.0, window_s=5000.0, peak_replicas=1)
    assert result.empty_fraction == 0.5


def test_hand_worked_floor_plan() -> None:
    """Floor 1: each claim asks for 1 + 1/6 -> 2 sandboxes, and the HPA keeps 2 for the 300 s scale-down window
    after the last such request: 2 over [0, 500) and [1000, 1300), else 1; every claim finds one ready."""
    plan = KedaPlan(**{**vars(PLAN), "warm_floor": 1})
    result = replay_plan(seconds(0, 100, 200, 1000, 5000), plan)
    unclaimed = 2 * 500 + 1 * 500 + 2 * 300 + 1 * (5000 - 1300)
    assert result == PlanResult(claims=4, empty_claims=0, unclaimed_s=unclaimed, window_s=5000.0, peak_replicas=2)


def test_a_burst_faster_than_a_start_up_is_served_by_what_is_ready() -> None:
    """4 claims 1 s apart, 10 s start-up: the claims term asks for more, but they are ready only after the burst."""
    arrivals = seconds(0, 1000, 1001, 1002, 1003)
    assert replay_plan(arrivals, KedaPlan(**{**vars(PLAN), "warm_floor": 2})).empty_claims == 2
    assert replay_plan(arrivals, KedaPlan(**{**vars(PLAN), "warm_floor": 4})).empty_claims == 0
    # the most the metric asks for: a floor of 2 plus 4 claims in 60 s x 10 s
    assert busiest_window(arrivals, 60) == 4
    assert replicas_for_busiest(busiest_window(arrivals, 60), 60, 10, 2) == 3


def test_the_replay_and_the_live_scaler_share_one_target() -> None:
    from analyzer import warm_pool
    from collector_ext.keda import scaler

    assert warm_pool.unclaimed_wanted is scaler.unclaimed_wanted


# -- the replay with its lookups against the poll-by-poll walk (tests/plan_replay_walk.py) ------------------

PLAN_FIELDS = {
    "warm_floor": st.integers(min_value=0, max_value=4),
    "cooldown_s": st.sampled_from([0, 7.5, 15, 30, 60, 300]),
    "startup_s": st.sampled_from([0, 1, 8, 10, 12.5, 30]),
    "rate_window_s": st.sampled_from([1, 7.3, 30, 60]),
    "polling_s": st.sampled_from([0.7, 1, 2.5, 5, 8, 10, 30]),
    "stabilization_s": st.sampled_from([0, 15, 37.5, 300]),
    "max_replicas": st.sampled_from([0, 1, 3, 5, 100]),
}


@settings(max_examples=300, deadline=None)
@given(
    gaps_ms=st.lists(
        st.one_of(st.just(0), st.integers(0, 3).map(lambda s: s * 1000), st.integers(0, 120_000)), max_size=80
    ),
    start_ns=st.integers(min_value=0, max_value=10**18),
    plan=st.builds(KedaPlan, **PLAN_FIELDS),
)
def test_replay_plan_equals_the_walk(gaps_ms: list[int], start_ns: int, plan: KedaPlan) -> None:
    """Exactly the walk's result (unclaimed seconds to the last bit): ties at poll instants, bursts, pauses
    longer than every window, fractional polling intervals."""
    arrivals, t = [], start_ns
    for gap in gaps_ms:
        t += gap * 1_000_000
        arrivals.append(t)
    assert replay_plan(arrivals, plan) == walk_replay_plan(arrivals, plan)


@pytest.mark.parametrize("seed", [1, 2])
def test_one_plan_replay_serves_every_candidate_as_the_walk(seed: int) -> None:
    """`analyze recommend` replays floors and cooldowns through one PlanReplay: each as the walk alone."""
    arrivals = bursty_arrivals(seed, 3000, mean_gap_s=3.0, burst_share=0.9, pause_s=(60, 1800))
    replays = PlanReplay(arrivals, 60.0, 8)
    for floor in range(4):
        for cooldown in (0, 30, 300) if floor == 0 else (300,):
            plan = KedaPlan(
                floor, cooldown, 8.0, 60.0, 8, 600, replicas_for_busiest(busiest_window(arrivals, 60), 60, 8, floor)
            )
            assert replays.replay(plan) == walk_replay_plan(arrivals, plan)
    with pytest.raises(ValueError, match="its own rate window"):
        replays.replay(KedaPlan(0, 0, 8.0, 30.0, 8, 600, 5))


@pytest.mark.parametrize("polling_s", [0.7, 2.5, 8, 30])
def test_polls_are_rounded_as_the_walk_rounds_them(polling_s: float) -> None:
    """The first poll at or after each arrival (and after it leaves the window), computed at once, is the
    walk's ceil(round(t / polling, 9)): also for claims a nanosecond off a poll, where the rounding decides."""
    arrivals = sorted(
        {max(0, round(k * polling_s * NS) + off) for k in range(0, 5000, 37) for off in (-2, -1, 0, 1, 2, 499, 10**6)}
    )
    replays = PlanReplay(arrivals, 60.0, polling_s)
    seconds = [(t - arrivals[0]) / NS for t in arrivals]
    assert replays.seen_poll == [math.ceil(round(at / polling_s, 9)) for at in seconds]
    assert replays.leave_poll == [math.ceil(round((at + 60.0) / polling_s, 9)) for at in seconds]
    off_integer = [at / polling_s for at in seconds if 0 < at / polling_s - math.floor(at / polling_s) < 1e-8]
    assert off_integer  # the case rounded one by one is exercised
