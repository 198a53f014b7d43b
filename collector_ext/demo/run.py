"""`make demo` (`python -m collector_ext.demo`): the whole main job on one machine, in under a minute.

1. starts a fake kubelet (a real PodResources v1 gRPC server on a unix socket) whose pods hold DRA MIG
   slices: the pods the workload's self-hosted model runs on;
2. starts the real receiver (`collector-ext serve`, a subprocess) on free loopback ports, writing to
   ./demo-data (wiped first), polling that kubelet;
3. sends a multi-agent workload through the real OTel SDK exporter: days of history on a simulated clock
   (bursts and idle gaps), then a short live burst "now" while the GPU slices are allocated, with
   dcgm-exporter style GPU metrics for those slices;
4. stops the receiver with SIGTERM (it writes every held trace) and checks the dataset against the
   workload's expected totals;
5. runs the analyzer: `analyze cost --by agent`, `analyze tasks`, `analyze gpu --by agent`, `analyze idle`,
   and writes `analyze report` to demo-data/report.html.

Everything started here is stopped here, by pid, also on Ctrl-C or an error. Ctrl-C (or SIGTERM) stops
the whole demo at once: the workload's exporters stop sending (no retries into a receiver that is going
away: `WorkloadStop`), the receiver gets SIGTERM and writes what it holds, the fake kubelet stops.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from collector_ext.demo.dcgm_exporter import ExporterConfig, Gpu, Holder, MigInstance, otlp_request, scrape
from collector_ext.demo.fake_kubelet import FakeKubelet, demo_cluster
from collector_ext.demo.loadgen import GPU_SLICES, NS_PER_S, GpuSlice, WorkloadResult, WorkloadSpec, make_exporter
from collector_ext.demo.loadgen import run_workload as send_workload
from collector_ext.ready_file import read_ready_file

DEFAULT_TASKS = 40
LIVE_TASKS = 4
GPU_NODE = "gpu-node-1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 120.0


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


class DemoError(Exception):
    """A step of the demo failed: printed on one line, exit code 1."""


# --- stopping the workload at once ----------------------------------------------------------------------


class WorkloadStop:
    """Stops every exporter of the workload at once. Without it, Ctrl-C leaves the OTel SDK flushing its
    queues into a receiver that is going away, each batch retried with backoff for up to its timeout
    (`opentelemetry/exporter/otlp/proto/grpc/exporter.py`, `_export`): over a minute of a dead demo.
    `stop()` makes every export fail at once without sending, and shuts the real exporters down, which wakes
    an export sleeping between retries (`_shutdown_in_progress`) and closes its channel (cancelling a call
    in flight)."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.exporters: list[StoppableExporter] = []
        self._lock = threading.Lock()

    def wrap(self, exporter: SpanExporter) -> StoppableExporter:
        wrapped = StoppableExporter(exporter, self.stopping)
        with self._lock:
            self.exporters.append(wrapped)
        return wrapped

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            exporters = list(self.exporters)
        for exporter in exporters:
            exporter.shutdown()

    @property
    def dropped(self) -> int:
        return sum(e.dropped for e in self.exporters)


class StoppableExporter(SpanExporter):
    """A real exporter that, once the demo is stopping, drops what it is given instead of sending it."""

    def __init__(self, inner: SpanExporter, stopping: threading.Event) -> None:
        self.inner = inner
        self.stopping = stopping
        self.dropped = 0
        self._shut = threading.Lock()
        self._is_shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.stopping.is_set():
            self.dropped += len(spans)
            return SpanExportResult.FAILURE
        return self.inner.export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True if self.stopping.is_set() else self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        with self._shut:
            if self._is_shut:
                return
            self._is_shut = True
        self.inner.shutdown()


class HeldSignals:
    """Within `with`: SIGINT / SIGTERM stop the workload and are noted, not raised; on leaving, a noted one
    is raised as KeyboardInterrupt. The clean-up (stopping the receiver, the kubelet) runs to its end."""

    def __init__(self, stop: WorkloadStop) -> None:
        self.stop = stop
        self.noted = False

    def __enter__(self) -> HeldSignals:
        def note(signum: int, frame: object) -> None:
            self.noted = True
            self.stop.stop()

        self.previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.noted and exc[0] is None:
            raise KeyboardInterrupt


