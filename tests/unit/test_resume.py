"""Where a worker resumes a partition it takes over, and when it may publish it again."""

from __future__ import annotations

import pytest

from cxstream.app import Resume, rewind_to


@pytest.mark.parametrize(
    ("applied", "committed", "earliest", "expected"),
    [
        (None, None, 0, None),  # nothing committed: Faust's reset to earliest is right
        (-1, None, 0, None),
        (41, None, 0, None),  # state but no commit: old offsets are skipped by stamps
        (-1, 120, 0, 0),  # taken over with no state: re-read from the start
        (-1, 120, 30, 30),  # ... from the first offset retention kept
        (41, 120, 0, 42),  # an older checkpoint: continue right after it
        (41, 120, 60, 60),  # ... unless retention dropped what follows it
        (119, 120, 0, None),  # the state reaches the commit: resume there
        (150, 120, 0, None),  # the state is ahead of the commit: skip the repeats
        (-1, 0, 0, None),  # committed at the start: nothing to re-read
    ],
)
def test_rewind_to(
    applied: int | None, committed: int | None, earliest: int, expected: int | None
) -> None:
    assert rewind_to(applied, committed, earliest) == expected


def test_partitions_are_held_until_placed_and_caught_up() -> None:
    resume = Resume()
    applied = {("in", 0): -1, ("in", 1): -1, ("fb", 0): -1}
    resume.adopt({("in", 0), ("in", 1), ("fb", 0)})
    assert resume.held(lambda t, p: applied[(t, p)], {"in", "fb"}) == {0, 1}

    resume.unplaced.clear()  # placed: partition 0 of "in" must re-read up to offset 9
    resume.targets[("in", 0)] = 10
    assert resume.held(lambda t, p: applied[(t, p)], {"in", "fb"}) == {0}
    assert resume.held(lambda t, p: applied[(t, p)], {"fb"}) == set()

    applied[("in", 0)] = 8
    assert resume.held(lambda t, p: applied[(t, p)], {"in"}) == {0}
    applied[("in", 0)] = 9
    assert resume.held(lambda t, p: applied[(t, p)], {"in"}) == set()
    assert resume.targets == {}


def test_a_revoked_partition_is_no_longer_held() -> None:
    resume = Resume()
    resume.adopt({("in", 3)})
    resume.targets[("in", 3)] = 5
    resume.drop(("in", 3))
    assert resume.held(lambda t, p: -1, {"in"}) == set()
