"""Wiring: builds the receiver's parts from a config and runs them until SIGTERM/SIGINT.

Start order: the writer lock (one receiver per writer id and WAL directory: storage/writer_lock.py), telemetry,
live state, stitcher, pipeline (its start replays the WAL before anything is accepted), GPU metrics receiver
and PodResources poller, the decode processes, the OTLP gRPC server, the KEDA scaler gRPC server, and last
the HTTP server (so `/healthz` answering means every endpoint is up); then the addresses really bound (ports
given as 0 are chosen by the kernel) go to the `receiver ready` log line and `--ready-file`
(collector_ext/ready_file.py). On SIGTERM/SIGINT: remove the ready file, stop accepting
(HTTP, gRPC with a short grace for in-flight requests), stop the poller and the decode processes,
`pipeline.close()` writes every held trace, then exit 0 (1 when rows could not be written: they stay in the
WAL and are replayed at the next start).
"""

from __future__ import annotations

import gc
import os
import signal
import ssl
import threading
import time
from typing import Any

import grpc
import uvicorn
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from collector_ext.config import ReceiverConfig, parse_endpoint
from collector_ext.decode.limits import DecodeLimits
from collector_ext.decode.pool import DecodePool, default_processes
from collector_ext.errors import ErrorKind, ReceiverError
from collector_ext.gpu.metrics import GpuMetricsReceiver
from collector_ext.gpu.podresources import PodResourcesPoller
from collector_ext.keda.scaler import ExternalScalerServicer, add_scaler_servicer, demand_json
from collector_ext.pricing.live import LivePrices
from collector_ext.ready_file import BoundEndpoints, bound_address, remove_ready_file, write_ready_file
from collector_ext.receiver.grpc_server import GrpcHandlers, build_grpc_server
from collector_ext.receiver.http_connections import guarded_protocol
from collector_ext.receiver.http_server import build_app
from collector_ext.receiver.ingest import TraceIngest
from collector_ext.receiver.telemetry import Telemetry
from collector_ext.storage.stores import is_object_store
from collector_ext.storage.writer_lock import WriterLock
from collector_ext.traces.cost_meter import CostMeter
from collector_ext.traces.live_state import LiveState
from collector_ext.traces.pipeline import Pipeline
from collector_ext.traces.runaway import RunawayThresholds, RunawayWatch
from collector_ext.traces.stitching import Stitcher
from collector_ext.user_error import UserError

GRPC_STOP_GRACE_S = 5.0
CONNECT_FIRST_WAIT_S = 1.0  # an object store unreachable at start: first retry after this, doubling ...
CONNECT_MAX_WAIT_S = 30.0  # ... up to this (the durable writer's own cap between failed writes)
HTTP_START_TIMEOUT_S = 20.0
GC_GEN0_THRESHOLD = 10_000
SCALER_STREAMS = 16  # StreamIsActive holds a worker per KEDA stream: as many workers as concurrent RPCs


