"""Cost by agent and by task on Apache Spark: the analyzer's answers over the same dataset, distributed.

    python -m analyzer.spark export-prices --data DATASET --out prices.parquet   # the analyzer's price table
    spark-submit analyzer/spark/job.py --data DATASET --prices prices.parquet --out results/
    (cluster settings and the S3A connector: analyzer/spark/README.md)

What it computes, with the definitions of analyzer/figures.py and the rules of analyzer/sql/:
- the live files only (collector_ext/storage/layout.py: a compacted file's inputs are left out), listed by
  the driver and read by name; spans unique by (trace_id, span_id);
- exactly-once tokens: the receiver's `usage_counted`, and among spans counting the same `response_id` only
  the smallest (trace_id, span_id) (counted_spans.sql `duplicate_calls`); an inference span without usage is
  a call with unknown tokens (charges.sql);
- token cost from the exported price rows (the join of cost_span_costs.sql: provider, model, validity,
  time of day, input band; DECIMAL(38, 24) without precision loss); `unpriced_calls` are calls with usage
  and no price;
- tasks (tasks_resolve.sql): a trace's parent is the smallest (trace_id, span_id) link target that exists
  among the links of its root spans (self-links ignored); the task is the top reached by following parents
  (pointer jumping: log2(depth) joins); `inclusive` sums a task's every trace, `direct` its own (top) trace.

Not computed here (DuckDB only; the job counts what it met so that a difference is never silent, see
`Result.not_covered`): GPU busy cost (the dataset's gpu tables), the recomputation of traces written in
parts (stitch_state early_flush / shutdown_flush / no_root), links carried by top-level agent runs instead
of roots, and cycles of links (their traces stay their own tasks).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from collector_ext.storage import layout
from collector_ext.storage.stores import open_store

MAX_JUMPS = 64  # pointer jumping doubles the distance each round: 2**64 links deep
TOKENS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"]
SPLIT_STATES = ["early_flush", "shutdown_flush", "no_root"]
MONEY = "decimal(38,24)"


@dataclass
class Result:
    by_agent: DataFrame  # agent, llm_calls, tokens..., unpriced_calls, token_cost_usd, reported_cost_usd
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
    for name, kind in spans.dtypes:
        if name.endswith("_time") and kind == "bigint":  # nanoseconds (nanosAsLong) -> microsecond timestamps
            spans = spans.withColumn(name, F.expr(f"timestamp_micros(div({name}, 1000))"))
    return spans.dropDuplicates(["trace_id", "span_id"])


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
    for name in TOKENS:
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
    for name in TOKENS:
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


def trace_tasks(spans: DataFrame) -> DataFrame:
    """trace_id -> task_id by the rules of the module docstring (pointer jumping over parent traces)."""
    ids = spans.select("trace_id", "span_id").distinct()
    in_trace = ids.select("trace_id", F.col("span_id").alias("parent_span_id"), F.lit(True).alias("_has_parent"))
    roots = spans.join(in_trace, ["trace_id", "parent_span_id"], "left").where(F.col("_has_parent").isNull())
    links = roots.select("trace_id", F.explode("links").alias("link")).select(
        "trace_id", F.col("link.trace_id").alias("target_trace_id"), F.col("link.span_id").alias("target_span_id")
    )
    traces = spans.select("trace_id").distinct()
    existing = traces.select(F.col("trace_id").alias("target_trace_id"))
    candidates = links.where(F.col("target_trace_id") != F.col("trace_id")).join(existing, "target_trace_id", "inner")
    first = Window.partitionBy("trace_id").orderBy("target_trace_id", "target_span_id")
    parent = (
        candidates.withColumn("_n", F.row_number().over(first))
        .where(F.col("_n") == 1)
        .select("trace_id", F.col("target_trace_id").alias("up"))
    )
    # pointer jumping: up := up(up) until no trace's `up` has a parent; tops point at themselves
    pointer = traces.join(parent, "trace_id", "left").withColumn("up", F.coalesce("up", "trace_id")).cache()
    for _ in range(MAX_JUMPS):
        step = pointer.alias("a").join(pointer.alias("b"), F.col("a.up") == F.col("b.trace_id"))
        jumped = step.select(F.col("a.trace_id").alias("trace_id"), F.col("b.up").alias("up")).cache()
        if jumped.join(pointer, ["trace_id", "up"], "left_anti").isEmpty():
            break
        pointer = jumped
    return pointer.select("trace_id", F.col("up").alias("task_id"))


def figures(rows: DataFrame, *keys: str) -> DataFrame:
    """The figures of analyzer/figures.py (those without GPU) per group."""
    return rows.groupBy(*keys).agg(
        F.count(F.lit(1)).alias("llm_calls"),
        *[F.sum(name).cast("long").alias(name) for name in TOKENS],
        F.sum(F.when(F.col("usage_reported") & ~F.col("priced"), 1).otherwise(0)).cast("long").alias("unpriced_calls"),
        F.sum("cost_usd").alias("token_cost_usd"),
        F.sum(F.col("reported_cost_usd").cast("decimal(38,12)")).alias("reported_cost_usd"),
    )


def run(spark: SparkSession, data: str, prices_path: str) -> Result:
    spans = read_spans(spark, data).cache()
    prices = spark.read.parquet(prices_path)
    rows = charges(spans, prices)
    tasks = trace_tasks(spans)
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
