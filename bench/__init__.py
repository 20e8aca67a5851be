"""The benchmark suite: ``make bench`` (``python -m bench``). Benchmarks measure; they never assert."""
