"""The peer baseline: a naive Faust agent (one event per iteration, a dict update).

Run by `bench.worker` as `python -m bench.naive_faust` with BENCH_BROKER,
BENCH_TOPICS (comma-separated), BENCH_EXPECTED (events), BENCH_OUT (a JSON file it
writes when it has seen them all) and BENCH_APP_ID. It counts events per user in a
dict: the least a stream processor can do per event with Faust's default settings.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson


def main() -> None:
    import faust

    from cxstream.kafka import free_port

    expected = int(os.environ["BENCH_EXPECTED"])
    out = Path(os.environ["BENCH_OUT"])
    app = faust.App(
        os.environ["BENCH_APP_ID"],
        broker=os.environ["BENCH_BROKER"],
        store="memory://",
        web_enabled=False,
        web_port=free_port(),
        datadir=str(out.parent / "naive-faust-data"),
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
    )
    topic = app.topic(*os.environ["BENCH_TOPICS"].split(","), value_serializer="raw")
    counts: dict[str, int] = {}
    state: dict[str, Any] = {"n": 0, "first": 0.0, "done": False}

    @app.agent(topic)
    async def naive(stream: Any) -> None:
        async for value in stream:
            if not state["first"]:
                state["first"] = time.time()
            doc = orjson.loads(value)
            for event in doc if isinstance(doc, list) else (doc,):
                user = event["user_id"]
                counts[user] = counts.get(user, 0) + 1
                state["n"] += 1
            if state["n"] >= expected and not state["done"]:
                state["done"] = True
                last = time.time()
                out.write_bytes(
                    orjson.dumps(
                        {
                            "first": state["first"],
                            "last": last,
                            "events": state["n"],
                            "users": len(counts),
                        }
                    )
                )

    worker = faust.Worker(app, loglevel="warning", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
