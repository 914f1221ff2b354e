"""Benchmarks that print figures (never timed tests): ``python -m synthex_lib.bench drr|dr|gpu [--json]``."""
