"""How many unclaimed sandboxes a warm pool should hold now: the one definition that the live scaler
(collector_ext/keda/scaler.py) serves to KEDA and the analyzer's replay (analyzer/warm_pool.py) evaluates.

An Agent Sandbox `SandboxWarmPool` holds *unclaimed* sandboxes: a claim takes a ready sandbox out of the
pool (it is then controlled by its claim, no longer by the pool) and the pool controller starts a
replacement (kubernetes-sigs/agent-sandbox extensions/controllers/sandboxwarmpool_controller.go,
`filterActiveSandboxes`: a sandbox with another controller is not counted). So runs in flight are the wrong
measure: the pool must hold what the claims arriving within one start-up time will take, plus a floor for
bursts. Agent Sandbox's own KEDA example sizes its pool the same way, claim rate x replenishment time
(examples/keda-scale-to-zero/scaledobject-prometheus.yaml: `rate(agent_sandbox_claim_creation_total[1m])`
with `threshold` = 1 / replenishment time)::

    unclaimed wanted = warmFloor + claims in the last rateWindowSeconds / rateWindowSeconds x startupSeconds

KEDA (metricType AverageValue, 1 per replica) turns it into spec.replicas = ceil(value).
"""

from __future__ import annotations

DEFAULT_RATE_WINDOW_S = 60.0  # the upstream example's rate(...[1m])
MAX_RATE_WINDOW_S = 3600.0  # how far back the live state keeps claim arrivals


def unclaimed_wanted(claims_in_window: int, window_s: float, startup_s: float, warm_floor: float) -> float:
    """Unclaimed sandboxes wanted: the floor plus the claims expected within one start-up time."""
    if window_s <= 0:
        raise ValueError("the rate window must be > 0 s")
    return warm_floor + claims_in_window / window_s * startup_s
