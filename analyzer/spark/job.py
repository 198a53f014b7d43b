"""Cost by agent and by task on Apache Spark: the analyzer's answers over the same dataset, distributed.

    python -m analyzer.spark export-prices --data DATASET --out prices.parquet   # the analyzer's price table
    spark-submit analyzer/spark/job.py --data DATASET --prices prices.parquet --out results/
    (cluster settings and the S3A connector: analyzer/spark/README.md)

What it computes, with the definitions of analyzer/figures.py and the rules of analyzer/sql/:
- the live files only (collector_ext/storage/layout.py: a compacted file's inputs are left out), listed by
  the driver and read by name; spans unique by (trace_id, span_id) with the analyzer's choice among copies
  (spans_copies.sql): a copy written with its whole trace over one written in parts, then the latest
  received_time, then the first file and row;
- exactly-once tokens: the receiver's `usage_counted`, and among spans counting the same `response_id` only
  the smallest (trace_id, span_id) (counted_spans.sql `duplicate_calls`); an inference span without usage is
  a call with unknown tokens (charges.sql);
- token cost from the exported price rows (the join of cost_span_costs.sql: provider, model, validity,
  time of day, input band; DECIMAL(38, 24) without precision loss; the modality parts at their own
  coefficients); `unpriced_calls` are calls with usage and no price, `calls_without_usage` the calls that
  reported none;
- tasks (tasks_resolve.sql, tasks_attribution.sql): a trace's parent links are the links of its roots, or,
  when no root carries one, of its top-level agent runs (agent spans with no agent run above them; a
  wrapper, an agent span with no work of its own around exactly one agent run, is not a run); the parent is
  the smallest (trace_id, span_id) link target that exists (self-links ignored); the task is the top reached
  by following parents (pointer jumping: log2(depth) joins); a cycle's smallest trace is its top (its link
  cut: analyzer/forest.py decides, over the few traces bound to cycles, collected to the driver); tasks whose
  traces hold copies of one call (the same response_id at overlapping times) are one, the smallest task id
  (the pairs, rare, are joined on the driver: analyzer/forest.py `components`); `inclusive` sums a task's
  every trace, `direct` its own (top) trace.

Not computed here (DuckDB only; the job counts what it met so that a difference is never silent, see
`Result.not_covered`): GPU busy cost (the dataset's gpu tables: GPU-priced calls stay unpriced here), and the
recomputation of traces written in parts (stitch_state early_flush / shutdown_flush / no_root: their
`usage_counted` is taken as the receiver wrote it).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from analyzer.forest import components, resolve_forest
from collector_ext.storage import layout
from collector_ext.storage.stores import open_store

MAX_JUMPS = 64  # pointer jumping doubles the distance each round: 2**64 spans deep
TOKENS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
# the parts of input / output priced at a model's own audio / image / video prices (schema.MODALITY_COLUMNS)
PARTS = ["input_audio_tokens", "input_image_tokens", "input_video_tokens", "output_audio_tokens"]
SPLIT_STATES = ["early_flush", "shutdown_flush", "no_root"]
INFERENCE = ["llm", "embedding"]
WORK = ["llm", "embedding", "tool", "retrieval"]
MONEY = "decimal(38,24)"


@dataclass
class Result:
    by_agent: DataFrame  # agent, llm_calls, tokens..., unpriced_calls, calls_without_usage, token_cost_usd, ...
    by_task: DataFrame  # task (hex), llm_calls, ..., token_cost_usd (inclusive), direct_cost_usd
    not_covered: dict[str, int]  # what the job does not compute and met in the data (see the docstring)


def spark_session(app: str = "agentmeter-cost", **config: str) -> SparkSession:
    builder = SparkSession.builder
    for key, value in config.items():
        builder = builder.config(key, value)
    return (
        builder.appName(app)
        .config("spark.sql.decimalOperations.allowPrecisionLoss", "false")  # exact DECIMAL(38, 24) money
        .config("spark.sql.session.timeZone", "UTC")
        # the dataset's timestamps are Parquet TIMESTAMP(NANOS), which Spark reads only as longs
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")
        .getOrCreate()
    )


def live_paths(location: str, table: str) -> list[str]:
    """The live files of a table as Spark paths (s3:// becomes s3a://, Hadoop's S3 connector)."""
    store = open_store(location)
    files = layout.live_files(store, [table])
    base = location.rstrip("/")
    if base.startswith("s3://"):
        base = "s3a://" + base[len("s3://") :]
    return [f"{base}/{f.relative}" for f in files]


def read_spans(spark: SparkSession, location: str) -> DataFrame:
    paths = live_paths(location, "spans")
    base = location.rstrip("/").replace("s3://", "s3a://", 1)
    spans = spark.read.option("basePath", f"{base}/spans").option("mergeSchema", "true").parquet(*paths)
    spans = unique_spans(spans)  # on the nanosecond times, before they are converted
    spans = spans.withColumn("start_ns", F.col("start_time")).withColumn("end_ns", F.col("end_time"))
    for name, kind in spans.dtypes:
        if name.endswith("_time") and kind == "bigint":  # nanoseconds (nanosAsLong) -> microsecond timestamps
            spans = spans.withColumn(name, F.expr(f"timestamp_micros(div({name}, 1000))"))
    for name, kind in (("graph_node", "string"), *((part, "bigint") for part in PARTS)):
        if name not in spans.columns:  # every file older than the column (schema agentmeter-v1): NULL
            spans = spans.withColumn(name, F.lit(None).cast(kind))
    return spans


def unique_spans(rows: DataFrame) -> DataFrame:
    """One row per (trace_id, span_id), the copy the analyzer keeps (spans_copies.sql): written with its whole
    trace over written in parts, then the latest received_time, then the first file and row."""
    in_parts = F.coalesce(F.col("stitch_state").isin(*SPLIT_STATES), F.lit(False))
    order = Window.partitionBy("trace_id", "span_id").orderBy(
        in_parts.asc(), F.col("received_time").desc_nulls_last(), F.col("_file").asc(), F.col("_row").asc()
    )
    located = rows.withColumn("_file", F.col("_metadata.file_path")).withColumn("_row", F.col("_metadata.row_index"))
    return (
        located.withColumn("_copy", F.row_number().over(order))
        .where(F.col("_copy") == 1)
        .drop("_copy", "_file", "_row")
    )


def counted_calls(spans: DataFrame) -> DataFrame:
    """The spans whose usage counts, exactly once per response id (the smallest (trace_id, span_id))."""
    counted = spans.where(F.col("usage_counted"))
    ranked = Window.partitionBy("response_id").orderBy(F.concat("trace_id", "span_id"))
    with_rank = counted.withColumn("_copy", F.when(F.col("response_id").isNull(), 1).otherwise(F.rank().over(ranked)))
    return with_rank.where(F.col("_copy") == 1).drop("_copy")


def priced(calls: DataFrame, prices: DataFrame) -> DataFrame:
    """Each counted call with its token cost (NULL: no price) as cost_span_costs.sql joins it."""
    c = (
        calls.withColumn("call_provider", F.coalesce("provider", F.lit("")))
        .withColumn("call_model", F.coalesce("response_model", "request_model"))
        .withColumn("time_of_day_us", (F.unix_micros("start_time") % F.lit(86_400_000_000)))
    )
    for name in (*TOKENS, *PARTS):
        c = c.withColumn(name, F.coalesce(F.col(name), F.lit(0)).cast("long"))
    p = prices.alias("p")
    condition = (
        (F.col("p.provider") == F.col("call_provider"))
        & (F.col("p.model") == F.col("call_model"))
        & (F.col("p.valid_from").isNull() | (F.col("c.start_time") >= F.col("p.valid_from")))
        & (F.col("p.valid_to").isNull() | (F.col("c.start_time") < F.col("p.valid_to")))
        & (F.col("c.time_of_day_us") >= F.col("p.tod_from_us"))
        & (F.col("c.time_of_day_us") < F.col("p.tod_to_us"))
        & (F.col("c.input_tokens") > F.col("p.input_gt"))
        & (F.col("p.input_le").isNull() | (F.col("c.input_tokens") <= F.col("p.input_le")))
    )
    joined = c.drop("provider").alias("c").join(p, condition, "left")
    cost = F.col("p.c_request").cast(MONEY)
    for name in (*TOKENS, *PARTS):
        cost = cost + F.col(f"c.{name}").cast("decimal(20,0)") * F.col(f"p.c_{name.removesuffix('_tokens')}").cast(
            MONEY
        )
    return joined.select(
        *[F.col(f"c.{name}") for name in ("trace_id", "span_id", "agent_name", "task_id", "reported_cost_usd")],
        *[F.col(f"c.{name}") for name in TOKENS],
        F.lit(True).alias("usage_reported"),
        cost.cast(MONEY).alias("cost_usd"),
        F.col("p.source").isNotNull().alias("priced"),
    )


def charges(spans: DataFrame, prices: DataFrame) -> DataFrame:
    """charges.sql without GPU: every counted call, and every inference span that reported no usage."""
    calls = priced(counted_calls(spans), prices)
    no_usage = spans.where(F.col("category").isin("llm", "embedding"))
    for name in TOKENS:
        no_usage = no_usage.where(F.coalesce(F.col(name), F.lit(0)) == 0)
    unreported = no_usage.select(
        "trace_id",
        "span_id",
        "agent_name",
        "task_id",
        "reported_cost_usd",
        *[F.lit(0).cast("long").alias(name) for name in TOKENS],
        F.lit(False).alias("usage_reported"),
        F.lit(None).cast(MONEY).alias("cost_usd"),
        F.lit(False).alias("priced"),
    )
    return calls.unionByName(unreported)


def span_tree(spans: DataFrame) -> DataFrame:
    """(trace_id, span_id, parent, is_agent, is_work, links): `parent` NULL when the parent span is not in the
    trace (a root); `is_agent` an agent span that runs no graph node, or a graph's run (the parent of a span
    that runs a graph node: LangGraph's node spans are steps, not runs), as tasks_attribution.sql's span_tree
    and graph_runs (wrappers are not yet set apart: top_level_agent_runs)."""
    present = spans.select("trace_id", F.col("span_id").alias("parent_span_id"), F.lit(True).alias("_present"))
    graph_runs = (
        spans.where(F.col("graph_node").isNotNull() & F.col("parent_span_id").isNotNull())
        .select("trace_id", F.col("parent_span_id").alias("span_id"), F.lit(True).alias("_graph_run"))
        .distinct()
    )
    return (
        spans.join(present, ["trace_id", "parent_span_id"], "left")
        .join(graph_runs, ["trace_id", "span_id"], "left")
        .select(
            "trace_id",
            "span_id",
            F.when(F.col("_present"), F.col("parent_span_id")).alias("parent"),
            (
                F.col("_graph_run").isNotNull()
                | (F.coalesce(F.col("category") == "agent", F.lit(False)) & F.col("graph_node").isNull())
            ).alias("is_agent"),
            F.coalesce(F.col("category").isin(*WORK), F.lit(False)).alias("is_work"),
            "links",
        )
    )


def nearest_marked_ancestor(tree: DataFrame, marked: DataFrame) -> DataFrame:
    """(trace_id, span_id, above): each span's nearest proper ancestor among the `marked` (trace_id, span_id)
    rows, NULL when none; pointer jumping (log2(depth) joins), as tasks_attribution.sql's walk answers it."""
    marks = marked.select("trace_id", F.col("span_id").alias("up"), F.lit(True).alias("_marked"))
    state = (
        tree.select("trace_id", "span_id", F.col("parent").alias("up"))
        .join(marks, ["trace_id", "up"], "left")
        .select("trace_id", "span_id", "up", (F.col("up").isNull() | F.col("_marked").isNotNull()).alias("done"))
        .localCheckpoint()
    )
    for _ in range(MAX_JUMPS):  # `up` is done when it is NULL or marked; else it jumps to up's own `up`
        if state.where(~F.col("done")).isEmpty():
            break
        ahead = state.select(
            "trace_id", F.col("span_id").alias("up"), F.col("up").alias("_up"), F.col("done").alias("_done")
        )
        state = (
            state.join(ahead, ["trace_id", "up"], "left")
            .select(
                "trace_id",
                "span_id",
                F.when(F.col("done"), F.col("up")).otherwise(F.col("_up")).alias("up"),
                (F.col("done") | F.coalesce(F.col("_done"), F.lit(True))).alias("done"),
            )
            .localCheckpoint()
        )
    return state.select("trace_id", "span_id", F.when(F.col("done"), F.col("up")).alias("above"))


def top_level_agent_runs(tree: DataFrame) -> DataFrame:
    """(trace_id, span_id) of the agent runs with no agent run above them in their trace (tasks_attribution.sql):
    agent runs (span_tree `is_agent`), but not wrappers (an agent run with no llm / embedding / tool / retrieval
    span of its own and exactly one agent run directly inside it)."""
    agents = tree.where(F.col("is_agent")).select("trace_id", "span_id")
    above = nearest_marked_ancestor(tree, agents)
    inner = agents.join(above, ["trace_id", "span_id"]).where(F.col("above").isNotNull())
    runs_inside = inner.groupBy("trace_id", F.col("above").alias("span_id")).count()
    working = (
        tree.where(F.col("is_work"))
        .join(above, ["trace_id", "span_id"])
        .select("trace_id", F.col("above").alias("span_id"))
        .where(F.col("span_id").isNotNull())
        .distinct()
    )
    wrappers = runs_inside.where(F.col("count") == 1).join(working, ["trace_id", "span_id"], "left_anti")
    runs = agents.join(wrappers, ["trace_id", "span_id"], "left_anti")
    run_above = nearest_marked_ancestor(tree, runs)
    return runs.join(run_above.where(F.col("above").isNull()), ["trace_id", "span_id"], "left_semi")


def link_targets(spans: DataFrame) -> DataFrame:
    """(trace_id, target_trace_id, target_span_id): the links of each trace's roots, or of its top-level agent
    runs when no root carries one (tasks_resolve.sql `trace_link_targets`)."""
    tree = span_tree(spans).cache()
    linked = F.size(F.coalesce(F.col("links"), F.array())) > 0
    roots = tree.where(F.col("parent").isNull() & linked)
    # only traces whose roots carry no link and that hold a linked agent span need the agent-run rule
    maybe = tree.where(F.col("is_agent") & linked).join(roots.select("trace_id"), "trace_id", "left_anti")
    carriers = roots.select("trace_id", "links")
    if not maybe.isEmpty():
        scope = tree.join(maybe.select("trace_id").distinct(), "trace_id", "left_semi")
        top_runs = top_level_agent_runs(scope)
        agent_carriers = maybe.join(top_runs, ["trace_id", "span_id"], "left_semi")
        carriers = carriers.unionByName(agent_carriers.select("trace_id", "links"))
    return (
        carriers.select("trace_id", F.explode("links").alias("link"))
        .select(
            "trace_id", F.col("link.trace_id").alias("target_trace_id"), F.col("link.span_id").alias("target_span_id")
        )
        .distinct()
    )


def jump_to_tops(graph: DataFrame, rounds: int) -> DataFrame:
    """(trace_id, ahead) after up to `rounds` pointer jumps over `graph` (trace_id, up): tops point at
    themselves; on a cycle the pointers keep turning (the caller finds them)."""
    pointer = graph.select("trace_id", F.coalesce("up", "trace_id").alias("ahead")).localCheckpoint()
    for _ in range(rounds):
        step = pointer.alias("a").join(pointer.alias("b"), F.col("a.ahead") == F.col("b.trace_id"))
        jumped = step.select(F.col("a.trace_id").alias("trace_id"), F.col("b.ahead").alias("ahead")).localCheckpoint()
        if jumped.join(pointer, ["trace_id", "ahead"], "left_anti").isEmpty():
            return jumped
        pointer = jumped
    return pointer


def cycle_cuts(spark: SparkSession, bound: list[tuple[bytes, bytes | None]]) -> DataFrame:
    """The traces whose parent link is cut (each cycle's smallest trace), decided by analyzer/forest.py over
    the traces bound to cycles (on one, or hanging off one: closed under `up`)."""
    ids = sorted(trace for trace, _ in bound)
    index = {trace: i for i, trace in enumerate(ids)}
    parent = np.full(len(ids), -1, dtype=np.int64)
    for trace, up in bound:
        parent[index[trace]] = index[up] if up is not None else -1
    forest = resolve_forest(parent)
    cut = [(ids[i],) for i in np.flatnonzero(forest.cut)]
    return spark.createDataFrame(cut, "trace_id binary")


def trace_tops(spark: SparkSession, graph: DataFrame) -> DataFrame:
    """(trace_id, task_id): the top each trace's parent links lead to, cycles cut at their smallest trace."""
    graph = graph.localCheckpoint()
    count = graph.count()
    rounds = max(1, (count - 1).bit_length()) + 1  # 2**rounds >= traces: every acyclic walk reaches its top
    ahead = jump_to_tops(graph, rounds)
    has_parent = graph.where(F.col("up").isNotNull()).select(F.col("trace_id").alias("ahead"))
    bound = ahead.join(has_parent, "ahead", "left_semi").select("trace_id")  # still not at a top: a cycle
    if not bound.isEmpty():
        rows = graph.join(bound, "trace_id", "left_semi").collect()
        cut = cycle_cuts(spark, [(row["trace_id"], row["up"]) for row in rows]).withColumn("_cut", F.lit(True))
        graph = graph.join(cut, "trace_id", "left").select(
            "trace_id", F.when(F.col("_cut").isNull(), F.col("up")).alias("up")
        )
        ahead = jump_to_tops(graph, rounds)
    return ahead.select("trace_id", F.col("ahead").alias("task_id"))


def merge_shared_calls(spark: SparkSession, spans: DataFrame, tasks: DataFrame) -> DataFrame:
    """Tasks whose traces hold copies of one inference call (the same response_id, at overlapping times) are
    one task, named by the smallest task id (tasks_resolve.sql `trace_shared_calls`, analyzer/tasks.py)."""
    calls = spans.where(
        F.col("category").isin(*INFERENCE) & F.col("response_id").isNotNull() & (F.col("response_id") != "")
    ).select("trace_id", "response_id", "start_ns", "end_ns")
    repeated = calls.groupBy("response_id").count().where(F.col("count") > 1).select("response_id")
    copies = calls.join(repeated, "response_id", "left_semi")
    a, b = copies.alias("a"), copies.alias("b")
    pairs = a.join(
        b,
        (F.col("a.response_id") == F.col("b.response_id"))
        & (F.col("b.trace_id") > F.col("a.trace_id"))
        & (F.col("a.start_ns") <= F.col("b.end_ns"))
        & (F.col("b.start_ns") <= F.col("a.end_ns")),
    ).select(F.col("a.trace_id").alias("left"), F.col("b.trace_id").alias("right"))
    left_task = tasks.select(F.col("trace_id").alias("left"), F.col("task_id").alias("left_task"))
    right_task = tasks.select(F.col("trace_id").alias("right"), F.col("task_id").alias("right_task"))
    joined = pairs.join(left_task, "left").join(right_task, "right").where(F.col("left_task") != F.col("right_task"))
    task_pairs = [
        (row["left_task"], row["right_task"]) for row in joined.select("left_task", "right_task").distinct().collect()
    ]
    if not task_pairs:
        return tasks
    ids = sorted({task for pair in task_pairs for task in pair})
    index = {task: i for i, task in enumerate(ids)}
    label = components(
        len(ids),
        np.array([index[left] for left, _ in task_pairs], dtype=np.int64),
        np.array([index[right] for _, right in task_pairs], dtype=np.int64),
    )
    merged = spark.createDataFrame(
        [(task, ids[label[i]]) for i, task in enumerate(ids) if label[i] != i], "task_id binary, _merged binary"
    )
    return tasks.join(merged, "task_id", "left").select("trace_id", F.coalesce("_merged", "task_id").alias("task_id"))


def trace_tasks(spark: SparkSession, spans: DataFrame) -> DataFrame:
    """trace_id -> task_id by the rules of the module docstring."""
    links = link_targets(spans)
    traces = spans.select("trace_id").distinct()
    existing = traces.select(F.col("trace_id").alias("target_trace_id"))
    candidates = links.where(F.col("target_trace_id") != F.col("trace_id")).join(existing, "target_trace_id", "inner")
    first = Window.partitionBy("trace_id").orderBy("target_trace_id", "target_span_id")
    parent = (
        candidates.withColumn("_n", F.row_number().over(first))
        .where(F.col("_n") == 1)
        .select("trace_id", F.col("target_trace_id").alias("up"))
    )
    tops = trace_tops(spark, traces.join(parent, "trace_id", "left"))
    return merge_shared_calls(spark, spans, tops)


def figures(rows: DataFrame, *keys: str) -> DataFrame:
    """The figures of analyzer/figures.py (those without GPU) per group."""
    return rows.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("llm_calls"),
        *[F.sum(name).cast("long").alias(name) for name in TOKENS],
        F.sum(F.when(F.col("usage_reported") & ~F.col("priced"), 1).otherwise(0)).cast("long").alias("unpriced_calls"),
        F.sum(F.when(~F.col("usage_reported"), 1).otherwise(0)).cast("long").alias("calls_without_usage"),
        F.sum("cost_usd").alias("token_cost_usd"),
        F.sum(F.col("reported_cost_usd").cast("decimal(38,12)")).alias("reported_cost_usd"),
    )


