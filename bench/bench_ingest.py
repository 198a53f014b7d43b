"""End-to-end OTLP/gRPC ingest: `collector-ext serve` (decode processes + WAL + trace buffer + stitching +
Parquet) against a bare grpc.aio server that only parses and counts the same requests.

Pre-serialized 1000-span requests (12 attributes per span, agent traces: an `invoke_agent` root, LLM calls,
MCP tool calls) are sent by a separate process (bench/load_client.py: bounded count and time, several
concurrent streams), gzip off and on. The servers alternate (bare, receiver, bare, receiver, ...) and the
figures are medians over rounds. Servers run under the glibc malloc settings of DESIGN.md.

Figures: acknowledged spans/s; for the receiver also spans/s until everything is in Parquet (the shutdown
write included) and a check that the Parquet row count equals the acknowledged spans; CPU microseconds per
span of the server process and its decode processes (start-up excluded); and a py-spy profile of the
receiver and its decode processes (one extra run, `--gil`: only the thread holding a GIL is sampled, so
threads waiting for it do not count as busy) saying where the time goes, plus in-process figures for parse and decode alone, and the memory
per span held in the trace buffer (bench/held_memory.py).

    python -m bench.bench_ingest [--quick]      (BENCH_INGEST_REQUESTS, BENCH_INGEST_ROUNDS,
                                                 BENCH_INGEST_HELD_SPANS override sizes)

Before/after in one run: BENCH_INGEST_BASELINE=DIR (a copy of an older source tree, e.g.
`git archive HEAD | tar -x -C DIR`) adds a third server, that tree's receiver, alternated with the other two
(bare, baseline, receiver, ...) so that a change is compared side by side under the same machine noise;
DIR1:DIR2 adds one server per tree (named baseline-<directory name>).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench.load_client import write_requests
from collector_ext.config import free_loopback_port

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "16777216", "MALLOC_TRIM_THRESHOLD_": "67108864"}
SPANS_PER_REQUEST = 1000
SPANS_PER_TRACE = 10  # 1 agent run, 6 LLM calls, 3 tool calls
STREAMS = 4
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "o4-mini"]
AGENTS = ["planner", "researcher", "coder", "reviewer"]
TOOLS = ["search", "fetch", "run_tests"]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _attributes(pairs: list[tuple[str, object]], rng: random.Random) -> list[KeyValue]:
    # exactly 12 attributes per span: pad with the kind of extra keys real instrumentations add
    pads = [("server.address", "api.example.com"), ("server.port", 443), ("http.response.status_code", 200)]
    pads += [(f"app.extra.{i}", f"value-{rng.randrange(1000)}") for i in range(12)]
    pairs = (pairs + pads)[:12]
    return [_kv(k, v) for k, v in pairs]


# Span times: the last whole hour before the benchmark starts, one request every 10 s (150 requests: 25 min),
# inside the receiver's time window (--span-max-age-hours, --span-max-future-minutes) whenever it runs.
START_NS = (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000_000_000


def make_request(index: int, rng: random.Random) -> ExportTraceServiceRequest:
    """One request of SPANS_PER_REQUEST spans, whole agent traces with unique ids."""
    spans = []
    base = START_NS + index * 10_000_000_000
    for t in range(SPANS_PER_REQUEST // SPANS_PER_TRACE):
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        root_id = rng.getrandbits(64).to_bytes(8, "big")
        start = base + t * 1_000_000
        agent = AGENTS[t % len(AGENTS)]
        for i in range(SPANS_PER_TRACE - 1):
            span_id = rng.getrandbits(64).to_bytes(8, "big")
            if i < 6:
                model = MODELS[(t + i) % len(MODELS)]
                name = f"chat {model}"
                pairs = [
                    ("gen_ai.operation.name", "chat"),
                    ("gen_ai.provider.name", "openai" if model.startswith(("gpt", "o4")) else "anthropic"),
                    ("gen_ai.request.model", model),
                    ("gen_ai.response.model", f"{model}-2025-01-01"),
                    ("gen_ai.response.id", f"chatcmpl-{index}-{t}-{i}"),
                    ("gen_ai.usage.input_tokens", rng.randrange(100, 5000)),
                    ("gen_ai.usage.output_tokens", rng.randrange(10, 800)),
                    ("gen_ai.usage.cache_read.input_tokens", rng.randrange(0, 100)),
                    ("gen_ai.response.finish_reasons", "stop"),
                ]
                kind = Span.SPAN_KIND_CLIENT
            else:
                tool = TOOLS[i - 6]
                name = f"mcp.tool.{tool}"
                pairs = [
                    ("gen_ai.operation.name", "execute_tool"),
                    ("gen_ai.tool.name", tool),
                    ("gen_ai.tool.call.id", f"call-{index}-{t}-{i}"),
                    ("mcp.method.name", "tools/call"),
                ]
                kind = Span.SPAN_KIND_INTERNAL
            spans.append(
                Span(
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_span_id=root_id,
                    name=name,
                    kind=kind,
                    start_time_unix_nano=start + (i + 1) * 1000,
                    end_time_unix_nano=start + (i + 1) * 1000 + 500_000,
                    attributes=_attributes(pairs, rng),
                )
            )
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=root_id,
                name="invoke_agent " + agent,
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 900_000,
                attributes=_attributes(
                    [
                        ("gen_ai.operation.name", "invoke_agent"),
                        ("gen_ai.agent.name", agent),
                        ("gen_ai.agent.id", f"{agent}-{index}"),
                        ("gen_ai.conversation.id", f"conv-{index}-{t}"),
                    ],
                    rng,
                ),
            )
        )
    resource = Resource(
        attributes=[
            _kv("service.name", "agents"),
            _kv("k8s.namespace.name", "team-a"),
            _kv("k8s.pod.name", f"agents-{index % 3}"),
            _kv("k8s.node.name", "node-1"),
        ]
    )
    scope = InstrumentationScope(name="opentelemetry.instrumentation.openai_v2", version="2.4b0")
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=spans)])]
    )


def make_requests(count: int) -> list[tuple[bytes, int]]:
    rng = random.Random(20261129)
    return [(make_request(i, rng).SerializeToString(), SPANS_PER_REQUEST) for i in range(count)]


# -- the bare server (a separate process: python -m bench.bench_ingest --bare-server PORT) -------------------
def bare_server(port: int) -> None:
    import grpc

    counted = 0

    async def export(payload: bytes, context) -> bytes:
        nonlocal counted
        request = ExportTraceServiceRequest.FromString(payload)
        counted += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        return b""

    async def serve() -> None:
        handler = grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None)
        server = grpc.aio.server(
            handlers=[
                grpc.method_handlers_generic_handler(
                    "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}
                )
            ],
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
            maximum_concurrent_rpcs=64,
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        await server.stop(1)

    asyncio.run(serve())


# -- one measured run ----------------------------------------------------------------------------------------
def _wait_ready(check, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} at start")
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError("server not ready in time")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _grpc_ready(endpoint: str) -> bool:
    import grpc

    with grpc.insecure_channel(endpoint) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=0.5)
            return True
        except grpc.FutureTimeoutError:
            return False


def _cpu_s(pid: int) -> float:
    """CPU seconds of a server and its child processes (the receiver's decode processes) so far."""
    process = psutil.Process(pid)
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _stop_and_rusage(process: subprocess.Popen, timeout: float = 120.0) -> tuple[int, float, float, float]:
    """SIGTERM; wait (bounded); returns (exit code, CPU seconds and peak RSS MiB from rusage, seconds to exit)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.02)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return process.returncode, cpu, usage.ru_maxrss / 1024, time.monotonic() - started


def _client(endpoint: str, requests_file: Path, count: int, gzip: bool, max_seconds: float) -> dict:
    command = [
        sys.executable,
        "-m",
        "bench.load_client",
        "--endpoint",
        endpoint,
        "--requests",
        str(requests_file),
        "--streams",
        str(STREAMS),
        "--max-requests",
        str(count),
        "--max-seconds",
        str(max_seconds),
        *(["--gzip"] if gzip else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=max_seconds + 60, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parquet_rows(data_dir: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in data_dir.glob("spans/date=*/*.parquet"))


def run_once(
    kind: str,
    gzip: bool,
    requests_file: Path,
    count: int,
    work: Path,
    profile: Path | None = None,
    source: Path = ROOT,
) -> dict:
    """One server (kind "bare", or a receiver from the tree `source`) under one client run."""
    port = free_loopback_port()
    endpoint = f"127.0.0.1:{port}"
    env = {**os.environ, **MALLOC_ENV}
    data_dir = work / f"data-{kind}-{port}"
    if kind == "bare":
        command = [sys.executable, "-m", "bench.bench_ingest", "--bare-server", str(port)]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        _wait_ready(lambda: _grpc_ready(endpoint), process)
    else:
        http_port = free_loopback_port()
        command = [
            sys.executable, "-m", "collector_ext.cli", "serve",
            "--data-dir", str(data_dir), "--writer-id", "bench",
            "--grpc-endpoint", endpoint, "--http-endpoint", f"127.0.0.1:{http_port}",
            "--scaler-endpoint", "", "--podresources-interval-seconds", "0",
            "--trace-grace-seconds", "0.5", "--parquet-max-seconds", "2", "--log-level", "warning",
        ]  # fmt: skip
        # cwd first on sys.path: `-m` imports collector_ext from the tree under test
        process = subprocess.Popen(command, cwd=source, env=env, stdout=subprocess.DEVNULL)
        _wait_ready(lambda: _http_ok(f"http://127.0.0.1:{http_port}/healthz"), process)
    spy = None
    spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if profile is not None and spy_bin is not None:
        spy = subprocess.Popen(
            [
                spy_bin,
                "record",
                "--pid",
                str(process.pid),
                "--gil",
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                "250",
                "-o",
                str(profile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
    try:
        cpu_before = _cpu_s(process.pid)
        result = _client(endpoint, requests_file, count, gzip, max_seconds=120)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        # the decode processes are the forkserver's children, never reaped by the server: their CPU is read
        # now; the shutdown (writing what is held) is the server's own and comes from its rusage
        tree_cpu = _cpu_s(process.pid)
        children_rss_mib = sum(c.memory_info().rss for c in psutil.Process(process.pid).children(recursive=True)) / MIB
        own = psutil.Process(process.pid).cpu_times()
        code, own_total, peak_rss_mib, stop_s = _stop_and_rusage(process)
        cpu_total = tree_cpu + own_total - (own.user + own.system)
    spans = result["spans_acked"]
    figures = {
        "kind": kind,
        "gzip": gzip,
        "spans_acked": spans,
        "refused": result["refused"],
        "spans_per_s": result["spans_per_s"],
        "cpu_us_per_span": (cpu_total - cpu_before) / spans * 1e6 if spans else None,
        "client_cpu_us_per_span": result["client_cpu_us_per_span"],
        "exit_code": code,
        "peak_rss_mib": peak_rss_mib,
        "children_rss_mib": children_rss_mib,  # decode processes + their forkserver, at the end of the run
    }
    if kind != "bare":
        figures["stop_s"] = stop_s
        figures["durable_spans_per_s"] = spans / (result["seconds"] + stop_s)
        figures["parquet_rows"] = _parquet_rows(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    return figures


# -- where the time goes ------------------------------------------------------------------------------------
# stage of the receiver a sample belongs to: the first marker found in its stack (innermost stages first)
STAGES = [
    ("decode_traces", "decode processes: decode + normalize"),
    ("rows_to_table", "decode processes: Arrow columns"),
    ("decode_request", "decode processes: parse"),
    ("decode_pool.py", "decode pool transport (both sides)"),
    ("WriteAheadLog", "WAL append + fsync"),
    ("Stitcher", "stitching"),
    ("assemble", "Arrow assembly (the rows to write from their batches)"),
    ("span_refs", "span refs (the receiver's view of a decoded batch)"),
    ("write_file", "Parquet write"),
    ("TraceIngest.export", "ingest bookkeeping"),
    ("Pipeline", "pipeline other (trace buffer, live state)"),
]


def _stage(stack: str) -> str:
    for marker, stage in STAGES:
        if marker in stack:
            return stage
    return "gRPC transport + other"


def summarize_profile(raw: Path, top: int = 12) -> dict:
    """py-spy raw (collapsed) stacks -> share of samples per function, self and inclusive (busy threads)."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
            for f in stack.split(";")
        ]
        leaf = frames[-1]
        if any(idle in leaf for idle in ("wait", "select", "poll", "sleep", "_worker", "accept", "epoll")):
            continue  # idle threads
        total += n
        self_counts[leaf] += n
        stages[_stage(stack)] += n
        for frame in set(frames):
            inclusive[frame] += n
    share = lambda c: {k: round(100 * v / total, 1) for k, v in c.most_common(top)}  # noqa: E731
    return {
        "busy_samples": total,
        "stages_pct": share(stages),
        "self_pct": share(self_counts),
        "inclusive_pct": share(inclusive),
    }


