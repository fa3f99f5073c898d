"""Benchmark 1: `cxstream replay` events/s ÷ a bare loop that only parses the file with orjson.

    .venv/bin/python -m bench.replay [--events 300000] [--runs 1] [--data FILE]

The data set is the synthetic traffic model (`cxstream.generate`, messy producers,
duplicates included) over two days, written as JSON lines: mostly one event per
line, about 10 % of the events in batches, and 0.1 % rejected lines of every reason.
`cxstream replay` runs as the real command (a subprocess, wall time from start to
exit, so imports and the final report are included); `replay_lines` in-process is
shown too. The baseline is the best of three runs of the bare loop.
`--data FILE` measures a JSON-lines file of your own instead (as `cxstream replay`
reads it: an event or an array of events per line).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    DATA,
    PYTHON,
    ROOT,
    log,
    mixed_lines,
    proc_status_kib,
    realistic_events,
    stop_on_sigterm,
    table,
    write_result,
)

TARGET = 0.25
START_MS = 1_790_000_000_000  # 2026-09-21
SPAN_S = 2 * 86_400


def make_file(n: int, seed: int) -> Path:
    path = DATA / f"replay-{n}-{seed}.jsonl"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    log(f"generating {n:,} events -> {path}")
    events = realistic_events(
        n, seed=seed, start_ms=START_MS, span_s=SPAN_S, users=max(100, n // 15), messy=True
    )
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for line in mixed_lines(
            events, seed=seed, bad_lines=max(9, n // 1000), now_ms=START_MS + SPAN_S * 1000
        ):
            out.write(line + b"\n")
    tmp.replace(path)
    return path


def bare_parse(path: Path) -> tuple[float, int]:
    """Seconds to read and parse every line with orjson; events counted."""
    started = time.perf_counter()
    n = 0
    loads = orjson.loads
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                doc = loads(line)
            except orjson.JSONDecodeError:
                n += 1
                continue
            n += len(doc) if isinstance(doc, list) else 1
    return time.perf_counter() - started, n


def run_cli(path: Path) -> dict[str, Any]:
    """`cxstream replay FILE` as a subprocess: wall seconds, peak RSS, its report counts."""
    out_path = path.with_suffix(".report.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CXSTREAM_CONFIG", None)
    started = time.perf_counter()
    peak_kib = 0
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "cxstream.cli", "replay", str(path)],
            stdout=out,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        # VmHWM of the process after exec (wait4's ru_maxrss would also count the
        # pages it shared with this process between fork and exec).
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            with contextlib.suppress(OSError):  # it may exit meanwhile
                peak_kib = max(peak_kib, proc_status_kib(proc.pid, "VmHWM") or 0)
            time.sleep(0.05)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"cxstream replay exited with {proc.returncode}")
    report = orjson.loads(out_path.read_bytes())
    return {
        "seconds": seconds,
        "peak_rss_mib": peak_kib / 1024,
        "accepted": report["accepted"],
        "duplicates": report["duplicates"],
        "rejected": sum(report["rejected"].values()),
    }


def run_inprocess(path: Path) -> float:
    from cxstream.replay import replay_lines

    started = time.perf_counter()
    with open(path, "rb") as handle:
        replay_lines(handle)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--runs", type=int, default=2, help="interleaved runs (the best of each counts)"
    )
    parser.add_argument(
        "--data", type=Path, help="a JSON-lines file to measure instead of generated data"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    stop_on_sigterm()

    if args.data is not None and not args.data.is_file():
        parser.error(f"--data {args.data}: no such file")
    path = args.data if args.data is not None else make_file(args.events, args.seed)
    # Interleaved, best of each: the machine is shared, so noise hits both sides.
    bare_runs: list[float] = []
    cli_runs: list[dict[str, Any]] = []
    inproc_runs: list[float] = []
    n = 0
    for _ in range(args.runs):
        for _ in range(2):
            seconds, n = bare_parse(path)
            bare_runs.append(seconds)
        cli_runs.append(run_cli(path))
        inproc_runs.append(run_inprocess(path))
        log(
            f"bare {min(bare_runs[-2:]):.3f} s, cxstream replay {cli_runs[-1]['seconds']:.2f} s, "
            f"replay_lines {inproc_runs[-1]:.2f} s"
        )
    bare_s = min(bare_runs)
    cli = min(cli_runs, key=lambda r: r["seconds"])
    inproc_s = min(inproc_runs)
    bare_rate = n / bare_s
    rows = [
        ("bare orjson parse loop", n, bare_s, bare_rate, 1.0),
        (
            "cxstream replay (command)",
            n,
            cli["seconds"],
            n / cli["seconds"],
            bare_s / cli["seconds"],
        ),
        ("replay_lines (in-process)", n, inproc_s, n / inproc_s, bare_s / inproc_s),
    ]
    print(table(("run", "events", "seconds", "events/s", "ratio"), rows))
    ratio = bare_s / cli["seconds"]
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(
        f"\nreplay ÷ bare parse = {ratio:.3f} (target ≥ {TARGET}: {verdict}); "
        f"peak RSS of replay {cli['peak_rss_mib']:.0f} MiB; "
        f"accepted {cli['accepted']:,}, duplicates {cli['duplicates']:,}, "
        f"rejected {cli['rejected']:,}"
    )
    result = {
        "events": n,
        "data": str(path),
        "file_bytes": path.stat().st_size,
        "bare": {"seconds": bare_s, "events_per_s": bare_rate},
        "replay_command": {**cli, "events_per_s": n / cli["seconds"]},
        "replay_inprocess": {"seconds": inproc_s, "events_per_s": n / inproc_s},
        "runs": {
            "bare_s": bare_runs,
            "replay_s": [r["seconds"] for r in cli_runs],
            "inprocess_s": inproc_runs,
        },
        "ratio": ratio,
        "ratio_inprocess": bare_s / inproc_s,
        "target": TARGET,
        "met": ratio >= TARGET,
    }
    if not args.no_write:
        log(f"wrote {write_result('replay', result)}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
