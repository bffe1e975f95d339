"""Benchmarks: each module measures one thing and writes docs/perf/<name>.md;
``python -m bench.run_all`` runs them all and stitches docs/PERFORMANCE.md."""