def in_process_figures(requests: list[tuple[bytes, int]]) -> dict:
    """Parse alone and decode (+ normalize) alone, in this process, on the same requests (best of 3)."""
    from collector_ext.decode.spans import decode_traces

    payloads = [p for p, _ in requests[:10]]
    parse_s = decode_s = float("inf")
    for _ in range(3):  # best of three: the machine is noisy
        started = time.perf_counter()
        parsed = [ExportTraceServiceRequest.FromString(p) for p in payloads]
        parse_s = min(parse_s, time.perf_counter() - started)
        started = time.perf_counter()
        for request in parsed:
            decode_traces(request, 1)
        decode_s = min(decode_s, time.perf_counter() - started)
    spans = SPANS_PER_REQUEST * len(payloads)
    return {
        "parse_spans_per_s": spans / parse_s,
        "decode_spans_per_s": spans / decode_s,
        "decode_us_per_span": decode_s / spans * 1e6,
        "bytes_per_span_raw": sum(map(len, payloads)) / spans,
    }


def held_memory(source: Path, spans: int) -> dict:
    """Bytes per span held in a TraceBuffer, by tracemalloc and by RSS growth, of the receiver in `source`
    (bench/held_memory.py, one process per measure)."""
    figures = {}
    for measure in ("tracemalloc", "rss"):
        command = [sys.executable, str(ROOT / "bench" / "held_memory.py"), str(spans), measure]
        env = {**os.environ, **MALLOC_ENV, "PYTHONPATH": f"{source}{os.pathsep}{ROOT}"}
        done = subprocess.run(command, capture_output=True, text=True, cwd=source, env=env, timeout=600, check=True)
        figures[measure] = json.loads(done.stdout.strip().splitlines()[-1])["bytes_per_span"]
    return figures