def _http_server(app: Any, config: ReceiverConfig) -> uvicorn.Server:
    host, port = parse_endpoint(config.http_endpoint)
    tls: dict[str, Any] = {}
    if config.tls_cert is not None:
        tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
        if config.tls_client_ca is not None:
            tls |= {"ssl_ca_certs": str(config.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # connections and header timeouts in http_connections.py; no limit_concurrency (it answers 503 to
        # everything, /healthz included, while idle connections stay); exports are bounded in http_server
        http=guarded_protocol(config.header_timeout_seconds, config.max_connections),
        timeout_graceful_shutdown=int(GRPC_STOP_GRACE_S),
        **tls,
    )
    return uvicorn.Server(uv_config)


class Receiver:
    """The running receiver: every part, started in order, stopped in reverse."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        # the price file first: a bad one is a UserError (PriceFileError) before anything is held
        self.prices = LivePrices(config.prices)
        self.prices.rows("", "")  # loads genai-prices' bundled data now, not on the first call
        # before anything reads or writes the WAL or the dataset: raises WriterIdInUse (a UserError); an object
        # store's lease comes with the rest of what needs the store (_connect)
        self.lock = WriterLock(config.wal_path, config.data_dir, config.writer_id).acquire(lease=False)
        self.telemetry = Telemetry(config.log_level, config.log_format)
        self.log = self.telemetry.log
        self.live = LiveState()
        self.stitcher = Stitcher(keep=config.keep)
        self.meter = CostMeter(self.prices, config.metrics_top_agents, config.metrics_top_models)
        self.runaway = RunawayWatch(self.prices, runaway_thresholds(config), self.meter.agent_label)
        self.pipeline = Pipeline(config, self.stitcher, self.live, meter=self.meter, runaway=self.runaway)
        self.telemetry.watch_families(self.meter.families)
        self.telemetry.watch_families(self.runaway.families)
        self.decoder: DecodePool | None = None
        self.gpu_metrics: GpuMetricsReceiver | None = None
        self.poller: PodResourcesPoller | None = None
        self.grpc: grpc.Server | None = None
        self.scaler: grpc.Server | None = None
        self.scaler_servicer: ExternalScalerServicer | None = None
        self.http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self.endpoints: BoundEndpoints | None = None  # what is really listening, once started
        self._pipeline_started = False
        self._connecting: threading.Thread | None = None
        self._stopping = threading.Event()
        self.failed = threading.Event()  # a start step that waited for the store found a user error
        self.failure: UserError | None = None

    def start(self) -> None:
        config = self.config
        self.telemetry.watch_pipeline(self.pipeline.snapshot)
        deferred = False
        try:
            self._connect()
        except OSError as err:
            if not is_object_store(config.data_dir):
                raise  # a directory that cannot be written is no transient trouble: say it and exit
            self.pipeline.defer_start()
            deferred = True
            self.log.warning(
                "object store unreachable at start: accepting traces into the write-ahead log (up to "
                "--max-pending-mib, then retryable refusals), GPU metrics refused (retryable); retrying with "
                "back-off",
                data_dir=str(config.data_dir),
                error=" ".join(str(err).split()),
            )

        processes = config.decode_processes if config.decode_processes is not None else default_processes()
        self.decoder = DecodePool(processes, DecodeLimits.from_config(config))
        ingest = TraceIngest(self.pipeline, self.telemetry, config, self.decoder)
        self.telemetry.request_memory.set_function(lambda: ingest.memory.used)
        handlers = GrpcHandlers(ingest, self.telemetry, config, self._export_gpu_metrics)
        self.grpc, grpc_port = build_grpc_server(
            lambda executor: [handlers.generic_handler(executor)], config.grpc_endpoint, config
        )
        self.grpc.start()

        scaler_address = None
        if config.scaler_endpoint:
            self.scaler, scaler_port = build_grpc_server(
                lambda executor: [],
                config.scaler_endpoint,
                config,
                workers=SCALER_STREAMS,
                maximum_concurrent_rpcs=SCALER_STREAMS,
            )
            self.scaler_servicer = add_scaler_servicer(self.scaler, self.live, config.bearer_token)
            self.scaler.start()
            scaler_address = bound_address(config.scaler_endpoint, scaler_port)

        def demand(query: dict) -> dict:
            return demand_json(self.live, query)

        app = build_app(ingest, self.telemetry, config, self._export_gpu_metrics, demand)
        self.http = _http_server(app, config)
        self._http_thread = threading.Thread(target=self.http.run, name="http", daemon=True)
        self._http_thread.start()
        deadline = time.monotonic() + HTTP_START_TIMEOUT_S
        while not self.http.started:
            if not self._http_thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"cannot serve HTTP on {config.http_endpoint} (address in use?)")
            time.sleep(0.01)
        http_port = self.http.servers[0].sockets[0].getsockname()[1]
        self.endpoints = BoundEndpoints(
            pid=os.getpid(),
            grpc=bound_address(config.grpc_endpoint, grpc_port),
            http=bound_address(config.http_endpoint, http_port),
            scaler=scaler_address,
        )
        if config.ready_file is not None:
            write_ready_file(config.ready_file, self.endpoints)
        self.log.info(
            "receiver ready",
            grpc=self.endpoints.grpc,
            http=self.endpoints.http,
            scaler=self.endpoints.scaler,
            data_dir=str(config.data_dir),
            writer_id=config.writer_id,
            replayed_spans=self.pipeline.stats.spans_replayed,
        )
        if deferred:
            self._connecting = threading.Thread(target=self._keep_connecting, name="connect", daemon=True)
            self._connecting.start()

    def _connect(self) -> None:
        """What needs the dataset's store, each step once: the writer id's lease (object stores), the span
        pipeline's start (its WAL replayed), GPU metrics (theirs), the PodResources poller. Raises OSError
        while the store cannot be reached; call again."""
        config = self.config
        self.lock.acquire_lease()
        if not self._pipeline_started:
            self.pipeline.start()
            self._pipeline_started = True
        if self.gpu_metrics is None:
            # one DatasetFiles per writer: the file sequence numbers of all tables come from it
            gpu_metrics = GpuMetricsReceiver(config, self.pipeline.files)
            self.telemetry.watch_gpu_metrics(gpu_metrics.snapshot)
            self.gpu_metrics = gpu_metrics
        if config.podresources_interval_seconds > 0 and self.poller is None:
            self.poller = PodResourcesPoller(config, self.pipeline.files)
            self.poller.start()

    def _keep_connecting(self) -> None:
        """Retry `_connect` with exponential back-off (capped) until it succeeds or the receiver stops; a user
        error found meanwhile (another receiver holds the writer id) stops the receiver (run_server)."""
        wait = CONNECT_FIRST_WAIT_S
        attempts = 1
        while not self._stopping.wait(wait):
            attempts += 1
            try:
                self._connect()
            except OSError as err:
                wait = min(CONNECT_MAX_WAIT_S, wait * 2)
                self.log.warning(
                    "object store still unreachable; retrying",
                    attempts=attempts,
                    next_attempt_in_s=wait,
                    error=" ".join(str(err).split()),
                )
                continue
            except UserError as err:
                self.failure = err
                self.failed.set()
                return
            self.log.info(
                "object store reached: write-ahead log replayed, writing",
                attempts=attempts,
                replayed_spans=self.pipeline.stats.spans_replayed,
            )
            return

    def _export_gpu_metrics(self, request: ExportMetricsServiceRequest) -> tuple[int, str]:
        """GPU metric exports, once their pipeline has started (it replays from the store); until then the
        retryable STORAGE_UNAVAILABLE (scrapes come again: nothing is lost)."""
        gpu_metrics = self.gpu_metrics
        if gpu_metrics is None:
            raise ReceiverError(
                ErrorKind.STORAGE_UNAVAILABLE,
                "receiver cannot write its data now: its object store has not been reached yet",
                self.config.retry_after_seconds,
            )
        return gpu_metrics.export(request)

    def stop(self) -> bool:
        """Stop accepting, then write out everything held. Safe on a partly started receiver. Returns False
        when rows could not be written (they stay in the WAL for the next start)."""
        self._stopping.set()
        if self._connecting is not None:
            self._connecting.join(timeout=60)  # an attempt under way ends within the S3 client's timeouts
        if self.config.ready_file is not None:
            remove_ready_file(self.config.ready_file)  # the endpoints are going away
        if self.http is not None:
            self.http.should_exit = True
        if self.scaler_servicer is not None:
            self.scaler_servicer.stop()
        stopping = [server.stop(GRPC_STOP_GRACE_S) for server in (self.grpc, self.scaler) if server is not None]
        if self._http_thread is not None:
            self._http_thread.join(timeout=GRPC_STOP_GRACE_S + 5)
        for event in stopping:
            event.wait(GRPC_STOP_GRACE_S + 5)
        if self.poller is not None:
            self.poller.stop()
        if self.decoder is not None:
            self.decoder.close()
        complete = self.pipeline.close()
        if self.gpu_metrics is not None:
            complete = self.gpu_metrics.close() and complete
        self.lock.release()
        self.log.info("receiver stopped", complete=complete, **self.pipeline.stats.__dict__)
        return complete


def runaway_thresholds(config: ReceiverConfig) -> RunawayThresholds:
    return RunawayThresholds(
        subagents=config.runaway_max_subagents,
        depth=config.runaway_max_depth,
        tool_repeats=config.runaway_max_tool_repeats,
        llm_calls=config.runaway_max_llm_calls,
        failed_calls=config.runaway_max_failed_calls,
        cost_usd=config.runaway_max_cost_usd,
        history_factor=config.runaway_history_factor,
        history_min_tasks=config.runaway_history_min_tasks,
    )


def tune_gc() -> None:
    """Span rows are acyclic dicts made by the hundred thousand: a larger first generation makes the cyclic
    collector run ~10x less often (bench/bench_ingest.py: ~15 % less decode CPU), and freezing the objects of
    start-up keeps full collections from rescanning them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def run_server(config: ReceiverConfig) -> int:
    """Run until SIGTERM/SIGINT; write out everything held; 0 on a clean stop. OSError: cannot start.

    Our signal handler stays installed until the end: a second SIGTERM/SIGINT while held traces are being
    written does not interrupt that (everything acknowledged is in the WAL anyway; SIGKILL remains).
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        receiver = Receiver(config)
        try:
            receiver.start()
        except OSError as err:
            receiver.log.error("cannot start", error=str(err))
            receiver.stop()
            raise
        tune_gc()
        while not stop.wait(1.0) and not receiver.failed.is_set():
            pass
        receiver.log.info("stopping", reason="signal" if stop.is_set() else "error")
        complete = receiver.stop()
        if receiver.failure is not None:  # e.g. the writer id's lease, found held once the store answered
            receiver.log.error("cannot go on", error=str(receiver.failure))
            raise receiver.failure
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if complete else 1
