"""Window arithmetic over integers: granules, window starts and bucket covers.

A rolling window W with granularity g, evaluated at `now_ms`, covers the events with
`floor(now, g) - W + g <= ts <= now`: the current, partial granule plus the W/g - 1
whole granules before it. Because every start is granule-aligned, a window is
exactly a union of whole buckets, which is what makes bucketed state exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "HOUR_MS",
    "LEVELS",
    "MINUTE_MS",
    "WINDOWS",
    "Window",
    "bucket_start",
    "cover",
    "window",
]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS

# Bucket levels the engine keeps: (width_ms, how long buckets of that width are kept).
# Minute buckets serve the short windows and the ragged edges of the 24 h window; hour
# buckets serve 24 h, 7 d and 30 d. Retention leaves one spare granule of margin.
LEVELS: Final = ((MINUTE_MS, DAY_MS + 2 * HOUR_MS), (HOUR_MS, 30 * DAY_MS + 2 * HOUR_MS))


@dataclass(frozen=True, slots=True)
class Window:
    """A rolling window: its name, width and granularity."""

    name: str
    width_ms: int
    granularity_ms: int

    def __post_init__(self) -> None:
        if self.width_ms % self.granularity_ms:
            raise ValueError(f"window {self.name}: width is not a multiple of granularity")

    def start_ms(self, now_ms: int) -> int:
        """First millisecond covered when evaluated at `now_ms` (inclusive)."""
        return bucket_start(now_ms, self.granularity_ms) - self.width_ms + self.granularity_ms


WINDOWS: Final = (
    Window("5m", 5 * MINUTE_MS, MINUTE_MS),
    Window("1h", HOUR_MS, MINUTE_MS),
    Window("24h", DAY_MS, MINUTE_MS),
    Window("7d", 7 * DAY_MS, HOUR_MS),
    Window("30d", 30 * DAY_MS, HOUR_MS),
)
_BY_NAME: Final = {w.name: w for w in WINDOWS}


def window(name: str) -> Window:
    """The window called `name` (`5m`, `1h`, `24h`, `7d`, `30d`)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown window {name!r}; expected one of {', '.join(_BY_NAME)}"
        ) from None


def bucket_start(ts_ms: int, width_ms: int) -> int:
    """Start of the bucket of width `width_ms` holding `ts_ms` (floor, also before 1970)."""
    return ts_ms - ts_ms % width_ms


def cover(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Buckets `(width_ms, start_ms)` exactly tiling `[start_ms, end_ms)`, few as possible.

    `start_ms` and `end_ms` must be minute-aligned. Whole hours use hour buckets and
    the ragged ends minute buckets:

        start         h1            h2            end
          |--minutes--|====hour=====|==hour==|--minutes--|
    """
    if start_ms % MINUTE_MS or end_ms % MINUTE_MS:
        raise ValueError("cover: bounds must be minute-aligned")
    out: list[tuple[int, int]] = []
    first_hour = -(-start_ms // HOUR_MS) * HOUR_MS
    last_hour = bucket_start(end_ms, HOUR_MS)
    if first_hour >= last_hour:
        return [(MINUTE_MS, t) for t in range(start_ms, end_ms, MINUTE_MS)]
    out.extend((MINUTE_MS, t) for t in range(start_ms, first_hour, MINUTE_MS))
    out.extend((HOUR_MS, t) for t in range(first_hour, last_hour, HOUR_MS))
    out.extend((MINUTE_MS, t) for t in range(last_hour, end_ms, MINUTE_MS))
    return out
