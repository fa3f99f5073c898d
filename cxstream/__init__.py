"""cxstream: live customer-experience metrics from Kafka.

The producer SDK is importable from the package root (`from cxstream import
Emitter`); it loads aiokafka only when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Emitter", "SyncEmitter"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cxstream import emit

        return getattr(emit, name)
    raise AttributeError(f"module 'cxstream' has no attribute {name!r}")
