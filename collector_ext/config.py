"""The receiver's typed, validated configuration.

Precedence, highest first: command-line flags, `AGENTMETER_*` environment variables, the YAML file given
by `--config` (or `AGENTMETER_CONFIG`), the defaults below. Every field is documented here once; the CLI
`--help` reuses these descriptions.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from collector_ext.storage.dataset_files import check_writer_id
from collector_ext.storage.stores import is_object_store
from collector_ext.user_error import UserError

MIB = 1024 * 1024


def default_writer_id() -> str:
    # In Kubernetes the hostname is the pod name: unique among the receivers sharing a dataset.
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return (host or "receiver")[:63]


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the demo, tests and benchmarks listen on loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_endpoint(value: str) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port); raises ValueError with a readable message."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) <= 65535):
        raise ValueError(f"endpoint {value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)  # ":4317" is every interface, as in Go


class ReceiverConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTMETER_", extra="forbid", validate_default=True)

    data_dir: str = Field(
        "agentmeter-data",
        description="Where the Parquet dataset goes: a directory, or s3://BUCKET/PREFIX (any S3 API; the "
        "standard AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION apply; --wal-dir is "
        "then required).",
    )
    # localhost by default, as the OpenTelemetry Collector's receivers (since v0.104): exposing a port to the
    # network is a decision (in Kubernetes the manifests pass the pod address or 0.0.0.0 explicitly)
    grpc_endpoint: str = Field("localhost:4317", description="OTLP/gRPC listen address HOST:PORT.")
    http_endpoint: str = Field(
        "localhost:4318", description="OTLP/HTTP listen address HOST:PORT (also /metrics and live demand)."
    )
    writer_id: str = Field(
        default_factory=default_writer_id,
        description="Names this receiver's files; unique per receiver sharing a dataset (default: hostname).",
    )
    wal_dir: Path | None = Field(
        None,
        description="Write-ahead log directory, on local disk (default: <data-dir>/_wal/<writer-id>; required "
        "with an s3:// --data-dir).",
    )
    fsync: Literal["always", "interval", "never"] = Field(
        "always",
        description="WAL durability: 'always' fsyncs before each acknowledgement (concurrent requests share "
        "one fsync); 'interval' fsyncs every 200 ms; 'never' leaves it to the OS. Every policy survives a "
        "process crash or kill -9; only 'always' also survives a power cut.",
    )
    wal_segment_mib: int = Field(64, ge=1, description="WAL segment size before rotation, MiB.")
    max_recv_msg_mib: int = Field(
        64,
        ge=1,
        le=1024,
        description="Largest request accepted, compressed and decompressed, MiB (64: the OTLP spec's "
        "recommendation; larger is RESOURCE_EXHAUSTED / 413, not retried).",
    )
    max_concurrent_requests: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Export requests in progress at once per transport (gRPC, HTTP), queued included; past it "
        "UNAVAILABLE + RetryInfo (gRPC) / 429 + Retry-After (HTTP), which OTLP clients retry.",
    )
    max_request_memory_mib: int = Field(
        256,
        ge=2,
        description="Request bodies held at once, as received and decompressed, MiB; past it new requests get "
        "UNAVAILABLE / 503 with a retry delay. At least twice --max-recv-msg-mib.",
    )
    max_connections: int = Field(
        256,
        ge=1,
        description="Open connections per listening port (gRPC, HTTP, KEDA scaler). HTTP: past it the oldest "
        "connection without a request in progress is closed for the new one; gRPC: new connections wait.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest a connection may take to send a request's headers (HTTP; also idle new "
        "connections) or to complete its handshake (gRPC, TLS included) before it is closed.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Longest a request's body may take to arrive once its headers have (HTTP: 408 and the "
        "connection closes; gRPC: the call is cancelled and its worker freed).",
    )
    grpc_max_concurrent_streams: int = Field(
        100,
        ge=1,
        description="HTTP/2 streams per gRPC connection (SETTINGS_MAX_CONCURRENT_STREAMS). Also the bound of "
        "grpc core's HTTP/2 rapid-reset protection: reset streams count until they are freed.",
    )
    max_attribute_value_chars: int = Field(
        65536,
        ge=64,
        description="Attribute values, span names and status messages longer than this are truncated, with a "
        "marker giving the original length.",
    )
    max_id_chars: int = Field(
        256,
        ge=32,
        description="Ids and names in typed columns (response id, conversation id, models, agent and tool "
        "names) and attribute keys longer than this are shortened, with a marker and a SHA-256 prefix.",
    )
    max_attributes: int = Field(
        128, ge=1, description="Attributes kept per span, link and resource (the OTel SDK's default limit)."
    )
    max_links: int = Field(128, ge=1, description="Links kept per span (the OTel SDK's default limit).")
    span_max_age_hours: float = Field(
        168.0,
        ge=0,
        description="Spans that started more than this before they were received are rejected (each "
        "`date=` partition comes from a start time: a bound on what clients can create); 0: no limit.",
    )
    span_max_future_minutes: float = Field(
        60.0, ge=0, description="Spans that start more than this after they were received are rejected; 0: no limit."
    )
    max_pending_mib: int = Field(
        256,
        ge=1,
        description="Bytes held (WAL not yet in Parquet) before new requests get UNAVAILABLE, MiB, per pipeline "
        "(spans, GPU metrics); from 3/4 of it the traces holding the oldest WAL segments are written early.",
    )
    min_free_disk_mib: int = Field(
        256, ge=0, description="Free space below which requests get UNAVAILABLE instead of filling the disk."
    )
    retry_after_seconds: float = Field(5.0, gt=0, description="Back-off suggested to clients in RetryInfo.")
    keep: Literal["trace", "genai", "all"] = Field(
        "trace",
        description="Which spans to write: 'trace' every span of traces holding a GenAI span; "
        "'genai' only GenAI spans; 'all' everything.",
    )
    trace_grace_seconds: float = Field(
        30.0, ge=0, description="Quiet time after a trace's root arrived before it is written."
    )
    trace_max_wait_seconds: float = Field(
        900.0, gt=0, description="Longest a trace is held waiting for its root before it is written anyway."
    )
    max_held_spans: int = Field(
        500_000, ge=1, description="Spans held in memory; past it the oldest traces are written early."
    )
    dedupe_window_spans: int = Field(
        250_000,
        ge=0,
        description="Spans remembered as written (~100 bytes each) so that a batch sent again after a lost answer "
        "is not written twice; 0 switches it off.",
    )
    decode_processes: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Processes that decode export requests in parallel; 0 decodes in the receiver process. "
        "Default: one per usable CPU (affinity, lowered to a container's CPU limit), at most 4; 0 on one CPU.",
    )
    parquet_max_rows: int = Field(100_000, ge=1, description="Rows buffered before a Parquet file is written.")
    parquet_max_seconds: float = Field(60.0, gt=0, description="Longest rows wait before a Parquet file is written.")
    tls_cert: Path | None = Field(None, description="PEM server certificate (enables TLS on both endpoints).")
    tls_key: Path | None = Field(None, description="PEM private key of --tls-cert.")
    tls_client_ca: Path | None = Field(None, description="PEM CA bundle; when set, clients must present a cert (mTLS).")
    bearer_token: str | None = Field(
        None,
        description="When set, every endpoint but /healthz requires 'authorization: Bearer <token>' (KEDA's "
        "external scaler, which cannot send headers, passes it as trigger metadata bearerToken[FromEnv]).",
    )
    metrics_auth: bool = Field(
        True, description="With --bearer-token: /metrics requires the token too (--no-metrics-auth: open)."
    )
    podresources_socket: Path = Field(
        Path("/var/lib/kubelet/pod-resources/kubelet.sock"), description="kubelet PodResources API unix socket."
    )
    podresources_interval_seconds: float = Field(
        10.0, ge=0, description="Poll interval of the PodResources API; 0 switches the poller off."
    )
    gpu_drivers: list[str] = Field(
        default_factory=lambda: ["gpu.nvidia.com"],
        description="DRA drivers whose claimed devices are GPU slices; claims of other drivers (NVIDIA's "
        "compute-domain.nvidia.com IMEX channels, NICs) are not recorded. AMD: gpu.amd.com; Intel: gpu.intel.com "
        "(Gaudi: gaudi.intel.com).",
    )
    node_name: str | None = Field(
        None, description="Node name for GPU allocations (default: $NODE_NAME, else hostname)."
    )
    gpu_metric_names: list[str] = Field(
        default_factory=lambda: [
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
        ],
        description="Metrics kept from OTLP metric exports (all others are dropped).",
    )
    scaler_endpoint: str | None = Field(
        "localhost:9090", description="KEDA external scaler gRPC address HOST:PORT; empty switches it off."
    )
    ready_file: Path | None = Field(
        None,
        description="Once every endpoint listens, write the addresses bound (a port given as 0 is chosen by the "
        "kernel) as JSON to this file: pid, grpc, http, scaler (collector_ext/ready_file.py); removed at stop.",
    )
    prices: Path | None = Field(
        None,
        description="User price file (YAML, the analyzer's --prices format: collector_ext/pricing/price_file.py) "
        "for the live cost metrics; genai-prices' bundled prices apply to the rest.",
    )
    metrics_top_agents: int = Field(
        100, ge=1, le=100_000, description="Agents with their own series in the cost metrics; later ones: 'other'."
    )
    metrics_top_models: int = Field(
        100, ge=1, le=100_000, description="Models with their own series in the cost metrics; later ones: 'other'."
    )
    runaway_max_subagents: int = Field(50, ge=1, description="Runaway: sub-agent traces linked under one task.")
    runaway_max_depth: int = Field(6, ge=1, description="Runaway: links from a task's top to its deepest sub-agent.")
    runaway_max_tool_repeats: int = Field(
        20, ge=1, description="Runaway: calls of one tool with the same arguments in one task."
    )
    runaway_max_llm_calls: int = Field(200, ge=1, description="Runaway: LLM and embedding calls in one task.")
    runaway_max_failed_calls: int = Field(
        20, ge=1, description="Runaway: LLM and embedding calls ending in error in one task (retry storms)."
    )
    runaway_max_cost_usd: float = Field(5.0, gt=0, description="Runaway: token cost of one task so far, USD.")
    runaway_history_factor: float = Field(
        3.0,
        ge=1,
        description="Runaway: a task past this many times the p99 of its root agent's past tasks is flagged "
        "(never below threshold / factor).",
    )
    runaway_history_min_tasks: int = Field(
        50, ge=1, description="Runaway: past tasks of an agent needed before its history sets its limits."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_format: Literal["json", "console"] = Field("json", description="Structured log rendering.")

    @field_validator("grpc_endpoint", "http_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parse_endpoint(value)
        return value

    @field_validator("scaler_endpoint")
    @classmethod
    def _optional_endpoint(cls, value: str | None) -> str | None:
        if value:
            parse_endpoint(value)
        return value or None

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @field_validator("writer_id")
    @classmethod
    def _writer_id(cls, value: str) -> str:
        return check_writer_id(value)

    @model_validator(mode="after")
    def _consistent(self) -> ReceiverConfig:
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError(
                "--tls-client-ca needs --tls-cert and --tls-key: client certificates cannot be required on a "
                "plaintext endpoint"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if is_object_store(self.data_dir) and self.wal_dir is None:
            raise ValueError(
                f"--wal-dir is required with --data-dir {self.data_dir}: the write-ahead log must be on local disk"
            )
        if self.max_request_memory_mib < 2 * self.max_recv_msg_mib:
            raise ValueError(
                f"--max-request-memory-mib ({self.max_request_memory_mib}) must be at least twice "
                f"--max-recv-msg-mib ({self.max_recv_msg_mib}): one request, compressed and inflated, must fit"
            )
        return self

    @property
    def wal_path(self) -> Path:
        return self.wal_dir or (Path(self.data_dir) / "_wal" / self.writer_id)

    @property
    def dataset_is_local(self) -> bool:
        return not is_object_store(self.data_dir)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        config_file = _CONFIG_FILE.get("path")
        if config_file is not None:
            sources += (YamlConfigSettingsSource(settings_cls, yaml_file=config_file),)
        return sources


_CONFIG_FILE: dict[str, Path | None] = {"path": None}


def load_config(config_file: Path | None = None, **flags: Any) -> ReceiverConfig:
    """Build the config from flags (None means 'not given'), environment and an optional YAML file. Raises
    UserError for a missing or unreadable file, pydantic.ValidationError for bad values."""
    import os

    if config_file is None and os.environ.get("AGENTMETER_CONFIG"):
        config_file = Path(os.environ["AGENTMETER_CONFIG"])
    if config_file is not None and not config_file.is_file():
        raise UserError(f"config file {config_file} does not exist")
    _CONFIG_FILE["path"] = config_file
    try:
        return ReceiverConfig(**{k: v for k, v in flags.items() if v is not None})
    except yaml.YAMLError as err:
        raise UserError(f"config file {config_file} is not valid YAML: {' '.join(str(err).split())}") from None
    finally:
        _CONFIG_FILE["path"] = None
