"""A fake kubelet: a real gRPC server on a unix socket speaking PodResources v1, serving a scripted cluster.

Used by the tests (a changing cluster: MIG claims coming and going, device-plugin GPUs, a shared device
with a share_id, a pod with two containers, an older kubelet without DRA) and by `make demo`:

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
        pods, legacy = self.kubelet.state()
        self.kubelet.calls["List"] += 1
        return pb.ListPodResourcesResponse(pod_resources=[pod_message(p, with_dra=not legacy) for p in pods])

    def GetAllocatableResources(self, request, context):  # noqa: N802
        pods, legacy = self.kubelet.state()
        self.kubelet.calls["GetAllocatableResources"] += 1
        if legacy:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method GetAllocatableResources")
        return pb.AllocatableResourcesResponse(
            devices=[pb.ContainerDevices(resource_name=r, device_ids=list(ids)) for r, ids in self.kubelet.allocatable]
        )

    def Get(self, request, context):  # noqa: N802
        pods, legacy = self.kubelet.state()
        self.kubelet.calls["Get"] += 1
        if legacy:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method Get")
        for pod in pods:
            if (pod.namespace, pod.name) == (request.pod_namespace, request.pod_name):
                return pb.GetPodResourcesResponse(pod_resources=pod_message(pod))
        context.abort(grpc.StatusCode.NOT_FOUND, f"pod {request.pod_namespace}/{request.pod_name} not found")


class FakeKubelet:
    """Serves `pods` over PodResources v1 on `socket_path`; change them at any time with `set_pods`."""

    def __init__(
        self,
        socket_path: Path,
        pods: list[Pod] | None = None,
        *,
        legacy: bool = False,
        allocatable: list[tuple[str, tuple[str, ...]]] | None = None,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.allocatable = allocatable or [("nvidia.com/gpu", ("GPU-0", "GPU-1"))]
        self.calls = {"List": 0, "GetAllocatableResources": 0, "Get": 0}
        self._pods = list(pods or [])
        self._legacy = legacy
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    def state(self) -> tuple[list[Pod], bool]:
        with self._lock:
            return list(self._pods), self._legacy

    def set_pods(self, pods: list[Pod], *, legacy: bool | None = None) -> None:
        with self._lock:
            self._pods = list(pods)
            if legacy is not None:
                self._legacy = legacy

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


def demo_cluster(pods: list[tuple[str, str]]) -> list[Pod]:
    """Each (namespace, pod) holds a 1g.10gb MIG slice through a DRA claim; plus one device-plugin GPU pod."""
    cluster = [
        Pod(
            namespace,
            name,
            (Container("server", claims=(Claim(f"{name}-gpu", f"gpu-0-mig-1g10gb-{i}", pool="demo-node"),)),),
        )
        for i, (namespace, name) in enumerate(pods)
    ]
    cluster.append(Pod("batch", "trainer-0", (Container("trainer", devices=(("nvidia.com/gpu", ("GPU-1",)),)),)))
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
    print(f"fake kubelet serving {len(pods) + 1} pods on unix://{args.socket}", flush=True)
    done.wait()
    kubelet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
