"""`python -m analyzer.spark export-prices --data DATASET --out prices.parquet [--prices FILE]`: the price
table the Spark job joins (analyzer/spark/prices.py); `python -m analyzer.spark run ...`: the job itself in
this process (Spark local mode; on a cluster use spark-submit, analyzer/spark/README.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"]:
        from analyzer.spark.job import main as job_main

        return job_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m analyzer.spark export-prices")
    parser.add_argument("command", choices=["export-prices"])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--prices", type=Path, default=None, help="a user price file, as `analyze --prices`")
    args = parser.parse_args(argv)
    from analyzer.spark.prices import export_price_table

    rows = export_price_table(args.data, args.out, args.prices)
    print(f"{rows} price rows written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
