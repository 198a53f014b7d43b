"""Memory per span held in the receiver's TraceBuffer (the default max_held_spans is 500 k).

Decodes the ingest benchmark's requests (bench_ingest.make_requests) and holds every span in a TraceBuffer,
as the pipeline does (span refs and the Arrow tables they point into), then prints one JSON line: bytes per held span
by tracemalloc (every Python allocation still alive) or by the process's RSS growth (what the machine pays,
allocator overhead included). One measure per process, so that neither disturbs the other.

    python bench/held_memory.py SPANS tracemalloc|rss

The collector_ext imported is the one first on PYTHONPATH: bench_ingest runs this for its baseline tree too.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc

import psutil
import pyarrow as pa

from bench.bench_ingest import SPANS_PER_REQUEST, make_requests

# an older baseline tree may have the flat package (collector_ext/trace_buffer.py): looked up there first, as
# the editable install of this tree would otherwise answer for the modules the baseline lacks
try:
    from collector_ext.trace_buffer import TraceBuffer  # type: ignore[import-not-found]

    _FLAT_LAYOUT = True
except ModuleNotFoundError:
    from collector_ext.traces.trace_buffer import TraceBuffer

    _FLAT_LAYOUT = False


def held_rows(payload: bytes, seq: int) -> list:
    """The span refs the pipeline holds for one request, pointing at their decoded Arrow table and WAL segment.

    Works for this tree (typed `SpanRef`s) and for an older baseline tree (dict refs with a `_batch` key, in
    the flat package of 23fb15d: span_batch.py)."""
    if _FLAT_LAYOUT:
        from collector_ext.span_batch import decode_request, span_refs  # type: ignore[import-not-found]
    else:
        from collector_ext.decode.batch import decode_request
        from collector_ext.traces.span_refs import span_refs

    refs = span_refs(decode_request(payload, 1).table)
    first = refs[0]
    batch = first["_batch"] if isinstance(first, dict) else first.batch
    batch.wal_seq = seq
    return refs


def held_bytes_per_span(spans: int, measure: str) -> dict:
    payloads = [payload for payload, _ in make_requests(max(1, spans // SPANS_PER_REQUEST))]
    gc.collect()
    process = psutil.Process()
    if measure == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = process.memory_info().rss
    arrow_before = pa.total_allocated_bytes()
    buffer = TraceBuffer(grace_seconds=1e9, max_wait_seconds=1e9, max_spans=10**9)
    sample = None
    for seq, payload in enumerate(payloads):
        refs = held_rows(payload, seq)
        sample = sample or refs[0]
        buffer.add(refs, 0.0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if measure == "tracemalloc" else process.memory_info().rss
    return {
        "measure": measure,
        "spans_held": buffer.span_count,
        "bytes_per_span": (after - before) / buffer.span_count,
        # the ref object alone (a dict's or a slotted object's own size, without the values it points to)
        "ref_object_bytes": sys.getsizeof(sample),
        # the decoded Arrow tables the refs point into (Arrow's allocator: not seen by tracemalloc)
        "arrow_bytes_per_span": (pa.total_allocated_bytes() - arrow_before) / buffer.span_count,
        "decoder": sys.modules["collector_ext.decode"].__file__,
    }


if __name__ == "__main__":
    print(json.dumps(held_bytes_per_span(int(sys.argv[1]), sys.argv[2])), flush=True)