# --- the pieces we start ---------------------------------------------------------------------------------


class Receiver:
    """`collector-ext serve` as a subprocess on loopback ports it binds itself (port 0) and names in its
    ready file (collector_ext/ready_file.py); stop() = SIGTERM by pid, bounded."""

    def __init__(self, data_dir: Path, kubelet_socket: Path | None, log_path: Path) -> None:
        self.ready_path = log_path.with_name("receiver.ready.json")
        self.grpc_endpoint = self.http_url = ""  # known once it listens
        args = [
            sys.executable, "-m", "collector_ext.cli", "serve",
            "--data-dir", str(data_dir),
            "--grpc-endpoint", "127.0.0.1:0",
            "--http-endpoint", "127.0.0.1:0",
            "--scaler-endpoint", "127.0.0.1:0",
            "--ready-file", str(self.ready_path),
            "--writer-id", "demo",
            "--trace-grace-seconds", "0.5",
            "--parquet-max-seconds", "1",
            "--fsync", "never",  # a demo: no need to wait for the disk
            "--node-name", GPU_NODE,
            "--log-format", "console",
        ]  # fmt: skip
        if kubelet_socket is not None:
            args += ["--podresources-socket", str(kubelet_socket), "--podresources-interval-seconds", "0.5"]
        else:
            args += ["--podresources-interval-seconds", "0"]
        self.args = args
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "receiver not started"
        return self.process.pid

    def start(self) -> Receiver:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "16777216", "MALLOC_TRIM_THRESHOLD_": "67108864"}
        self.ready_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"the receiver exited with {self.process.returncode}; see {self.log_path}")
            ready = read_ready_file(self.ready_path)
            if ready is not None and ready.pid == self.process.pid:
                self.grpc_endpoint, self.http_url = ready.grpc, f"http://{ready.http}"
                return self
            time.sleep(0.1)
        raise DemoError(f"the receiver was not ready within {START_TIMEOUT_S:.0f} s; see {self.log_path}")

    def stop(self) -> int | None:
        """SIGTERM (the receiver writes every held trace), wait; SIGKILL only past the time limit."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise DemoError(f"the receiver did not stop within {STOP_TIMEOUT_S:.0f} s; see {self.log_path}") from None


def start_fake_kubelet(socket_path: Path) -> FakeKubelet:
    """The fake kubelet, in this process, serving the DRA claims of the workload's GPU pods."""
    return FakeKubelet(socket_path, demo_cluster([(s.pod.namespace, s.pod.name) for s in GPU_SLICES], GPU_NODE)).start()


# --- dcgm-exporter metrics, as the Collector's prometheus receiver forwards them --------------------------


def dcgm_request(
    slices: Sequence[GpuSlice], busy: dict[str, list[tuple[int, int]]], start_ns: int, end_ns: int, step_s: float = 1.0
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """DCGM_FI_PROF_GR_ENGINE_ACTIVE every `step_s`, labelled as dcgm-exporter (--kubernetes
    --kubernetes-enable-dra) labels it (collector_ext/demo/dcgm_exporter.py): a slice's MIG row reads 0.9 of
    the time its pod serves inference (plus a 0.02 floor), its parent GPU's row (copied for the claim) a
    seventh of that."""
    step_ns = int(step_s * NS_PER_S)
    gpus = [
        Gpu(s.gpu_minor, s.gpu_uuid, mig=(MigInstance(s.gpu_instance_id, s.mig_profile, 19, 0, s.mig_uuid),))
        for s in slices
    ]
    holders = [
        Holder(s.pod.namespace, s.pod.name, s.pod.container, s.claim_name, s.pod.namespace, s.driver, s.pool, s.device)
        for s in slices
    ]
    rows = scrape(GPU_NODE, gpus, holders, ExporterConfig())
    pod_of_gpu = {s.gpu_uuid: s.pod.name for s in slices}
    samples = []
    for t in range(start_ns, end_ns + 1, step_ns):
        for row in rows:
            intervals = busy.get(pod_of_gpu[row.entity.gpu_uuid], [])
            window_busy = sum(max(0, min(e, t + step_ns) - max(s, t)) for s, e in intervals)
            value = min(1.0, 0.02 + 0.9 * window_busy / step_ns)
            if row.entity.gpu_instance_id is None:
                value /= 7  # the whole GPU: one of its seven compute slices is this instance
            samples.append((t, row, round(value, 4)))
    return otlp_request("DCGM_FI_PROF_GR_ENGINE_ACTIVE", samples)


def send_dcgm(endpoint: str, request: metrics_service_pb2.ExportMetricsServiceRequest) -> str:
    with grpc.insecure_channel(endpoint) as channel:
        try:
            response = metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=10)
        except grpc.RpcError as err:
            raise DemoError(f"sending GPU metrics failed: {err.code().name} {err.details()}") from None
    points = sum(len(m.gauge.data_points) for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)  # fmt: skip
    rejected = response.partial_success.rejected_data_points
    return f"{points - rejected} GPU metric samples accepted" + (f", {rejected} rejected" if rejected else "")


