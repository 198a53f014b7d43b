"""Security that does what it says: mTLS without a certificate refuses to start; with --bearer-token every
endpoint that reveals or changes anything requires it (the KEDA scaler and /v1/demand included, /metrics
unless --no-metrics-auth, /healthz open); listen addresses default to localhost."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from receiver_process import ReceiverProcess
from test_keda_scaler import RPC_TIMEOUT_S, ref
from test_serve_cli import run_cli

from collector_ext.config import ReceiverConfig, parse_endpoint
from collector_ext.keda import externalscaler_pb2 as pb
from collector_ext.keda import externalscaler_pb2_grpc as pb_grpc

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tls-client-ca", "ca.pem"), "--tls-client-ca needs --tls-cert and --tls-key"),
        (("--tls-client-ca", "ca.pem", "--tls-key", "key.pem"), "--tls-client-ca needs --tls-cert and --tls-key"),
        (("--tls-cert", "cert.pem"), "--tls-cert and --tls-key go together"),
        (("--max-recv-msg-mib", "200"), "--max-request-memory-mib (256) must be at least twice --max-recv-msg-mib"),
    ],
)
def test_inconsistent_options_refuse_to_start_with_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_cli("--data-dir", str(tmp_path / "d"), "--scaler-endpoint", "", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "d").exists()  # refused before anything started


def test_listen_addresses_default_to_localhost() -> None:
    config = ReceiverConfig(writer_id="w")
    assert (config.grpc_endpoint, config.http_endpoint, config.scaler_endpoint) == (
        "localhost:4317",
        "localhost:4318",
        "localhost:9090",
    )
    assert parse_endpoint(":4317") == ("0.0.0.0", 4317)  # an empty host is every interface, as in Go


def scaler_call(receiver: ReceiverProcess, metadata: dict[str, str], headers=None) -> grpc.RpcError | float:
    with grpc.insecure_channel(receiver.scaler_endpoint) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        try:
            request = pb.GetMetricsRequest(scaledObjectRef=ref(agent="planner", warmFloor="2", **metadata))
            (value,) = stub.GetMetrics(request, timeout=RPC_TIMEOUT_S, metadata=headers).metricValues
            return value.metricValueFloat
        except grpc.RpcError as err:
            return err


@pytest.mark.slow
def test_the_bearer_token_guards_every_endpoint_but_healthz(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, "--bearer-token", TOKEN) as receiver:
        url = receiver.http_url
        assert httpx.get(f"{url}/healthz").status_code == 200
        for path in ("/v1/demand?agent=planner", "/metrics"):
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
                response = httpx.get(f"{url}{path}", headers=headers)
                assert (response.status_code, response.headers["www-authenticate"]) == (401, "Bearer"), path
            assert httpx.get(f"{url}{path}", headers=AUTH).status_code == 200, path
        assert httpx.get(f"{url}/v1/demand?agent=planner&warmFloor=2", headers=AUTH).json()["value"] == 2.0

        # the KEDA external scaler: KEDA sends no headers, so the token comes as trigger metadata
        for metadata, headers in (({}, None), ({"bearerToken": "wrong"}, None), ({}, [("authorization", "Bearer x")])):
            err = scaler_call(receiver, metadata, headers)
            assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert scaler_call(receiver, {"bearerTokenFromEnv": TOKEN}) == 2.0  # KEDA resolved the env var
        assert scaler_call(receiver, {"bearerToken": TOKEN}) == 2.0
        assert scaler_call(receiver, {}, [("authorization", f"Bearer {TOKEN}")]) == 2.0
        with grpc.insecure_channel(receiver.scaler_endpoint) as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            for call in (stub.IsActive, stub.GetMetricSpec):
                with pytest.raises(grpc.RpcError) as caught:
                    call(ref(agent="planner"), timeout=RPC_TIMEOUT_S)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stream = stub.StreamIsActive(ref(agent="planner"), timeout=RPC_TIMEOUT_S)
            with pytest.raises(grpc.RpcError) as caught:
                next(stream)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert stub.IsActive(ref(agent="planner", bearerTokenFromEnv=TOKEN), timeout=RPC_TIMEOUT_S).result is False


@pytest.mark.slow
def test_metrics_can_be_left_open_for_scrapers_without_the_token(data_dir: Path) -> None:
    with ReceiverProcess(data_dir, "--bearer-token", TOKEN, "--no-metrics-auth") as receiver:
        assert httpx.get(f"{receiver.http_url}/metrics").status_code == 200
        assert httpx.get(f"{receiver.http_url}/v1/demand?agent=planner").status_code == 401
