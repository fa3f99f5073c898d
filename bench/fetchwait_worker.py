"""`cxstream worker` with its Kafka consumers' fetch wait capped (an experiment).

Faust creates its consumer with `fetch_max_wait_ms=1500`. Kafka answers a fetch as
soon as data arrives, so the cap costs nothing there; the test broker (Tansu)
holds a fetch for about half a second even when data arrives meanwhile, which
adds that much to every Kafka hop of the pipeline (input, then partials).
`python -m bench.freshness --fetch-wait-ms 100` runs the worker through this
module to measure what a lower wait gives on this broker.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def main() -> int:
    import aiokafka

    wait_ms = int(os.environ["BENCH_FETCH_WAIT_MS"])
    base = aiokafka.AIOKafkaConsumer

    class Consumer(base):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = min(kwargs.get("fetch_max_wait_ms", 500), wait_ms)
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = Consumer

    from cxstream.cli import main as cli_main

    return cli_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
