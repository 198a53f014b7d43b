"""One task, answered without resolving the whole dataset: `analyze task` at 100 k tasks in well under 1 s.

Resolving every task of a big dataset (every span's agent run, every link) takes many seconds. One task's
answer depends only on a few traces, so `open_task` copies those into a table, shadows the `spans` view
with it, and runs the very same SQL (task resolution, exactly-once usage, prices, charges) on them. The
answer is the whole dataset's answer (a test holds them equal on every task of its datasets), because the
copied traces are closed under everything the rules read:

- the traces whose id starts with the prefix, and every trace that links to one of them, transitively
  (the candidates for the task's sub-agents; links are read from every span: a superset of the roots'
  and top-level agent runs' links the resolution follows);
- every trace those link to (link targets: whether one exists, and which is the smallest, decides a
  trace's parent, so a sub-agent whose parent lies in another task goes to that task here too);
- every trace holding a span with a response id that one of those spans holds (the exactly-once rule
  compares the copies of a call across the dataset);
- whole traces always (attribution and split traces are per trace).

GPU busy time is attributed before the copy, over the whole dataset (a call's share of a slice's busy
time depends on every span on that pod).
"""

from __future__ import annotations

from pathlib import Path

from analyzer.analysis import Analysis
from analyzer.dataset import AnalyzerError, open_dataset
from analyzer.task_queries import normalize_ref, prefix_bounds, resolve_task_ref

MAX_MATCHING_TRACES = 1000  # a prefix matching more traces than this is too short to name one task


def open_task(
    data: Path | None, ref: str, prices_file: Path | None = None, gpu_prices_file: Path | None = None
) -> tuple[Analysis, bytes]:
    """An Analysis over just the traces the task `ref` (an id or a unique prefix) needs, and its task id."""
    prefix = normalize_ref(ref)
    analysis = Analysis(open_dataset(data), prices_file, gpu_prices_file)
    collect_scope(analysis, prefix)
    # GPU busy time is attributed over the whole dataset, so before `spans` is shadowed; only when one of the
    # task's calls ran on a pod that ever held a slice (else no GPU time can be charged to it: none to compute)
    analysis.install_gpu(needed=_on_gpu_pods(analysis))
    shadow_spans(analysis)
    return analysis, resolve_task_ref(analysis, prefix)


def scope_to(analysis: Analysis, prefix: str) -> None:
    """Shadow `spans` with the traces needed to answer for the tasks whose id starts with `prefix`."""
    collect_scope(analysis, prefix)
    shadow_spans(analysis)


def _on_gpu_pods(analysis: Analysis) -> bool:
    """Whether an inference span of the scope ran on a pod that holds a GPU slice in the dataset (the spans
    analyzer/sql/gpu_attribution.sql charges busy time to)."""
    found = analysis.con.execute(
        "SELECT count(*) FROM scope_spans WHERE category IN ('llm', 'embedding') "
        "AND k8s_pod IN (SELECT DISTINCT pod FROM gpu_allocations)"
    ).fetchone()
    return bool(found and found[0])


def shadow_spans(analysis: Analysis) -> None:
    """From now on `spans` is the scope's traces (collect_scope)."""
    analysis.con.execute("CREATE OR REPLACE TEMP VIEW spans AS SELECT * FROM scope_spans")
    analysis.scoped = True


def collect_scope(analysis: Analysis, prefix: str) -> None:
    """The traces needed to answer for the tasks whose id starts with `prefix`, as the table scope_spans.
    Four narrow scans of the dataset: the named traces, the link edges, the traces' spans, the copies of
    their calls' response ids."""
    con = analysis.con
    low, high = prefix_bounds(prefix)
    named = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= $low AND ($high IS NULL OR trace_id < $high) "
            "LIMIT $limit",
            {"low": low, "high": high, "limit": MAX_MATCHING_TRACES + 1},
        ).fetchall()
    ]
    if len(named) > MAX_MATCHING_TRACES:
        raise AnalyzerError(f"ambiguous task id {prefix!r}: over {MAX_MATCHING_TRACES:,} traces start with it")
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE scope_edges AS
        SELECT DISTINCT trace_id, target_id
        FROM (SELECT trace_id, unnest(list_transform(links, lambda link: link.trace_id)) AS target_id
              FROM spans WHERE len(links) > 0)
        WHERE target_id <> trace_id
        """
    )
    traces = [
        row[0]
        for row in con.execute(
            """
            WITH RECURSIVE below(trace_id) AS (
                SELECT unnest($named::BLOB[])
                UNION  -- not ALL: each trace once, so a cycle of links ends
                SELECT e.trace_id FROM scope_edges AS e JOIN below AS b ON e.target_id = b.trace_id
            )
            SELECT trace_id FROM below
            UNION
            SELECT e.target_id FROM scope_edges AS e SEMI JOIN below AS b ON b.trace_id = e.trace_id
            """,
            {"named": named},
        ).fetchall()
    ]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE scope_spans AS SELECT * FROM spans WHERE trace_id IN (SELECT unnest($ids::BLOB[]))",
        {"ids": traces},
    )
    responses = [
        row[0]
        for row in con.execute("SELECT DISTINCT response_id FROM scope_spans WHERE response_id IS NOT NULL").fetchall()
    ]
    if responses:
        con.execute(
            """
            INSERT INTO scope_spans
            SELECT * FROM spans
            WHERE trace_id IN (
                SELECT DISTINCT trace_id FROM spans
                WHERE response_id IN (SELECT unnest($responses::VARCHAR[])) AND trace_id NOT IN (SELECT unnest($ids::BLOB[]))
            )
            """,
            {"responses": responses, "ids": traces},
        )
