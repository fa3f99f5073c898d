"""Run every benchmark in turn: `python -m bench` (about 14 minutes on 2 cores)."""

from __future__ import annotations

import sys

from bench import freshness, memory, replay, worker
from bench.common import log


def main() -> None:
    for name, module, argv in (
        ("replay", replay, []),
        ("worker", worker, ["--scale"]),
        ("freshness", freshness, []),
        ("memory", memory, []),
    ):
        log(f"=== bench.{name}")
        module.main(argv)
        print(flush=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
