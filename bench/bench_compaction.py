"""`analyze cost` over a month of un-compacted vs compacted files, side by side (medians, ratio), and what
reading the dataset from object storage costs (moto's S3 server on loopback: first run with an empty cache,
then a warm cache, against the same files on local disk).

The un-compacted month is what receivers leave: many small files per day (here a synthetic workload written
in small chunks by two writers); the compacted one is the same dataset after `collector-ext compact`
(storage/compaction.py): one file per day and table.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs

from analyzer.synthetic import generate
from bench.side_by_side import analyze_command, compare, timed
from collector_ext.config import free_loopback_port
from collector_ext.storage.compaction import Compactor
from collector_ext.storage.stores import LocalStore

START = datetime(2026, 10, 1, tzinfo=UTC)
S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


def _month(root: Path, quick: bool) -> int:
    tasks, chunk = (600, 15) if quick else (6000, 12)
    for writer, seed in (("receiver-a", 1), ("receiver-b", 2)):
        generate(root, tasks=tasks // 2, seed=seed, days=30, start=START, chunk_tasks=chunk, writer_id=writer)
    return len(list(root.glob("*/date=*/*.parquet")))


def _s3_costs(dataset: Path, repeats: int) -> dict[str, float]:
    """analyze cost over s3:// (cold cache, warm cache) vs the local files: medians of `repeats`."""
    port = free_loopback_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **S3_ENV},
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        fs = pafs.S3FileSystem(
            access_key="bench", secret_key="bench", region="us-east-1", endpoint_override=endpoint,
            allow_bucket_creation=True,
        )  # fmt: skip
        fs.create_dir("bench")
        pafs.copy_files(
            str(dataset), "bench/month", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
        )
        os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
        samples: dict[str, list[float]] = {"local": [], "s3 cold cache": [], "s3 warm cache": []}
        with tempfile.TemporaryDirectory() as cache:
            os.environ["AGENTMETER_CACHE_DIR"] = cache
            for _ in range(repeats):
                samples["local"].append(timed(analyze_command("cost", "--data", str(dataset)))[0])
                shutil.rmtree(Path(cache) / "s3", ignore_errors=True)
                samples["s3 cold cache"].append(timed(analyze_command("cost", "--data", "s3://bench/month"))[0])
                samples["s3 warm cache"].append(timed(analyze_command("cost", "--data", "s3://bench/month"))[0])
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for name, seconds in medians.items():
            print(f"  {name:<14} {seconds:7.2f} s  x{seconds / medians['local']:.2f} local")
        return medians
    finally:
        server.terminate()
        server.wait(15)


def main(quick: bool) -> dict:
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-compaction-") as tmp:
        raw = Path(tmp) / "uncompacted"
        files = _month(raw, quick)
        compacted = Path(tmp) / "compacted"
        shutil.copytree(raw, compacted)
        started = time.perf_counter()
        result = Compactor(LocalStore(compacted), grace_seconds=0).run(through=datetime(2026, 10, 31).date())
        compact_s = time.perf_counter() - started
        after = len(list(compacted.glob("*/date=*/*.parquet")))
        print(f"a month: {files:,} files un-compacted, {after} compacted ({compact_s:.1f} s to compact)")
        figures = compare(
            {
                "analyze cost (un-compacted)": analyze_command("cost", "--data", str(raw)),
                "analyze cost (compacted)": analyze_command("cost", "--data", str(compacted)),
            },
            baseline="analyze cost (compacted)",
            repeats=repeats,
        )
        print("analyze cost over object storage (compacted month, moto on loopback):")
        s3 = _s3_costs(compacted, repeats)
    return {
        "files_uncompacted": files,
        "files_compacted": after,
        "files_merged": result.files_merged,
        "compact_seconds": round(compact_s, 2),
        "analyze_cost": figures,
        "s3_seconds": s3,
    }
