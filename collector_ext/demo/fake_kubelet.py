"""A fake kubelet: a real gRPC server on a unix socket speaking PodResources v1, serving a scripted cluster.

It answers as the kubelet's server does (kubernetes pkg/kubelet/apis/podresources/server_v1.go), by release
and feature gates (`KubeletFeatures`):

- `List` gives every pod's containers; `dynamic_resources` only with the gate
  KubeletPodResourcesDynamicResources (`getContainerResources`).
- `Get` exists from 1.27; with the gate KubeletPodResourcesGet off it fails with a plain Go error, which
  gRPC sends as UNKNOWN "PodResources API Get method disabled"; a pod it does not know is also a plain
  error: UNKNOWN "pod NAME in namespace NS not found" (not NOT_FOUND).
- Both gates: alpha and off by default from 1.27, beta and on from 1.34 (pkg/features/kube_features.go).
- A method the kubelet does not have at all is UNIMPLEMENTED (gRPC's answer for an unknown method).

Device names follow NVIDIA's DRA driver (NVIDIA/k8s-dra-driver-gpu cmd/gpu-kubelet-plugin): a whole GPU is
`gpu-<minor>` (deviceinfo.go), a MIG device `gpu-<minor>-mig-<profile without dots>-<profile id>-<placement
start>` (mig.go `ToCanonicalName`), the pool is the node, and each device's CDI name is
`k8s.gpu.nvidia.com/claim=<claim uid>-<device>` (cdi.go `GetClaimDeviceName`; the claim's name stands for
its uid here).

Used by the tests (a changing cluster: MIG claims coming and going, device-plugin GPUs, a shared device
with a share_id, a pod with two containers, kubelets of older releases) and by `make demo`:

    python -m collector_ext.demo.fake_kubelet --socket /tmp/kubelet.sock --pod agents/vllm-0 --pod agents/vllm-1

serves a small demo cluster (a MIG slice through a DRA claim for each `--pod`, plus a device-plugin GPU
pod) until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from collector_ext.gpu import podresources_pb2 as pb
from collector_ext.gpu import podresources_pb2_grpc as pb_grpc

NVIDIA_DRA_DRIVER = "gpu.nvidia.com"
# NVIDIA's IMEX channels are DRA claims too, but not GPUs (k8s-dra-driver-gpu cmd/compute-domain-kubelet-plugin)
NVIDIA_COMPUTE_DOMAIN_DRIVER = "compute-domain.nvidia.com"


@dataclass(frozen=True)
class KubeletFeatures:
    """What one kubelet's PodResources v1 server offers (see the module doc)."""

    get_method: bool = True  # Get exists (1.27+)
    get_enabled: bool = True  # gate KubeletPodResourcesGet
    dynamic_resources: bool = True  # gate KubeletPodResourcesDynamicResources
    allocatable: bool = True  # GetAllocatableResources (1.21+, GA 1.28)


KUBELET_1_34 = KubeletFeatures()  # both gates beta, on by default
KUBELET_1_30 = KubeletFeatures(get_enabled=False, dynamic_resources=False)  # both gates alpha, off by default
KUBELET_1_26 = KubeletFeatures(get_method=False, get_enabled=False, dynamic_resources=False)
KUBELET_1_20 = KubeletFeatures(get_method=False, get_enabled=False, dynamic_resources=False, allocatable=False)


@dataclass(frozen=True)
class Claim:
    """One device of a DRA ResourceClaim."""

    claim_name: str
    device: str
    pool: str = "node-1"
    driver: str = NVIDIA_DRA_DRIVER
    claim_namespace: str = ""  # empty: the pod's namespace
    share_id: str = ""
    cdi_devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Container:
    name: str
    claims: tuple[Claim, ...] = ()
    devices: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (resource_name, device_ids)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    containers: tuple[Container, ...] = field(default_factory=tuple)


def pod_message(pod: Pod, with_dra: bool = True) -> pb.PodResources:
    """The pod as the kubelet lists it; `with_dra`: the KubeletPodResourcesDynamicResources gate."""
    message = pb.PodResources(name=pod.name, namespace=pod.namespace)
    for container in pod.containers:
        resources = message.containers.add(name=container.name)
        for resource_name, ids in container.devices:
            resources.devices.add(resource_name=resource_name, device_ids=list(ids))
        if not with_dra:
            continue
        for claim in container.claims:
            dynamic = resources.dynamic_resources.add(
                claim_name=claim.claim_name, claim_namespace=claim.claim_namespace or pod.namespace
            )
            claimed = dynamic.claim_resources.add(
                driver_name=claim.driver, pool_name=claim.pool, device_name=claim.device, share_id=claim.share_id
            )
            cdi = claim.cdi_devices or (f"k8s.{claim.driver}/claim={claim.claim_name}-{claim.device}",)
            for name in cdi:
                claimed.cdi_devices.add(name=name)
    return message