def _medians(runs: list[dict], kind: str, gzip: bool, bare: dict | None) -> dict:
    rows = [r for r in runs if r["kind"] == kind and r["gzip"] == gzip]
    med = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    figures = {
        "spans_per_s": med("spans_per_s"),
        "cpu_us_per_span": med("cpu_us_per_span"),
        "client_cpu_us_per_span": med("client_cpu_us_per_span"),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
        "children_rss_mib": max(r["children_rss_mib"] for r in rows),
    }
    if bare is not None:
        figures["durable_spans_per_s"] = med("durable_spans_per_s")
        figures["ratio_to_bare"] = figures["spans_per_s"] / bare["spans_per_s"]
        figures["parquet_rows_equal_acked"] = all(r["parquet_rows"] == r["spans_acked"] for r in rows)
        figures["refused"] = [r["refused"] for r in rows if r["refused"]]
    return figures


def baseline_sources(text: str) -> dict[str, Path]:
    """BENCH_INGEST_BASELINE: one directory ("baseline"), or several separated by os.pathsep, each named by
    its directory ("baseline-<name>")."""
    dirs = [Path(part).resolve() for part in text.split(os.pathsep) if part]
    if len(dirs) == 1:
        return {"baseline": dirs[0]}
    return {f"baseline-{d.name}": d for d in dirs}


