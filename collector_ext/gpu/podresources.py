"""GPU allocation intervals from the kubelet PodResources API v1 (DRA claims and device-plugin GPUs).

The poller asks the kubelet (`List`, `GetAllocatableResources`) every `podresources_interval_seconds`
and turns the snapshots into intervals: an allocation (a DRA claim's device, or a device-plugin GPU
resource of a container) is open from the first snapshot that shows it (`first_seen`) to the last one
(`last_seen`). It closes when a snapshot no longer shows it, or when MAX_MISSED_POLLS polls in a row get no
answer from the kubelet (an outage is not bridged; a late poll is not an outage). Open intervals are written every
`FLUSH_SECONDS` with their current `last_seen`, and again when they close or the poller stops: the
analyzer takes max(last_seen) per (allocation, first_seen), so re-written open intervals never count twice.

Only GPU claims are GPU slices: a DRA claim counts when its driver is in `gpu_drivers` (default
`gpu.nvidia.com`, as dcgm-exporter keeps only that driver: NVIDIA/dcgm-exporter
internal/pkg/transformation/kubernetes.go `toDeviceToPodsDRA`, const.go `DRAGPUDriverName`); NVIDIA's
`compute-domain.nvidia.com` IMEX channels and NIC drivers are not GPUs.

What the kubelet answers (kubernetes pkg/kubelet/apis/podresources/server_v1.go): `dynamic_resources` only
with the feature gate KubeletPodResourcesDynamicResources, `Get` only with KubeletPodResourcesGet (both
alpha and off from 1.27, beta and on from 1.34); a disabled `Get` is a plain error, so gRPC status UNKNOWN
("PodResources API Get method disabled"), and so is `Get` of a pod that is gone; a kubelet older than 1.27
has no `Get` at all: UNIMPLEMENTED. A missing socket or such a kubelet is logged once, naming the gate; the
poller keeps retrying quietly and the receiver keeps serving traces. Answers may exceed gRPC's default
4 MiB: the client accepts 16 MiB, as the kubelet's own client does (kubernetes test/e2e_node/util.go
`defaultPodResourcesMaxSize`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import pyarrow as pa
import structlog

from collector_ext.config import ReceiverConfig
from collector_ext.gpu import podresources_pb2 as pb
from collector_ext.gpu import podresources_pb2_grpc as pb_grpc
from collector_ext.schema import GPU_ALLOCATIONS
from collector_ext.storage.dataset_files import DatasetFiles

log = structlog.get_logger("agentmeter.podresources")

TABLE = "gpu_allocations"
FLUSH_SECONDS = 300.0  # open intervals are re-written this often (bounds what a crash can lose)
RPC_TIMEOUT_SECONDS = 5.0
# The largest answer accepted (kubernetes test/e2e_node/util.go: defaultPodResourcesMaxSize = 16 MiB).
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# The kubelet's error text when its KubeletPodResourcesGet gate is off (podresources/server_v1.go `Get`).
GET_DISABLED_TEXT = "Get method disabled"
# Device-plugin resources that are GPUs (or GPU slices such as nvidia.com/mig-1g.10gb).
GPU_RESOURCE_PREFIXES = ("nvidia.com/", "amd.com/gpu", "gpu.intel.com/")
# After this many polls in a row that the kubelet did not answer, open intervals are closed at their
# last_seen: it was unreachable too long to claim the allocations lasted through the outage. Polls that
# answer late (a busy node, a receiver starved of CPU) are no outage: only failed polls count, as
# Prometheus marks series stale on a failed scrape, not on a late one.
MAX_MISSED_POLLS = 3


def node_name(config: ReceiverConfig) -> str:
    return config.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


def is_gpu_resource(resource_name: str) -> bool:
    return resource_name.startswith(GPU_RESOURCE_PREFIXES)


# The identity of an allocation: every column but first_seen / last_seen.
AllocationKey = tuple


@dataclass
class Interval:
    row: dict
    first_seen: int  # ns
    last_seen: int  # ns


@dataclass
class Snapshot:
    allocations: dict[AllocationKey, dict] = field(default_factory=dict)
    has_dynamic_resources: bool = False


def allocations_of(
    response: pb.ListPodResourcesResponse, node: str, gpu_drivers: frozenset[str] | set[str]
) -> Snapshot:
    """The GPU allocations of one `List` answer, keyed by their identity: DRA claims of `gpu_drivers` and
    device-plugin GPU resources."""
    snapshot = Snapshot()
    for pod in response.pod_resources:
        for container in pod.containers:
            base = {"node": node, "namespace": pod.namespace, "pod": pod.name, "container": container.name}
            for dynamic in container.dynamic_resources:
                snapshot.has_dynamic_resources = True
                for claimed in dynamic.claim_resources:
                    if claimed.driver_name not in gpu_drivers:
                        continue  # an IMEX channel, a NIC, ...: not a GPU slice
                    row = {
                        **base,
                        "source": "dra",
                        "claim_name": dynamic.claim_name,
                        "claim_namespace": dynamic.claim_namespace or pod.namespace,
                        "driver": claimed.driver_name,
                        "pool": claimed.pool_name,
                        "device": claimed.device_name,
                        "cdi_devices": [cdi.name for cdi in claimed.cdi_devices],
                        "share_id": claimed.share_id or None,
                        "resource_name": None,
                        "device_ids": None,
                    }
                    snapshot.allocations[_key(row)] = row
            for devices in container.devices:
                if not is_gpu_resource(devices.resource_name):
                    continue
                row = {
                    **base,
                    "source": "device_plugin",
                    "claim_name": None,
                    "claim_namespace": None,
                    "driver": None,
                    "pool": None,
                    "device": None,
                    "cdi_devices": None,
                    "share_id": None,
                    "resource_name": devices.resource_name,
                    "device_ids": sorted(devices.device_ids),
                }
                snapshot.allocations[_key(row)] = row
    return snapshot


def _key(row: dict) -> AllocationKey:
    return tuple(tuple(v) if isinstance(v, list) else v for k, v in row.items() if k != "cdi_devices")


class PodResourcesPoller:
    """Polls the kubelet PodResources API and writes allocation intervals to `gpu_allocations`."""

    def __init__(
        self,
        config: ReceiverConfig,
        files: DatasetFiles,
        clock: Callable[[], float] = time.time,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.config = config
        self.files = files
        self.clock = clock
        self.flush_seconds = flush_seconds
        self.node = node_name(config)
        self.target = f"unix://{config.podresources_socket}"
        self.gpu_drivers = frozenset(config.gpu_drivers)
        self.allocatable: list[tuple[str, list[str]]] = []  # device-plugin resources the node offers
        self._open: dict[AllocationKey, Interval] = {}
        self._closed: list[Interval] = []
        self._failed_polls = 0  # in a row, since the last snapshot
        self._last_flush_ns: int | None = None
        self._reported: set[str] = set()  # problems already logged once
        self._unreachable: set[str] = set()  # connectivity problems, logged once per outage
        self._get_checked = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.PodResourcesListerStub | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Poll in a background thread (no-op when the interval is 0)."""
        if self.config.podresources_interval_seconds <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="podresources-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and write every interval, open ones with their current last_seen."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RPC_TIMEOUT_SECONDS * 3)
            self._thread = None
        self.flush()
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as err:  # never let the poller thread die: report once and retry
                self._report_once("poll_failed", "GPU allocation poll failed; retrying", error=repr(err))
            self._stop.wait(self.config.podresources_interval_seconds)

    # -- polling ---------------------------------------------------------------------------------------
    def poll_once(self) -> bool:
        """Take one snapshot and update the intervals; True if the kubelet answered `List`."""
        now = int(self.clock() * 1e9)
        if not self.config.podresources_socket.exists():
            self._report_outage(
                "no_socket",
                "kubelet PodResources socket not found: GPU allocations are not recorded (traces are unaffected); "
                "mount /var/lib/kubelet/pod-resources or set podresources_socket",
                socket=str(self.config.podresources_socket),
            )
            self._poll_failed(now)
            return False
        stub = self._connect()
        try:
            listed = stub.List(pb.ListPodResourcesRequest(), timeout=RPC_TIMEOUT_SECONDS)
        except grpc.RpcError as err:
            self._report_outage(
                f"list_{err.code().name}",
                "kubelet PodResources List failed: GPU allocations are not recorded until it answers",
                code=err.code().name,
                details=err.details(),
            )
            self._poll_failed(now)
            return False
        if self._unreachable:
            log.info("kubelet PodResources API reachable", socket=str(self.config.podresources_socket))
            self._unreachable.clear()
        self._read_allocatable(stub)
        snapshot = allocations_of(listed, self.node, self.gpu_drivers)
        self._check_dra_support(stub, listed, snapshot)
        self.apply(snapshot, now)
        return True

    def _connect(self) -> pb_grpc.PodResourcesListerStub:
        if self._stub is None:
            self._channel = grpc.insecure_channel(
                self.target, options=[("grpc.max_receive_message_length", MAX_ANSWER_BYTES)]
            )
            self._stub = pb_grpc.PodResourcesListerStub(self._channel)
        return self._stub

    def _read_allocatable(self, stub: pb_grpc.PodResourcesListerStub) -> None:
        try:
            answer = stub.GetAllocatableResources(pb.AllocatableResourcesRequest(), timeout=RPC_TIMEOUT_SECONDS)
        except grpc.RpcError as err:
            self._report_once(
                "no_allocatable",
                "kubelet does not serve GetAllocatableResources (older kubelet); allocations are still recorded",
                code=err.code().name,
            )
            return
        self.allocatable = [(d.resource_name, list(d.device_ids)) for d in answer.devices]

    def _check_dra_support(
        self, stub: pb_grpc.PodResourcesListerStub, listed: pb.ListPodResourcesResponse, snapshot: Snapshot
    ) -> None:
        """With pods but no `dynamic_resources` at all, ask `Get` once: a kubelet whose `Get` is missing or
        disabled predates 1.34's defaults, and then most likely does not list DRA claims either: say so
        once, naming the feature gates (see the module doc)."""
        if snapshot.has_dynamic_resources or self._get_checked or not listed.pod_resources:
            return
        pod = listed.pod_resources[0]
        try:
            stub.Get(
                pb.GetPodResourcesRequest(pod_name=pod.name, pod_namespace=pod.namespace), timeout=RPC_TIMEOUT_SECONDS
            )
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""
            if code == grpc.StatusCode.UNKNOWN and GET_DISABLED_TEXT not in details:
                return  # e.g. the pod is gone since List: ask again at the next poll
            if code == grpc.StatusCode.UNIMPLEMENTED:
                why = "this kubelet is older than 1.27 and has no PodResources Get"
            elif code == grpc.StatusCode.UNKNOWN:
                why = "this kubelet's PodResources Get is disabled (feature gate KubeletPodResourcesGet is off)"
            else:
                return  # unavailable, timed out, rate-limited: not an answer about the kubelet's features
            self._get_checked = True
            self._report_once(
                "no_dra",
                f"{why}, and it lists no dynamic_resources: DRA GPU claims are probably not seen, only "
                "device-plugin GPUs; enable the kubelet feature gates KubeletPodResourcesDynamicResources and "
                "KubeletPodResourcesGet (beta and on by default from Kubernetes 1.34)",
                code=code.name,
                details=details,
            )
            return
        self._get_checked = True

    def apply(self, snapshot: Snapshot, now: int) -> None:
        """Advance the intervals to a snapshot taken at `now` (ns)."""
        with self._lock:
            self._failed_polls = 0
            for key in list(self._open):
                if key not in snapshot.allocations:
                    self._closed.append(self._open.pop(key))
            for key, row in snapshot.allocations.items():
                interval = self._open.get(key)
                if interval is None:
                    self._open[key] = Interval(row=row, first_seen=now, last_seen=now)
                else:
                    interval.last_seen = now
        self._flush_if_due(now)

    def _poll_failed(self, now: int) -> None:
        """The kubelet did not answer; the MAX_MISSED_POLLS-th time in a row, the open intervals end."""
        with self._lock:
            self._failed_polls += 1
            if self._failed_polls == MAX_MISSED_POLLS:
                self._closed.extend(self._open.values())  # an outage: do not bridge it
                self._open = {}
        self._flush_if_due(now)

    # -- writing ---------------------------------------------------------------------------------------
    def _flush_if_due(self, now: int) -> None:
        if self._last_flush_ns is None:
            self._last_flush_ns = now
        elif now - self._last_flush_ns >= self.flush_seconds * 1e9:
            self.flush()
            self._last_flush_ns = now

    def flush(self) -> int:
        """Write closed intervals and the current state of open ones; returns the rows written."""
        with self._lock:
            intervals = self._closed + list(self._open.values())
            self._closed = []
            rows = [{**i.row, "first_seen": i.first_seen, "last_seen": i.last_seen} for i in intervals]
        if rows:
            table = pa.Table.from_pylist(rows, schema=GPU_ALLOCATIONS)
            self.files.write(TABLE, table)
        return len(rows)

    @property
    def open_intervals(self) -> int:
        return len(self._open)

    def _report_outage(self, problem: str, message: str, **fields: object) -> None:
        if problem not in self._unreachable:
            self._unreachable.add(problem)
            log.warning(message, **fields)

    def _report_once(self, problem: str, message: str, **fields: object) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            log.warning(message, **fields)