class _Lister(pb_grpc.PodResourcesListerServicer):
    def __init__(self, kubelet: FakeKubelet) -> None:
        self.kubelet = kubelet

    def List(self, request, context):  # noqa: N802 (gRPC method name)
        pods, features = self.kubelet.state()
        self.kubelet.calls["List"] += 1
        with_dra = features.dynamic_resources
        return pb.ListPodResourcesResponse(pod_resources=[pod_message(p, with_dra=with_dra) for p in pods])

    def GetAllocatableResources(self, request, context):  # noqa: N802
        pods, features = self.kubelet.state()
        self.kubelet.calls["GetAllocatableResources"] += 1
        if not features.allocatable:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method GetAllocatableResources")
        return pb.AllocatableResourcesResponse(
            devices=[pb.ContainerDevices(resource_name=r, device_ids=list(ids)) for r, ids in self.kubelet.allocatable]
        )

    def Get(self, request, context):  # noqa: N802
        pods, features = self.kubelet.state()
        self.kubelet.calls["Get"] += 1
        if not features.get_method:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method Get")
        if not features.get_enabled:  # server_v1.go: fmt.Errorf -> UNKNOWN
            context.abort(grpc.StatusCode.UNKNOWN, "PodResources API Get method disabled")
        for pod in pods if not self.kubelet.pods_end_after_list else ():
            if (pod.namespace, pod.name) == (request.pod_namespace, request.pod_name):
                return pb.GetPodResourcesResponse(pod_resources=pod_message(pod, with_dra=features.dynamic_resources))
        context.abort(grpc.StatusCode.UNKNOWN, f"pod {request.pod_name} in namespace {request.pod_namespace} not found")


class FakeKubelet:
    """Serves `pods` over PodResources v1 on `socket_path`; change them at any time with `set_pods`."""

    def __init__(
        self,
        socket_path: Path,
        pods: list[Pod] | None = None,
        *,
        features: KubeletFeatures = KUBELET_1_34,
        allocatable: list[tuple[str, tuple[str, ...]]] | None = None,
        pods_end_after_list: bool = False,
    ) -> None:
        """`pods_end_after_list`: every pod a `List` gave has ended by the time a client asks `Get` about it."""
        self.socket_path = Path(socket_path)
        self.pods_end_after_list = pods_end_after_list
        self.allocatable = allocatable or [("nvidia.com/gpu", ("GPU-0", "GPU-1"))]
        self.calls = {"List": 0, "GetAllocatableResources": 0, "Get": 0}
        self._pods = list(pods or [])
        self._features = features
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    def state(self) -> tuple[list[Pod], KubeletFeatures]:
        with self._lock:
            return list(self._pods), self._features

    def set_pods(self, pods: list[Pod], *, features: KubeletFeatures | None = None) -> None:
        with self._lock:
            self._pods = list(pods)
            if features is not None:
                self._features = features

    def start(self) -> FakeKubelet:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_PodResourcesListerServicer_to_server(_Lister(self), self._server)
        if not self._server.add_insecure_port(f"unix://{self.socket_path}"):
            raise OSError(f"cannot listen on unix socket {self.socket_path}")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_mig_device(index: int) -> str:
    """The demo's index-th MIG slice: a 1g.10gb instance (NVML profile id 19) at placement 0 of GPU `index`."""
    return f"gpu-{index}-mig-1g10gb-19-0"


def demo_cluster(pods: list[tuple[str, str]], node: str = "gpu-node-1") -> list[Pod]:
    """Each (namespace, pod) holds a 1g.10gb MIG slice of its own GPU through a DRA claim (the pool is the
    node); plus one device-plugin GPU pod and one pod holding an IMEX channel (a DRA claim, not a GPU)."""
    cluster = [
        Pod(namespace, name, (Container("server", claims=(Claim(f"{name}-gpu", demo_mig_device(i), pool=node),)),))
        for i, (namespace, name) in enumerate(pods)
    ]
    cluster.append(Pod("batch", "trainer-0", (Container("trainer", devices=(("nvidia.com/gpu", ("GPU-1",)),)),)))
    imex = Claim("trainer-imex", "channel-0", pool=node, driver=NVIDIA_COMPUTE_DOMAIN_DRIVER)
    cluster.append(Pod("batch", "trainer-1", (Container("trainer", claims=(imex,)),)))
    return cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake kubelet PodResources v1 server on a unix socket.")
    parser.add_argument("--socket", type=Path, required=True, help="unix socket path to listen on")
    parser.add_argument(
        "--pod", action="append", default=[], metavar="NAMESPACE/POD", help="a pod holding a MIG slice (repeat)"
    )
    args = parser.parse_args(argv)
    pods = []
    for text in args.pod:
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name:
            print(f"error: --pod {text!r} is not NAMESPACE/POD", file=sys.stderr)
            return 2
        pods.append((namespace, name))
    kubelet = FakeKubelet(args.socket, demo_cluster(pods)).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    print(f"fake kubelet serving {len(pods) + 2} pods on unix://{args.socket}", flush=True)
    done.wait()
    kubelet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
