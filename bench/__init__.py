"""Benchmarks: `python -m bench [--quick] [--only NAME]` runs every `bench/bench_*.py` (see __main__.py)."""
