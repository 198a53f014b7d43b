"""The live demand signal for KEDA: the external scaler gRPC service and the `metrics-api` JSON.

Two figures, chosen by the trigger metadata's `target`:

    unclaimedSandboxes  for a ScaledObject that scales an Agent Sandbox SandboxWarmPool (what `analyze
                        recommend` emits): the unclaimed sandboxes wanted now (collector_ext/keda/target.py),
                        warmFloor + claims in the last rateWindowSeconds / rateWindowSeconds x startupSeconds.
                        Pool replicas are unclaimed sandboxes (a claimed one leaves the pool and is replaced),
                        so runs in flight would keep one idle sandbox too many per run.
    inFlight (default)  for a Deployment of agent workers: in-flight agent runs (LiveState) + warmFloor.

The ScaledObject's trigger metadata picks the selector and the parameters (the receiver never queries the
analyzer):

    agent / namespace / service   at least one; several narrow the selection (all must match)
    target                        inFlight (default) or unclaimedSandboxes
    warmFloor                     optional, >= 0 (default 0): kept on top of the demand
    targetPerReplica              optional, > 0 (default 1): units one replica serves (HPA AverageValue target)
    startupSeconds                unclaimedSandboxes only, required, > 0: a sandbox's start-up time
    rateWindowSeconds             unclaimedSandboxes only, optional, 1..3600 (default 60): the claim-rate window

Errors KEDA sees (gRPC status): metadata naming no selector, a non-numeric / negative / non-finite number,
an unknown `target`, a known key in the wrong case (`warmfloor`) -> INVALID_ARGUMENT with a message naming
the key; GetMetrics for a metric name that is not this trigger's -> NOT_FOUND. Other keys are ignored: KEDA
passes the whole trigger metadata, `scalerAddress` included.

An agent never seen is NOT an error: it has 0 runs in flight and no claims, and the value is its warm
floor. The live state forgets an agent as soon as nothing of it is in flight (and its claims after an
hour) and starts empty after every receiver restart, so "never seen" and "idle" cannot be told apart; an
error would make KEDA keep the replicas it has (or apply `fallback`) instead of scaling the idle agent
down. Typos show up as a metric that stays at the floor: the JSON route and GetMetrics both echo the
selector they matched.

IsActive is `value > 0` (a warm floor keeps the target active, as minReplicaCount would).
StreamIsActive sends the current answer at once and then a new message each time the answer flips:
KEDA uses pushes only to wake its scale loop between polls (the replica count follows GetMetrics), so
pushing every change of the count would only add load. It ends when the client cancels or the server
stops; each open stream holds one worker thread of the scaler's gRPC server.

Authentication: with `--bearer-token` every method requires the token. KEDA's external scaler client sends
no call credentials (it offers only TLS / mTLS, kedacore/keda `pkg/scalers/external_scaler.go`), but it
passes the trigger metadata to the scaler, resolving `<key>FromEnv` values from the scale target's
environment: so the token is accepted as trigger metadata `bearerTokenFromEnv: <ENV VAR>` (the variable
set from a Secret; preferred) or `bearerToken`, or as an `authorization: Bearer <token>` header from other
clients; compared in constant time; anything else is UNAUTHENTICATED. For transport security use TLS
(`--tls-cert`, `--tls-key`, `--tls-client-ca`; KEDA's `caCert` / `tlsClientCert` / `tlsClientKey`).

`metricValue` (int64, older KEDA) carries the value rounded up, so a fractional floor never reads as 0;
`metricValueFloat` carries it exactly (KEDA reads the float only when it is > 0).

`metrics-api` trigger: `GET /v1/demand?agent=NAME[&warmFloor=N][&target=unclaimedSandboxes&startupSeconds=S]`
(mounted by the receiver's HTTP server) answers `{"agent": ..., "namespace": ..., "service": ..., "target":
..., "inFlight": n, "claimsInWindow": c, "warmFloor": f, "value": v}`; use `valueLocation: value`.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, overload

import grpc

from collector_ext.keda import externalscaler_pb2 as pb
from collector_ext.keda import externalscaler_pb2_grpc as pb_grpc
from collector_ext.keda.target import DEFAULT_RATE_WINDOW_S, MAX_RATE_WINDOW_S, unclaimed_wanted

DEMAND_PATH = "/v1/demand"
SELECTOR_KEYS = ("agent", "namespace", "service")
TOKEN_KEYS = ("bearerTokenFromEnv", "bearerToken")  # trigger metadata carrying --bearer-token (see above)
IN_FLIGHT, UNCLAIMED = "inFlight", "unclaimedSandboxes"
TARGETS = (IN_FLIGHT, UNCLAIMED)
KNOWN_KEYS = frozenset(
    (*SELECTOR_KEYS, "target", "warmFloor", "targetPerReplica", "startupSeconds", "rateWindowSeconds", *TOKEN_KEYS)
)
# How long a StreamIsActive worker waits for a change before checking that its client is still there.
STREAM_WAKE_SECONDS = 0.5
# KEDA prefixes the trigger index ("s0-") to metric names in the HPA and may hand it back.
_TRIGGER_INDEX = re.compile(r"^s\d+-")


class LiveDemand(Protocol):
    """What the scaler needs of `collector_ext.traces.live_state.LiveState`."""

    def in_flight(self, agent: str | None = None, namespace: str | None = None, service: str | None = None) -> int: ...

    def claims_in_window(
        self, window_s: float, agent: str | None = None, namespace: str | None = None, service: str | None = None
    ) -> int: ...

    def wait_changed(self, version: int, timeout: float) -> int: ...


class BadScalerMetadata(ValueError):
    """Trigger metadata (or metrics-api query) that names no selector or carries a bad number."""


@dataclass(frozen=True)
class Selector:
    agent: str | None
    namespace: str | None
    service: str | None
    target: str
    warm_floor: float
    target_per_replica: float
    startup_s: float | None = None  # unclaimedSandboxes only
    rate_window_s: float = DEFAULT_RATE_WINDOW_S

    @property
    def metric_name(self) -> str:
        parts = [f"{key}-{_slug(value)}" for key, value in zip(SELECTOR_KEYS, self._values(), strict=True) if value]
        kind = "unclaimed" if self.target == UNCLAIMED else "in-flight"
        return f"agentmeter-{kind}-" + "-".join(parts)

    def _values(self) -> tuple[str | None, str | None, str | None]:
        return (self.agent, self.namespace, self.service)


@dataclass(frozen=True)
class Demand:
    in_flight: int
    claims_in_window: int | None  # unclaimedSandboxes only
    value: float


def _slug(value: str) -> str:
    # Metric names end up in HPA objects: keep them lower-case alnum and '-', bounded in length.
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:40] or "x"


@overload
def _number(
    metadata: Mapping[str, str], key: str, default: float, *, positive: bool, at_most: float | None = None
) -> float: ...


@overload
def _number(
    metadata: Mapping[str, str], key: str, default: None, *, positive: bool, at_most: float | None = None
) -> float | None: ...


def _number(
    metadata: Mapping[str, str], key: str, default: float | None, *, positive: bool, at_most: float | None = None
) -> float | None:
    text = metadata.get(key)
    if text is None or str(text).strip() == "":
        return default
    try:
        value = float(str(text).strip())
    except ValueError:
        raise BadScalerMetadata(f"{key} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or (at_most is not None and value > at_most):
        bound = "> 0" if positive else ">= 0"
        bound += f" and <= {at_most:g}" if at_most is not None else ""
        raise BadScalerMetadata(f"{key} must be a finite number {bound}, got {text!r}")
    return value


def parse_selector(metadata: Mapping[str, str]) -> Selector:
    """Trigger metadata -> Selector; raises BadScalerMetadata with a message naming the key."""
    # KEDA hands over the whole trigger metadata (scalerAddress, TLS settings, ...): other keys are ignored,
    # but a known key in the wrong case is a typo that would silently drop a setting.
    by_lower = {key.lower(): key for key in KNOWN_KEYS}
    for key in sorted(metadata):
        known = by_lower.get(key.lower())
        if known is not None and known != key:
            raise BadScalerMetadata(f"unknown scaler metadata {key!r}: did you mean {known!r}?")
    values = {key: (str(metadata[key]).strip() or None) if key in metadata else None for key in SELECTOR_KEYS}
    if not any(values.values()):
        raise BadScalerMetadata("scaler metadata must name an agent, namespace or service (e.g. agent: planner)")
    target = str(metadata.get("target") or IN_FLIGHT).strip()
    if target not in TARGETS:
        raise BadScalerMetadata(f"target must be {IN_FLIGHT} or {UNCLAIMED}, got {target!r}")
    startup_s = _number(metadata, "startupSeconds", None, positive=True)
    if target == UNCLAIMED and startup_s is None:
        raise BadScalerMetadata(f"target {UNCLAIMED} needs startupSeconds (a sandbox's start-up time, > 0)")
    window = _number(metadata, "rateWindowSeconds", DEFAULT_RATE_WINDOW_S, positive=True, at_most=MAX_RATE_WINDOW_S)
    return Selector(
        agent=values["agent"],
        namespace=values["namespace"],
        service=values["service"],
        target=target,
        warm_floor=_number(metadata, "warmFloor", 0.0, positive=False),
        target_per_replica=_number(metadata, "targetPerReplica", 1.0, positive=True),
        startup_s=startup_s,
        rate_window_s=window,
    )


def current_demand(live: LiveDemand, selector: Selector) -> Demand:
    """The figure served for one selector (see the module doc)."""
    who = {"agent": selector.agent, "namespace": selector.namespace, "service": selector.service}
    in_flight = live.in_flight(**who)
    if selector.target == IN_FLIGHT:
        return Demand(in_flight=in_flight, claims_in_window=None, value=in_flight + selector.warm_floor)
    claims = live.claims_in_window(selector.rate_window_s, **who)
    assert selector.startup_s is not None  # parse_selector requires it for this target
    value = unclaimed_wanted(claims, selector.rate_window_s, selector.startup_s, selector.warm_floor)
    return Demand(in_flight=in_flight, claims_in_window=claims, value=value)


def demand_json(live: LiveDemand, query: Mapping[str, Any]) -> dict[str, Any]:
    """The `metrics-api` answer for `GET /v1/demand?agent=...`; raises BadScalerMetadata (-> HTTP 400)."""
    flat = {key: (value[-1] if isinstance(value, list | tuple) else value) for key, value in query.items()}
    selector = parse_selector({key: str(value) for key, value in flat.items() if value is not None})
    demand = current_demand(live, selector)
    return {
        "agent": selector.agent,
        "namespace": selector.namespace,
        "service": selector.service,
        "target": selector.target,
        "inFlight": demand.in_flight,
        "claimsInWindow": demand.claims_in_window,
        "warmFloor": selector.warm_floor,
        "value": demand.value,
    }


def token_given(metadata: Mapping[str, str], headers: Any, token: str) -> bool:
    """Whether the trigger metadata or an `authorization` header carries `token` (constant-time compares)."""
    given = [f"Bearer {metadata[key]}" for key in TOKEN_KEYS if key in metadata]
    given += [value for key, value in headers or () if key == "authorization" and isinstance(value, str)]
    expected = f"Bearer {token}".encode()
    # compare every candidate (no early exit), so the time does not depend on which one matched
    return sum(hmac.compare_digest(candidate.encode(), expected) for candidate in given) > 0


class ExternalScalerServicer(pb_grpc.ExternalScalerServicer):
    """`externalscaler.ExternalScaler` over a LiveState; with a token, every method requires it."""

    def __init__(self, live: LiveDemand, token: str | None = None) -> None:
        self._live = live
        self._token = token
        self._stopping = False

    def stop(self) -> None:
        """Ends every open StreamIsActive within STREAM_WAKE_SECONDS (server.stop() also cancels them)."""
        self._stopping = True

    def _selector(self, ref: pb.ScaledObjectRef, context: grpc.ServicerContext) -> Selector:
        metadata = dict(ref.scalerMetadata)
        if self._token and not token_given(metadata, context.invocation_metadata(), self._token):
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong token: set trigger metadata bearerTokenFromEnv (or an authorization header)",
            )
        try:
            return parse_selector(metadata)
        except BadScalerMetadata as err:
            where = f"ScaledObject {ref.namespace}/{ref.name}: " if ref.name else ""
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, where + str(err))
            raise  # abort raises; this line keeps type checkers content

    def IsActive(self, request: pb.ScaledObjectRef, context: grpc.ServicerContext) -> pb.IsActiveResponse:  # noqa: N802
        return pb.IsActiveResponse(result=current_demand(self._live, self._selector(request, context)).value > 0)

    def StreamIsActive(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> Iterator[pb.IsActiveResponse]:
        selector = self._selector(request, context)
        version = self._live.wait_changed(-1, 0)
        active = current_demand(self._live, selector).value > 0
        yield pb.IsActiveResponse(result=active)
        while context.is_active() and not self._stopping:
            version = self._live.wait_changed(version, STREAM_WAKE_SECONDS)
            now_active = current_demand(self._live, selector).value > 0
            if now_active != active:
                active = now_active
                yield pb.IsActiveResponse(result=active)

    def GetMetricSpec(  # noqa: N802
        self, request: pb.ScaledObjectRef, context: grpc.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        selector = self._selector(request, context)
        spec = pb.MetricSpec(
            metricName=selector.metric_name,
            targetSize=max(1, math.ceil(selector.target_per_replica)),
            targetSizeFloat=selector.target_per_replica,
        )
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.ServicerContext) -> pb.GetMetricsResponse:  # noqa: N802
        selector = self._selector(request.scaledObjectRef, context)
        asked = _TRIGGER_INDEX.sub("", request.metricName)
        if asked and asked != selector.metric_name:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown metric {request.metricName!r}: this trigger serves {selector.metric_name!r}",
            )
        value = current_demand(self._live, selector).value
        metric = pb.MetricValue(metricName=selector.metric_name, metricValue=math.ceil(value), metricValueFloat=value)
        return pb.GetMetricsResponse(metricValues=[metric])


def add_scaler_servicer(server: grpc.Server, live: LiveDemand, token: str | None = None) -> ExternalScalerServicer:
    """Register the external scaler on `server` (the receiver's scaler endpoint); returns the servicer."""
    servicer = ExternalScalerServicer(live, token)
    pb_grpc.add_ExternalScalerServicer_to_server(servicer, server)
    return servicer
