"""Replaying observed arrivals through a warm pool of pre-provisioned sandboxes (Agent Sandbox SandboxWarmPool).

The model, exact event by event:

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

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

NS = 1_000_000_000


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
    refill_ns = round(cold_start_s * NS)
    refilling: deque[int] = deque()  # finish times of replacements under way, ascending
    empty = 0
    for t in arrivals_ns:
        while refilling and refilling[0] <= t:
            refilling.popleft()
        if len(refilling) < size:
            refilling.append(t + refill_ns)
        else:
            empty += 1
    return PoolResult(size=size, claims=len(arrivals_ns), empty_claims=empty)


def sizes_curve(arrivals_ns: Sequence[int], cold_start_s: float, max_size: int = 64) -> list[PoolResult]:
    """Replays for sizes 0, 1, 2, ... up to the first size no claim finds empty (or `max_size`)."""
    results = []
    for size in range(max_size + 1):
        result = replay(arrivals_ns, size, cold_start_s)
        results.append(result)
        if result.empty_claims == 0:
            break
    return results