def inference_busy(result: WorkloadResult) -> dict[str, list[tuple[int, int]]]:
    """Pod -> intervals of the self-hosted model's agent runs (what keeps a GPU slice busy)."""
    gpu_pods = {gpu.pod.name for gpu in GPU_SLICES}
    busy: dict[str, list[tuple[int, int]]] = {}
    for task in result.tasks:
        for run in task.walk():
            if run.pod in gpu_pods:
                busy.setdefault(run.pod, []).append((run.start_ns, run.end_ns))
    return busy


# --- the dataset check and the analyzer ------------------------------------------------------------------


def combined_expected(results: Sequence[WorkloadResult]) -> dict:
    agents: dict[str, dict[str, int]] = {}
    for result in results:
        for name, usage in result.agents.items():
            totals = agents.setdefault(name, dict.fromkeys(asdict(usage), 0))
            for key, value in asdict(usage).items():
                totals[key] += value
    return {
        "tasks": sum(r.tasks_sent for r in results),
        "spans": sum(r.spans_sent for r in results),
        "kept_spans": sum(r.spans_sent - r.noise_spans for r in results),
        "agents": dict(sorted(agents.items())),
    }


def check_dataset(data_dir: Path, expected: dict) -> list[str]:
    """Compare the Parquet with what was sent: rows, LLM calls and tokens per agent. Returns the mismatches."""
    from analyzer.dataset import open_dataset

    con = open_dataset(data_dir).con
    problems = []
    rows = con.execute("SELECT count(*) FROM spans").fetchall()[0][0]
    if rows != expected["kept_spans"]:
        problems.append(f"spans: {rows} rows, expected {expected['kept_spans']} (health checks dropped)")
    found = con.execute(
        """SELECT agent_name, count(*), sum(input_tokens), sum(output_tokens)
           FROM spans WHERE category = 'llm' AND usage_counted GROUP BY agent_name ORDER BY agent_name"""
    ).fetchall()
    want = [(a, u["llm_calls"], u["input_tokens"], u["output_tokens"]) for a, u in expected["agents"].items()]
    if found != want:
        problems.append(f"LLM calls/tokens per agent differ: dataset {found}, sent {want}")
    return problems


ANALYZER_COMMANDS: list[tuple[str, list[str]]] = [
    ("cost by agent", ["cost", "--by", "agent"]),
    ("the 10 most expensive tasks", ["tasks", "--top", "10"]),
    ("GPU slices by agent", ["gpu", "--by", "agent"]),
    ("idle gaps and cold starts", ["idle"]),
]


# printed at the end for the user to try (tests run each of them)
TRY_NEXT: list[tuple[list[str], str]] = [
    (["cost", "--by", "agent", "--by", "model"], "tokens + GPU time, by any of agent task model provider ..."),
    (["cost", "--by", "week", "--by", "namespace"], "day / week / month in time order; label:KEY for labels"),
    (["cost", "--by", "task", "--top", "5"], "a task inclusive of every sub-agent (--direct: its own trace)"),
    (["tasks", "--by", "agent"], "cost per task (mean, p50, p95) and failed tasks, per agent"),
    (["tasks", "--agent", "research-planner"], "one row per task; --format json|csv for machines"),
    (["gpu", "--by", "slice"], "allocated / busy / idle slice-hours and their cost"),
    (["recommend", "--agent", "research-planner", "--emit", "all"], "KEDA ScaledObject + SandboxWarmPool YAML"),
]


