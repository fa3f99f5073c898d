"""Reproducible benchmarks of cxstream against this machine's own limits.

One command each (see docs/performance.md); every figure is a ratio to a
baseline measured in the same run on the same data, plus the absolute numbers:

    .venv/bin/python -m bench.replay       # replay ÷ bare orjson parse loop
    .venv/bin/python -m bench.worker       # worker (batched, single-event) ÷ bare aiokafka consumer
    .venv/bin/python -m bench.freshness    # send → Redis latency at a steady 5,000 events/s
    .venv/bin/python -m bench.memory       # peak RSS with 1M distinct users over 30 days
    .venv/bin/python -m bench              # all of the above, in that order

Each prints a table and writes JSON to bench/results/ (git-ignored).
"""