def main(quick: bool) -> dict:
    count = int(os.environ.get("BENCH_INGEST_REQUESTS", 30 if quick else 150))
    rounds = int(os.environ.get("BENCH_INGEST_ROUNDS", 1 if quick else 3))
    baselines = baseline_sources(os.environ.get("BENCH_INGEST_BASELINE", ""))
    sources = {"receiver": ROOT} | baselines
    kinds = ["bare", *baselines, "receiver"]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        requests = make_requests(count)
        requests_file = work / "requests.bin"
        write_requests(requests_file, requests)
        local = in_process_figures(requests)
        held_spans = int(os.environ.get("BENCH_INGEST_HELD_SPANS", 20_000 if quick else 200_000))
        memory = {kind: held_memory(source, held_spans) for kind, source in sources.items()}
        runs = []
        for _ in range(rounds):
            for gzip in (False, True):
                for kind in kinds:
                    runs.append(run_once(kind, gzip, requests_file, count, work, source=sources.get(kind, ROOT)))
        profile_file = work / "profile.txt"
        profiled = run_once("receiver", False, requests_file, count, work, profile=profile_file)
        profile = summarize_profile(profile_file) if profile_file.exists() else {"error": "no py-spy profile"}

    table: dict[str, dict] = {}
    for gzip in (False, True):
        label = "gzip" if gzip else "plain"
        bare = _medians(runs, "bare", gzip, None)
        table[label] = {"bare": bare} | {kind: _medians(runs, kind, gzip, bare) for kind in kinds[1:]}

    print(f"\ningest: {count} requests x {SPANS_PER_REQUEST} spans, {STREAMS} streams, {rounds} round(s), medians")
    print(
        f"{'':30}{'spans/s':>10}{'durable':>10}{'ratio':>8}{'CPU us/span':>13}{'peak MiB':>10}"
        f"{'+children':>10}{'rows ok':>9}"
    )
    for label, servers in table.items():
        for kind, row in servers.items():
            durable = f"{row['durable_spans_per_s']:>10,.0f}" if "durable_spans_per_s" in row else f"{'':>10}"
            ratio = f"{row['ratio_to_bare']:>8.2f}" if "ratio_to_bare" in row else f"{'':>8}"
            rows_ok = str(row.get("parquet_rows_equal_acked", ""))
            print(
                f"{label + ' ' + kind:30}{row['spans_per_s']:>10,.0f}{durable}{ratio}"
                f"{row['cpu_us_per_span']:>13.1f}{row['peak_rss_mib']:>10.0f}{row['children_rss_mib']:>10.0f}"
                f"{rows_ok:>9}"
            )
    clients = ", ".join(
        f"{label} {servers['receiver']['client_cpu_us_per_span']:.1f}" for label, servers in table.items()
    )
    print(f"load client CPU us/span against the receiver (on the same cores): {clients}")
    print(
        f"in-process: parse {local['parse_spans_per_s']:,.0f} spans/s, decode {local['decode_spans_per_s']:,.0f} "
        f"spans/s ({local['decode_us_per_span']:.1f} us/span), {local['bytes_per_span_raw']:.0f} B/span"
    )
    for kind, figures in memory.items():
        print(
            f"memory per span held in a TraceBuffer ({kind}, {held_spans:,} spans): "
            f"{figures['tracemalloc']:,.0f} B (tracemalloc), {figures['rss']:,.0f} B (RSS growth)"
        )
    print("receiver profile (py-spy, % of busy samples) by stage:", json.dumps(profile.get("stages_pct", profile)))
    print("receiver profile, self %:", json.dumps(profile.get("self_pct", {})))
    print("receiver profile (inclusive %):", json.dumps(profile.get("inclusive_pct", {})))
    return {
        "table": table,
        "in_process": local,
        "held_memory": {"spans": held_spans, "bytes_per_span": memory},
        "profile": profile,
        "profiled_run": profiled,
        "runs": runs,
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-server":
        bare_server(int(sys.argv[2]))
    else:
        main("--quick" in sys.argv)