def most_expensive_task(data_dir: Path) -> str | None:
    """The short id of the dataset's most expensive task, as `analyze tasks --top 1` lists it."""
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "tasks", "--top", "1", "--format", "json", "--data", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    rows = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else []
    return rows[0]["task_id"][:16] if rows else None


def try_next(data_dir: Path) -> list[tuple[str, str]]:
    """The commands the demo ends with, each with what it shows (the tests run every `analyze` one)."""
    hints = [(f"analyze {args[0]} --data {data_dir} {' '.join(args[1:])}", why) for args, why in TRY_NEXT]
    task = most_expensive_task(data_dir)
    if task:
        hints.append((f"analyze task {task} --data {data_dir}", "the most expensive task as a tree of agent runs"))
    hints += [
        (f"analyze serve --data {data_dir}", "the web console at http://127.0.0.1:8080/ (and the API), until Ctrl-C"),
        (f"AGENTMETER_DATA={data_dir} .venv/bin/jupyter lab notebooks/", "the notebooks (pip install jupyterlab)"),
        ("collector-ext loadgen --endpoint HOST:4317 --tasks 100 --seed 3", "this workload against your receiver"),
    ]
    return hints


def run_analyze(data_dir: Path, args: list[str], *, show: bool = True) -> tuple[int, str]:
    """`analyze ...` as a subprocess; its output goes to ours. Returns (exit code, its stderr)."""
    command = [sys.executable, "-m", "analyzer.cli", *args, "--data", str(data_dir)]
    done = subprocess.run(  # tables fit the terminal, or are whole when piped: the analyzer decides
        command,
        stdout=sys.stdout if show else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    return done.returncode, done.stderr.strip()


# --- the demo --------------------------------------------------------------------------------------------


def prepare(data_dir: Path) -> None:
    """Wipe the demo dataset, refusing to wipe a directory that is not one (a wrong --data-dir)."""
    if data_dir.exists():
        entries = {p.name for p in data_dir.iterdir()}
        ours = {"_schema.json", "spans", "gpu_allocations", "gpu_metrics", "_wal", "report.html"}
        if entries and not entries & ours:
            raise DemoError(f"{data_dir} exists and is not an agentmeter dataset: not wiping it")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)


def run_demo(data_dir: Path, tasks: int, seed: int, stop: WorkloadStop | None = None) -> int:
    started = time.monotonic()
    stop = stop or WorkloadStop()
    prepare(data_dir)
    socket_dir = Path(tempfile.mkdtemp(prefix="agentmeter-demo-"))  # short path: unix sockets max ~107 bytes
    kubelet = None
    receiver: Receiver | None = None
    try:
        kubelet = start_fake_kubelet(socket_dir / "kubelet.sock")
        say(
            "fake kubelet serving DRA MIG claims for "
            + ", ".join(f"{g.pod.namespace}/{g.pod.name}" for g in GPU_SLICES)
        )
        receiver = Receiver(data_dir, kubelet.socket_path, data_dir / "receiver.log").start()
        say(f"receiver pid {receiver.pid} on {receiver.grpc_endpoint} (gRPC), {receiver.http_url} (HTTP)")

        def exporter() -> SpanExporter:
            return stop.wrap(make_exporter(receiver.grpc_endpoint, "grpc", gzip=True))

        say(f"sending {tasks} tasks of history (simulated days of bursts and idle gaps) through the OTel SDK")
        history = send_workload(WorkloadSpec(tasks=tasks, seed=seed, max_seconds=30), exporter)
        print(f"    {_summary(history)}")
        say(f"a live burst of {LIVE_TASKS} tasks now, while the GPU slices are allocated")
        live_start = datetime.now(UTC)
        live = send_workload(
            WorkloadSpec(
                tasks=LIVE_TASKS,
                seed=seed + 1,
                start=live_start,
                duration_scale=0.05,
                burst_size=(LIVE_TASKS, LIVE_TASKS),
            ),
            exporter,
        )
        print(f"    {_summary(live)}")
        live_end_ns = max(live.last_end_ns or 0, int(live_start.timestamp() * NS_PER_S))
        metrics = dcgm_request(GPU_SLICES, inference_busy(live), int(live_start.timestamp() * NS_PER_S), live_end_ns)
        print(f"    dcgm-exporter metrics: {send_dcgm(receiver.grpc_endpoint, metrics)}")
        # the slices stay allocated until the live spans have ended, so the poller's interval covers them
        time.sleep(min(20.0, max(0.0, live_end_ns / NS_PER_S - time.time()) + 1.0))
        failed = history.failed_spans + live.failed_spans
        if failed:
            raise DemoError(f"the exporter could not deliver {failed} spans; see {receiver.log_path}")

        say(f"stopping the receiver (SIGTERM to pid {receiver.pid}): it writes every held trace")
        code = receiver.stop()
        if code != 0:
            raise DemoError(f"the receiver exited with {code}; see {receiver.log_path}")
        expected = combined_expected([history, live])
        (data_dir / "expected.json").write_text(
            json.dumps({**expected, "history": history.to_json(), "live": live.to_json()}, indent=2) + "\n"
        )
        problems = check_dataset(data_dir, expected)
        say(
            "dataset check: every span, LLM call and token sent is in the Parquet, counted once"
            if not problems
            else "dataset check FAILED:\n    " + "\n    ".join(problems)
        )
        failed_commands = analyze(data_dir)
    finally:
        with HeldSignals(stop):  # a Ctrl-C now waits until everything started here is stopped
            if receiver is not None:
                receiver.stop()
            if kubelet is not None:
                kubelet.stop()
            shutil.rmtree(socket_dir, ignore_errors=True)

    report = data_dir / "report.html"
    say(f"done in {time.monotonic() - started:.0f} s")
    print(f"    dataset:  {data_dir}/ (Hive-partitioned Parquet; expected totals in {data_dir}/expected.json)")
    if report.exists():
        print(f"    report:   {report.resolve()}  (open it in a browser)")
    for name, why in failed_commands:
        print(f"    FAILED:   analyze {name} ({why})")
    print("    try next (. .venv/bin/activate first):")
    hints = try_next(data_dir)
    width = max(len(command) for command, _ in hints)
    for command, why in hints:
        print(f"      {command:<{width}}   # {why}")
    print(
        f"    open the console on this data:  .venv/bin/analyze serve --data {data_dir}   then http://127.0.0.1:8080/"
    )
    return 1 if problems or failed_commands else 0


