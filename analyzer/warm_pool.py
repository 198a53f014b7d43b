"""Replaying observed arrivals through a warm pool of pre-provisioned sandboxes (Agent Sandbox SandboxWarmPool).

Two pools: a static one of a fixed size (`replay`, `sizes_curve`), and one a KEDA ScaledObject scales on
agentmeter's warm-pool metric (`replay_plan`). Both follow Agent Sandbox: the pool holds *unclaimed*
sandboxes; a claim takes a ready one out of the pool and the controller starts a replacement at once
(kubernetes-sigs/agent-sandbox extensions/controllers/sandboxwarmpool_controller.go: a claimed sandbox is
controlled by its claim and no longer counts); a claim that finds none ready starts cold, outside the pool.

The static pool, exact event by event:

- The pool holds `size` sandboxes, all ready at the start.
- Each arrival is a claim. If a ready sandbox is in the pool the claim takes it (a warm hit) and the pool
  controller starts a replacement at once, which is ready `cold_start` seconds later. If none is ready the
  claim finds the pool empty (a cold start): it is served by a sandbox created for it, outside the pool, and
  the pool's own refills are not affected.
- A replacement that becomes ready at exactly the instant of a claim serves that claim.

So a claim at time t is a hit exactly when fewer than `size` earlier hits happened in (t - cold_start, t].
Replacements all take the same time, so they finish in the order they started: a FIFO of finish times is
the whole state, and one pass over the arrivals is O(arrivals).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collector_ext.keda.target import unclaimed_wanted

NS = 1_000_000_000
_NEVER = 1 << 62  # no poll: later than any


@dataclass(frozen=True)
class PoolResult:
    size: int
    claims: int
    empty_claims: int

    @property
    def empty_fraction(self) -> float:
        return self.empty_claims / self.claims if self.claims else 0.0


def replay(arrivals_ns: Sequence[int], size: int, cold_start_s: float) -> PoolResult:
    """Claims that find the pool empty, for a pool of `size` sandboxes; `arrivals_ns` ascending."""
    if size < 0:
        raise ValueError("warm pool size must be >= 0")
    return _Claims(arrivals_ns, cold_start_s).replay(size)


def sizes_curve(arrivals_ns: Sequence[int], cold_start_s: float, max_size: int = 64) -> list[PoolResult]:
    """Replays for sizes 0, 1, 2, ... up to the first size no claim finds empty (or `max_size`)."""
    claims = _Claims(arrivals_ns, cold_start_s)
    results = []
    for size in range(max_size + 1):
        result = claims.replay(size)
        results.append(result)
        if result.empty_claims == 0:
            break
    return results


class _Claims:
    """The arrivals with, for each, how many earlier claims fall within one refill before it, (t - refill, t].

    A claim finds the pool empty exactly when `size` of those earlier claims were warm: so a claim with fewer
    than `size` earlier claims in its window is warm whatever came before, and only the others need the
    event-by-event walk. Those are few for the sizes that matter (all but the smallest), so the curve costs
    O(arrivals) in NumPy plus a Python step per claim that could go either way."""

    def __init__(self, arrivals_ns: Sequence[int], cold_start_s: float) -> None:
        self.arrivals = np.asarray(arrivals_ns, dtype=np.int64)
        self.refill_ns = round(cold_start_s * NS)
        positions = np.arange(len(self.arrivals), dtype=np.int64)
        self.earlier = positions - np.searchsorted(self.arrivals, self.arrivals - self.refill_ns, side="right")

    def replay(self, size: int) -> PoolResult:
        claims = len(self.arrivals)
        if size == 0:
            return PoolResult(size=0, claims=claims, empty_claims=claims)
        undecided = np.flatnonzero(self.earlier >= size)
        empties: deque[int] = deque()  # times of the empty claims within one refill before the current one
        empty = 0
        for t, before in zip(self.arrivals[undecided].tolist(), self.earlier[undecided].tolist(), strict=True):
            while empties and empties[0] <= t - self.refill_ns:
                empties.popleft()
            if before - len(empties) >= size:  # `size` warm claims in the window: all still being replaced
                empties.append(t)
                empty += 1
        return PoolResult(size=size, claims=claims, empty_claims=empty)


# -- a pool scaled by KEDA on the unclaimed sandboxes wanted (collector_ext/keda/target.py) --------------


@dataclass(frozen=True)
class KedaPlan:
    """A ScaledObject (metricType AverageValue, 1 per replica) scaling a SandboxWarmPool on agentmeter's
    `unclaimedSandboxes` metric: every field is one the emitted YAML carries."""

    warm_floor: int  # minReplicaCount and the trigger's warmFloor
    cooldown_s: float  # cooldownPeriod: how long after the metric last read > 0 KEDA scales to zero
    startup_s: float  # the trigger's startupSeconds, and how long a new sandbox takes to be ready
    rate_window_s: float  # the trigger's rateWindowSeconds
    polling_s: float  # pollingInterval: how often KEDA (and so the HPA) acts on the metric
    stabilization_s: float  # HPA behavior.scaleDown.stabilizationWindowSeconds
    max_replicas: int  # maxReplicaCount


@dataclass(frozen=True)
class PlanResult:
    claims: int  # the arrivals after the first
    empty_claims: int
    unclaimed_s: float  # sandbox-seconds held unclaimed (starting or ready), first to last arrival
    window_s: float  # first to last arrival
    peak_replicas: int  # the largest spec.replicas the plan asked for

    @property
    def empty_fraction(self) -> float:
        return self.empty_claims / self.claims if self.claims else 0.0


def busiest_window(arrivals_ns: Sequence[int], window_s: float) -> int:
    """The most claims (arrivals, ascending) in any window of `window_s`: the same for every floor of a replay."""
    window_ns = round(window_s * NS)
    most, lo = 0, 0
    for hi, t in enumerate(arrivals_ns):
        while arrivals_ns[lo] <= t - window_ns:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def replicas_for_busiest(most: int, window_s: float, startup_s: float, warm_floor: int) -> int:
    """The largest replica count the metric asks for over the arrivals, from the most claims in any window
    (`busiest_window`): ceil of the metric at its peak, at least the floor and 1."""
    return max(1, warm_floor, _replicas(unclaimed_wanted(most, window_s, startup_s, warm_floor)))


def _replicas(value: float) -> int:
    return math.ceil(round(value, 9))  # HPA: ceil(metric / target), target 1; no float noise above an integer


def replay_plan(arrivals_ns: Sequence[int], plan: KedaPlan) -> PlanResult:
    """Replay the arrivals (ascending) through a pool that KEDA scales by `plan`; claims are processed one by one,
    KEDA acts every `polling_s` (a claim at a poll's instant is seen by it):

    - the metric v = unclaimed_wanted(claims in (t - rateWindowSeconds, t], ...) (collector_ext/keda/target.py);
    - active while v > 0; the HPA asks for ceil(v), at least 1 while active, at most maxReplicaCount, and
      scales down only to the highest request of the last stabilization window (scale-up is immediate);
    - after the metric last read > 0, KEDA keeps at least one replica for cooldownPeriod, then scales to 0
      (minReplicaCount 0; with a floor the metric never reads 0);
    - the pool controller follows spec.replicas at once: it starts missing sandboxes (ready `startup_s` later)
      and deletes surplus ones, those still starting first; a claimed sandbox is replaced at once.

    The pool starts in its idle state: the floor, ready. The first arrival drives the pool but is not scored
    (what came before it is unknown, as it has no idle gap): `claims` are the arrivals after it. Unclaimed
    time is integrated from the first to the last arrival, the observed window. Polls at which nothing can
    change (no claim entering or leaving the window, no request leaving the stabilization window, no cooldown
    ending) are skipped: they would repeat the previous answer. O(arrivals + polls that matter).

    Between two polls the pool holds exactly spec.replicas sandboxes (ready or starting: the controller
    follows every change at once), so a claim is warm exactly when fewer than spec.replicas are starting.

    Several plans over the same arrivals (`analyze recommend` replays ~15): `PlanReplay(...).replay(plan)`
    computes what they share once."""
    return PlanReplay(arrivals_ns, plan.rate_window_s, plan.polling_s).replay(plan)


class PlanReplay:
    """The arrivals of `replay_plan` with what every plan of one rate window and polling interval reads, so
    that replaying several plans (floors, cooldowns) computes it once: the arrivals in seconds from the first,
    the poll each is first seen at and the poll it leaves the rate window at, and the most claims ever in the
    window. Polls are numbered (poll k is at k x polling_s); `_poll_at(t)` is the first poll at or after t,
    rounded as a poll-by-poll walk rounds it, and that rounding is monotone: the earliest of several moments
    is at the earliest of their polls. A replay then does no float rounding per poll, and reads what the
    metric asks for from a table by claims in the window (~3x faster at 50 k arrivals: a plan is a Python
    walk over arrivals and polls, ~15 of them per `analyze recommend`)."""

    def __init__(self, arrivals_ns: Sequence[int], rate_window_s: float, polling_s: float) -> None:
        self.p, self.w = polling_s, rate_window_s
        t0 = arrivals_ns[0] if arrivals_ns else 0
        self.arrivals = [(t - t0) / NS for t in arrivals_ns]  # exact int / int, as the walk computes them
        times = np.asarray(self.arrivals, dtype=np.float64)
        self.seen_poll = self._polls_at(times)
        self.leave_poll = self._polls_at(times + rate_window_s)
        # the most claims within one rate window (w, as the walk compares): the metric's largest argument
        inside = np.arange(len(times)) + 1 - np.searchsorted(times, times - rate_window_s, side="right")
        self.most = int(inside.max()) if len(times) else 0

    def _poll_at(self, t: float) -> int:
        return math.ceil(round(t / self.p, 9))

    def _polls_at(self, times: np.ndarray) -> list[int]:
        """`_poll_at` of each time (>= 0), vectorized: ceil(round(q, 9)) is ceil(q) except where q is just above
        an integer (round may fall back onto it): those few are rounded one by one."""
        q = times / self.p  # IEEE division, as t / p
        whole = np.floor(q)
        polls = np.ceil(q).astype(np.int64)
        for j in np.flatnonzero((q > whole) & (q - whole < 1e-8)).tolist():
            polls[j] = math.ceil(round(float(q[j]), 9))
        return polls.tolist()

    def replay(self, plan: KedaPlan) -> PlanResult:
        if plan.rate_window_s != self.w or plan.polling_s != self.p:
            raise ValueError("a PlanReplay replays plans of its own rate window and polling interval")
        arrivals = self.arrivals
        if not arrivals:
            return PlanResult(0, 0, 0.0, 0.0, plan.warm_floor)
        n, end = len(arrivals), arrivals[-1]
        p, w, s, floor = plan.polling_s, plan.rate_window_s, plan.stabilization_s, plan.warm_floor
        startup, cooldown, max_replicas = plan.startup_s, plan.cooldown_s, plan.max_replicas
        # what the metric asks for, by the claims in the window (the one definition: unclaimed_wanted)
        active_by, asked_by = [], []
        for claims in range(self.most + 1):
            value = unclaimed_wanted(claims, w, startup, floor)
            active_by.append(value > 0)
            if value > 0:
                asked_by.append(min(max(1, _replicas(value)), max_replicas))
            else:
                asked_by.append(0 if max_replicas > 0 else max_replicas)
        seen_poll, leave_poll = self.seen_poll, self.leave_poll
        poll_at = self._poll_at
        step_is_one = float(p).is_integer()  # then the poll after k is exactly k + 1
        pending: deque[float] = deque()  # the starting sandboxes' ready times
        popleft, append = pending.popleft, pending.append
        replicas, peak = floor, floor
        requests: deque[tuple[float, int]] = deque()  # (poll time, replicas asked), the HPA's stabilization window
        front: tuple[float, int] | None = None  # the oldest request, and the poll it leaves the window at
        front_leaves = 0
        popleft_request, pop_request, append_request = requests.popleft, requests.pop, requests.append
        last_active, was_active = -math.inf, False
        unclaimed_s, integrated_to = 0.0, 0.0
        empty = 0
        i = left = k = 0
        while True:
            tick = k * p
            # claims up to this poll: the pool holds `replicas` sandboxes (ready or starting) between polls
            while i < n:
                at = arrivals[i]
                if at > tick:
                    break
                unclaimed_s += replicas * (at - integrated_to)
                integrated_to = at
                while pending and pending[0] <= at:
                    popleft()
                if len(pending) < replicas:
                    append(at + startup)  # a ready one claimed, replaced at once
                elif i > 0:
                    empty += 1
                i += 1
            if tick > end:
                break
            unclaimed_s += replicas * (tick - integrated_to)
            integrated_to = tick
            while arrivals[left] <= tick - w:  # stops by i: arrivals[i] > tick, or i = n and tick = end
                left += 1
            active, asked = active_by[i - left], asked_by[i - left]
            horizon = tick - s
            while requests and requests[0][0] <= horizon:
                popleft_request()
            while requests and requests[-1][1] <= asked:
                pop_request()
            append_request((tick, asked))
            stabilized = requests[0][1]
            if was_active and not active:
                last_active = max(last_active, tick - p)
            was_active = active
            before = replicas
            if active:
                last_active = tick
                replicas = stabilized
            elif replicas > 0 and tick - last_active >= cooldown:
                replicas = 0
                requests.clear()
            elif replicas > 0:
                replicas = max(1, stabilized)
            if replicas > peak:
                peak = replicas
            # the controller follows spec.replicas: ready ones stay, missing ones start, surplus goes (starting first)
            while pending and pending[0] <= tick:
                popleft()
            if replicas > before:
                for _ in range(replicas - before):
                    append(tick + startup)
            elif replicas < before:
                for _ in range(min(before - replicas, len(pending))):
                    pending.pop()
            # the next poll at which something can change: a claim, one leaving the window, a request leaving
            # the stabilization window, the cooldown ending; at least the next poll
            soonest = seen_poll[i] if i < n else _NEVER
            if left < i and leave_poll[left] < soonest:
                soonest = leave_poll[left]
            if len(requests) > 1:
                if requests[0] is not front:
                    front = requests[0]
                    front_leaves = poll_at(front[0] + s)
                if front_leaves < soonest:
                    soonest = front_leaves
            if replicas > 0 and floor == 0 and not active:
                # never active yet (last_active -inf): the walk's next poll is then simply the next one
                due = poll_at(last_active + cooldown) if last_active > -math.inf else -1
                if due < soonest:
                    soonest = due
            after = k + 1 if step_is_one else poll_at(tick + p)
            k = soonest if soonest > after else after
        unclaimed_s += replicas * (end - integrated_to)
        return PlanResult(n - 1, empty, unclaimed_s, end, peak)