def run(spark: SparkSession, data: str, prices_path: str) -> Result:
    spans = read_spans(spark, data).cache()
    prices = spark.read.parquet(prices_path)
    rows = charges(spans, prices)
    tasks = trace_tasks(spark, spans)
    with_task = rows.join(tasks, "trace_id", "left").withColumn("task", F.coalesce(tasks["task_id"], "trace_id"))
    by_agent = figures(rows, "agent_name").withColumnRenamed("agent_name", "agent")
    inclusive = figures(with_task, "task")
    direct = (
        with_task.where(F.col("task") == F.col("trace_id"))
        .groupBy("task")
        .agg(F.sum("cost_usd").alias("direct_cost_usd"))
    )
    by_task = inclusive.join(direct, "task", "left").withColumn("task", F.lower(F.hex("task")))
    not_covered = {
        "split_traces": spans.where(F.col("stitch_state").isin(*SPLIT_STATES)).select("trace_id").distinct().count(),
    }
    return Result(by_agent=by_agent, by_task=by_task, not_covered=not_covered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="agentmeter cost by agent and by task on Spark")
    parser.add_argument("--data", required=True, help="the dataset: a path, or s3://BUCKET/PREFIX (read as s3a://)")
    parser.add_argument(
        "--prices", required=True, help="the analyzer's price table (python -m analyzer.spark export-prices)"
    )
    parser.add_argument("--out", required=True, help="where by_agent/ and by_task/ go (Parquet)")
    args = parser.parse_args(argv)
    spark = spark_session()
    result = run(spark, args.data, args.prices)
    result.by_agent.write.mode("overwrite").parquet(f"{args.out}/by_agent")
    result.by_task.write.mode("overwrite").parquet(f"{args.out}/by_task")
    for what, count in result.not_covered.items():
        if count:
            print(
                f"warning: {count} {what.replace('_', ' ')} are counted as the receiver wrote them (DuckDB recomputes them)"
            )
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
