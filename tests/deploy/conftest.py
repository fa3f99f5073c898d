"""Fixtures of the deploy tests (helpers: deploy_support.py)."""

from __future__ import annotations

import pytest
from deploy_support import worker_exports


@pytest.fixture(scope="session")
def exports() -> dict[str, frozenset[str]]:
    """Series name → label names, of everything the worker exports."""
    return worker_exports()