def analyze(data_dir: Path) -> list[tuple[str, str]]:
    """Run the analyzer's main commands; returns the ones that failed, with why."""
    report = data_dir / "report.html"
    failed = []
    for title, args in [*ANALYZER_COMMANDS, ("the HTML report", ["report", "--out", str(report)])]:
        say(f"analyze {' '.join(args)}   # {title}")
        code, stderr = run_analyze(data_dir, args)
        if code != 0:
            failed.append((args[0], (stderr.splitlines() or [f"exit code {code}"])[-1]))
    return failed


def _summary(result: WorkloadResult) -> str:
    data = result.to_json()
    return (
        f"{result.tasks_sent} tasks, {result.traces_sent} traces ({result.noise_traces} health checks), "
        f"{result.spans_sent} spans, {data['total']['llm_calls']} LLM calls, simulated "
        f"{data['first_start'][:19]} .. {data['last_end'][:19]} UTC"
    )


def _stop_on_signal(stop: WorkloadStop) -> None:
    """Ctrl-C and SIGTERM: stop the workload's exporters at once, then unwind (the finally blocks stop the
    receiver and the kubelet, holding further signals until they are done: `HeldSignals`)."""

    def interrupt(signum: int, frame: object) -> None:
        stop.stop()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector_ext.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks",
        type=int,
        default=int(os.environ.get("AGENTMETER_DEMO_TASKS", DEFAULT_TASKS)),
        help=f"tasks of history to send (default {DEFAULT_TASKS}, or $AGENTMETER_DEMO_TASKS)",
    )
    parser.add_argument("--seed", type=int, default=7, help="workload seed (same seed, same spans)")
    parser.add_argument("--data-dir", type=Path, default=Path("demo-data"), help="dataset directory (wiped first)")
    args = parser.parse_args(argv)
    if args.tasks < 1:
        print("error: --tasks must be at least 1", file=sys.stderr)
        return 2
    stop = WorkloadStop()
    _stop_on_signal(stop)
    try:
        return run_demo(args.data_dir, args.tasks, args.seed, stop)
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"interrupted: everything the demo started is stopped ({stop.dropped:,} spans of the workload not sent)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
