"""Quota sizing (`analyze recommend --emit quota`): a ResourceQuota and a LimitRange for the agents' namespace
from its observed concurrency (peak and p99) x one sandbox's requests, with the numbers as comments, valid
for Kubernetes 1.34-1.37 (kubernetes-validate's schemas, strict)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from idle_datasets import Run, write_runs

from analyzer.cli import main

K8S_VERSIONS = ["1.34", "1.35", "1.36", "1.37"]
TEMPLATE = {
    "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
    "kind": "SandboxTemplate",
    "metadata": {"name": "py-sandbox"},
    "spec": {
        "podTemplate": {
            "spec": {
                "containers": [{"name": "agent", "resources": {"requests": {"cpu": "1500m", "memory": "3Gi"}}}],
                "initContainers": [
                    {"name": "proxy", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}},
                ],
            }
        }
    },
}  # fmt: skip


@pytest.fixture
def runs(data_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    # research: 1 run, then 2, 3 at once for 2 s, 4 at once for 0.1 s, back down; the other namespace's
    # runs at the same moments never count
    write_runs(
        data_dir,
        [
            Run("planner", 0, 10, namespace="research"),
            Run("researcher", 2, 4, namespace="research"),
            Run("researcher", 3, 2, namespace="research"),
            Run("summarizer", 3, 0.1, namespace="research"),
            Run("planner", 20, 10, namespace="research"),
            *(Run("triage", 2.5, 5, namespace="support") for _ in range(6)),
        ],
    )
    template = tmp_path / "sandbox.yaml"
    template.write_text(yaml.safe_dump(TEMPLATE))
    return data_dir, template


def emit(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["recommend", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_quota_from_peak_concurrency_and_sandbox_requests(runs, capsys) -> None:
    data, template = runs
    code, out, _ = emit(capsys, "--data", str(data), "--emit", "quota", "--namespace", "research",
                        "--sandbox-template", str(template))  # fmt: skip
    assert code == 0
    quota, limits = list(yaml.safe_load_all(out))
    assert quota["kind"] == "ResourceQuota" and quota["metadata"]["namespace"] == "research"
    # peak 4 sandboxes x (1750m, 3584Mi)
    assert quota["spec"]["hard"] == {"pods": "4", "requests.cpu": "7000m", "requests.memory": "14336Mi"}
    assert limits["spec"]["limits"] == [{"type": "Container", "defaultRequest": {"cpu": "1500m", "memory": "3072Mi"}}]
    assert "# concurrency of the namespace's runs: peak 4, p99 3" in out
    assert "#   agent researcher: peak 2, p99 2, 2 runs" in out
    assert "# at p99 (3 sandboxes) it would be 5250m CPU, 10752Mi" in out
    assert "# one sandbox (sandbox.yaml) requests 1750m CPU and 3584Mi memory" in out
    for doc in (quota, limits):
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)

    code, out, _ = emit(capsys, "--data", str(data), "--emit", "quota", "--namespace", "research",
                        "--sandbox-template", str(template), "--quota-headroom", "20")  # fmt: skip
    quota = next(yaml.safe_load_all(out))
    assert quota["spec"]["hard"] == {"pods": "5", "requests.cpu": "8750m", "requests.memory": "17920Mi"}


def test_quota_needs_its_inputs(runs, capsys) -> None:
    data, template = runs
    for args, message in [
        (["--emit", "quota", "--namespace", "research"], "--emit quota needs --namespace"),
        (["--emit", "quota", "--sandbox-template", str(template)], "--emit quota needs --namespace"),
        (["--emit", "quota", "--namespace", "nowhere", "--sandbox-template", str(template)], "no agent runs"),
        (["--emit", "keda"], "--agent is required"),
    ]:
        code, out, err = emit(capsys, "--data", str(data), *args)
        assert (code, out) == (2, "") and message in err and err.count("\n") == 1
