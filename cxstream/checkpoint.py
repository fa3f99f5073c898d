"""Local checkpoints of stage state, written atomically.

A checkpoint holds a partition's state together with the offsets it has applied,
in one file replaced by rename, so a crash leaves either the old or the new
checkpoint, never a mix. On restart, messages at or below the stored offsets are
skipped: that is what makes processing exact without Kafka transactions.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["CheckpointStore"]

_FORMAT = 1


class CheckpointStore:
    """Checkpoint files under `datadir` (one per stage and partition)."""

    def __init__(self, datadir: Path, app_id: str) -> None:
        self.root = Path(datadir) / app_id / "checkpoints"
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / f"{name}.pickle"

    def save(self, name: str, value: Any) -> None:
        path = self._path(name)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            pickle.dump((_FORMAT, value), handle, protocol=pickle.HIGHEST_PROTOCOL)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def load(self, name: str) -> Any | None:
        path = self._path(name)
        try:
            with open(path, "rb") as handle:
                version, value = pickle.load(handle)
        except FileNotFoundError:
            return None
        if version != _FORMAT:
            return None
        return value
