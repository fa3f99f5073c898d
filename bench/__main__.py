"""Run every benchmark in turn: `python -m bench` (about 14–16 minutes on 2 cores).

Each writes its JSON to bench/results; run one alone with `python -m bench.NAME`
(`--help` for its options, such as `--data FILE` for replay and worker).
"""

from __future__ import annotations

import argparse
import sys

from bench import freshness, memory, replay, worker
from bench.common import log


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m bench", description=__doc__).parse_args(argv)
    for name, module, args in (
        ("replay", replay, []),
        ("worker", worker, ["--scale"]),
        ("freshness", freshness, []),
        ("memory", memory, []),
    ):
        log(f"=== bench.{name}")
        module.main(args)
        print(flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
