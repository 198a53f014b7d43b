"""Wiring: builds the receiver's parts from a config and runs them until SIGTERM/SIGINT.

Start order: the writer lock (one receiver per writer id and WAL directory: storage/writer_lock.py), telemetry,
live state, stitcher, pipeline (its start replays the WAL before anything is accepted), GPU metrics receiver
and PodResources poller, the decode processes, the OTLP gRPC server, the KEDA scaler gRPC server, and last
the HTTP server (so `/healthz` answering means every endpoint is up). On SIGTERM/SIGINT: stop accepting
(HTTP, gRPC with a short grace for in-flight requests), stop the poller and the decode processes,
`pipeline.close()` writes every held trace, then exit 0 (1 when rows could not be written: they stay in the
WAL and are replayed at the next start).
"""

from __future__ import annotations

import gc
import signal
import ssl
import threading
import time
from typing import Any

import grpc
import uvicorn

from collector_ext.config import ReceiverConfig, parse_endpoint
from collector_ext.decode.limits import DecodeLimits
from collector_ext.decode.pool import DecodePool, default_processes
from collector_ext.gpu.metrics import GpuMetricsReceiver
from collector_ext.gpu.podresources import PodResourcesPoller
from collector_ext.keda.scaler import ExternalScalerServicer, add_scaler_servicer, demand_json
from collector_ext.receiver.grpc_server import GrpcHandlers, build_grpc_server
from collector_ext.receiver.http_connections import guarded_protocol
from collector_ext.receiver.http_server import build_app
from collector_ext.receiver.ingest import TraceIngest
from collector_ext.receiver.telemetry import Telemetry
from collector_ext.storage.writer_lock import WriterLock
from collector_ext.traces.live_state import LiveState
from collector_ext.traces.pipeline import Pipeline
from collector_ext.traces.stitching import Stitcher

GRPC_STOP_GRACE_S = 5.0
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
        # before anything reads or writes the WAL or the dataset: raises WriterIdInUse (a UserError)
        self.lock = WriterLock(config.wal_path, config.data_dir, config.writer_id).acquire()
        self.telemetry = Telemetry(config.log_level, config.log_format)
        self.log = self.telemetry.log
        self.live = LiveState()
        self.stitcher = Stitcher(keep=config.keep)
        self.pipeline = Pipeline(config, self.stitcher, self.live)
        self.decoder: DecodePool | None = None
        self.gpu_metrics: GpuMetricsReceiver | None = None
        self.poller: PodResourcesPoller | None = None
        self.grpc: grpc.Server | None = None
        self.scaler: grpc.Server | None = None
        self.scaler_servicer: ExternalScalerServicer | None = None
        self.http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> None:
        config = self.config
        self.pipeline.start()
        self.telemetry.watch_pipeline(self.pipeline.snapshot)
        # one DatasetFiles per writer: the file sequence numbers of all tables come from it
        self.gpu_metrics = GpuMetricsReceiver(config, self.pipeline.files)
        self.telemetry.watch_gpu_metrics(self.gpu_metrics.snapshot)
        if config.podresources_interval_seconds > 0:
            self.poller = PodResourcesPoller(config, self.pipeline.files)
            self.poller.start()

        processes = config.decode_processes if config.decode_processes is not None else default_processes()
        self.decoder = DecodePool(processes, DecodeLimits.from_config(config))
        ingest = TraceIngest(self.pipeline, self.telemetry, config, self.decoder)
        self.telemetry.request_memory.set_function(lambda: ingest.memory.used)
        handlers = GrpcHandlers(ingest, self.telemetry, config, self.gpu_metrics.export)
        self.grpc, _ = build_grpc_server(
            lambda executor: [handlers.generic_handler(executor)], config.grpc_endpoint, config
        )
        self.grpc.start()

        if config.scaler_endpoint:
            self.scaler, _ = build_grpc_server(
                lambda executor: [],
                config.scaler_endpoint,
                config,
                workers=SCALER_STREAMS,
                maximum_concurrent_rpcs=SCALER_STREAMS,
            )
            self.scaler_servicer = add_scaler_servicer(self.scaler, self.live, config.bearer_token)
            self.scaler.start()

        def demand(query: dict) -> dict:
            return demand_json(self.live, query)

        app = build_app(ingest, self.telemetry, config, self.gpu_metrics.export, demand)
        self.http = _http_server(app, config)
        self._http_thread = threading.Thread(target=self.http.run, name="http", daemon=True)
        self._http_thread.start()
        deadline = time.monotonic() + HTTP_START_TIMEOUT_S
        while not self.http.started:
            if not self._http_thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"cannot serve HTTP on {config.http_endpoint} (address in use?)")
            time.sleep(0.01)
        self.log.info(
            "receiver ready",
            grpc=config.grpc_endpoint,
            http=config.http_endpoint,
            scaler=config.scaler_endpoint if self.scaler else None,
            data_dir=str(config.data_dir),
            writer_id=config.writer_id,
            replayed_spans=self.pipeline.stats.spans_replayed,
        )

    def stop(self) -> bool:
        """Stop accepting, then write out everything held. Safe on a partly started receiver. Returns False
        when rows could not be written (they stay in the WAL for the next start)."""
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
        while not stop.wait(1.0):
            pass
        receiver.log.info("stopping", reason="signal")
        complete = receiver.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if complete else 1
