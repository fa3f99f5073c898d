"""glibc's malloc settings for the worker (cxstream.allocator)."""

from __future__ import annotations

from cxstream.allocator import tune_malloc


def test_both_settings_are_applied_on_glibc() -> None:
    # CI and the supported images run Debian, whose C library is glibc.
    assert tune_malloc({}) == {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 131072}


def test_an_operator_setting_in_the_environment_wins() -> None:
    assert tune_malloc({"MALLOC_ARENA_MAX": "4"}) == {"MALLOC_MMAP_THRESHOLD_": 131072}
    assert tune_malloc({"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"}) == {}
