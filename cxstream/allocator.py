"""Settings of glibc's malloc for the long-running worker.

A worker frees large buffers all the time: Kafka fetches, partials messages, the
marshal blobs of every checkpoint (hundreds of MiB at a million users). glibc
raises its mmap threshold after such a buffer is freed, so the next ones come
from the heap, where they fragment it and stay resident; and each thread that
allocates (the event loop, Faust's consumer thread, the metrics server) may get
its own arena. A fixed 128 KiB threshold hands large buffers back to the system
when freed, and two arenas are plenty for one busy thread and a few idle ones:
together about 50 MiB less peak RSS at 1M users (docs/performance.md#memory).

Set at start-up with `mallopt`, unless the environment already sets either
(`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, glibc's own names), so that an
operator's choice wins. Elsewhere than glibc nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping
from typing import Final

__all__ = ["tune_malloc"]

# mallopt parameters, from glibc's malloc.h.
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8

ARENA_MAX: Final = 2
MMAP_THRESHOLD: Final = 128 * 1024

_SETTINGS: Final = (
    ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENA_MAX),
    ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
)


def tune_malloc(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Apply the settings above; returns those applied, by their environment name."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except OSError:
        return {}
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return {}  # not glibc (musl's mallopt does nothing)
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    for name, param, value in _SETTINGS:
        if name in environ:
            continue
        if mallopt(param, value) == 1:  # 1: done; 0: refused
            applied[name] = value
    return applied
