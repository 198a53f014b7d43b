"""The KEDA plan replay as it was first written (analyzer/warm_pool.py at 467b585): a poll-by-poll walk that
recomputes the metric and the next poll at every poll. `replay_plan` now reads lookups computed once per
set of arrivals (`PlanReplay`); tests/test_warm_pool.py holds it to this walk, result for result."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from analyzer.warm_pool import NS, KedaPlan, PlanResult
from collector_ext.keda.target import unclaimed_wanted


def walk_replay_plan(arrivals_ns: Sequence[int], plan: KedaPlan) -> PlanResult:
    """The walk, unchanged: the semantics are in warm_pool.replay_plan."""
    if not arrivals_ns:
        return PlanResult(0, 0, 0.0, 0.0, plan.warm_floor)
    t0 = arrivals_ns[0]
    arrivals = [(t - t0) / NS for t in arrivals_ns]
    n, end = len(arrivals), arrivals[-1]
    p, w, s, floor = plan.polling_s, plan.rate_window_s, plan.stabilization_s, plan.warm_floor
    startup, cooldown, max_replicas = plan.startup_s, plan.cooldown_s, plan.max_replicas
    pending: deque[float] = deque()  # the starting sandboxes' ready times
    popleft, append = pending.popleft, pending.append
    replicas, peak = floor, floor
    requests: deque[tuple[float, int]] = deque()  # (poll time, replicas asked), the HPA's stabilization window
    popleft_request, pop_request, append_request = requests.popleft, requests.pop, requests.append
    last_active, was_active = -math.inf, False
    unclaimed_s, integrated_to = 0.0, 0.0
    empty = 0
    entered = left = 0
    i, tick = 0, 0.0
    ceil = math.ceil
    while True:
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
        while entered < n and arrivals[entered] <= tick:
            entered += 1
        while left < n and arrivals[left] <= tick - w:
            left += 1
        value = unclaimed_wanted(entered - left, w, startup, floor)
        if value > 0:
            asked = ceil(round(value, 9))  # _replicas
            if asked < 1:
                asked = 1
            if asked > max_replicas:
                asked = max_replicas
        else:
            asked = 0 if max_replicas > 0 else max_replicas
        horizon = tick - s
        while requests and requests[0][0] <= horizon:
            popleft_request()
        while requests and requests[-1][1] <= asked:
            pop_request()
        append_request((tick, asked))
        stabilized = requests[0][1]
        if was_active and value <= 0:
            last_active = max(last_active, tick - p)
        was_active = value > 0
        before = replicas
        if value > 0:
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
        soonest = math.inf
        if i < n:
            soonest = arrivals[i]
        if left < entered:
            soonest = min(soonest, arrivals[left] + w)
        if len(requests) > 1:
            soonest = min(soonest, requests[0][0] + s)
        if replicas > 0 and floor == 0 and value <= 0:
            soonest = min(soonest, last_active + cooldown)
        tick = ceil(round(max(soonest, tick + p) / p, 9)) * p
    unclaimed_s += replicas * (end - integrated_to)
    return PlanResult(n - 1, empty, unclaimed_s, end, peak)
