"""Frame pacing: the average rate taken out of a source is the target rate, whatever the
source's rate and jitter, and a source at or below the target gives every frame."""

from __future__ import annotations

import itertools
import random

import pytest

from vms.pipeline.pacing import FramePacer


def taken(pacer: FramePacer, times: list[float]) -> list[float]:
    return [t for t in times if pacer.take(t)]


def frames(fps: float, seconds: float, start: float = 1000.0, jitter: float = 0.0) -> list[float]:
    rng = random.Random(7)
    step = 1.0 / fps
    return [start + i * step + rng.uniform(-jitter, jitter) for i in range(int(seconds * fps))]


@pytest.mark.parametrize(
    ("source", "target"), [(25, 10), (30, 10), (25, 5), (15, 10), (50, 12.5), (25, 24)]
)
def test_the_rate_taken_is_the_target_rate(source: float, target: float) -> None:
    got = taken(FramePacer(target), frames(source, 20))
    assert len(got) / 20 == pytest.approx(min(source, target), rel=0.02)


def test_every_third_frame_was_the_old_undershoot() -> None:
    # 25 -> 10: frames 0, 2, 5, 7, 10, ... (an interval-since-last rule takes 0, 3, 6: 8.3/s).
    times = frames(25, 1, start=0.0)
    got = taken(FramePacer(10), times)
    assert [times.index(t) for t in got] == [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]


def test_jitter_does_not_lower_the_rate() -> None:
    # Frames arrive up to 15 ms early or late (a loaded machine, a network camera).
    got = taken(FramePacer(10), frames(25, 30, jitter=0.015))
    assert len(got) / 30 == pytest.approx(10, rel=0.03)


def test_no_target_takes_every_frame() -> None:
    times = frames(25, 2)
    assert taken(FramePacer(None), times) == times


def test_a_gap_restarts_the_schedule_instead_of_a_burst() -> None:
    pacer = FramePacer(10)
    before = taken(pacer, frames(25, 1, start=0.0))
    # Nobody watched for 5 s: the next frames come at the target rate, not all at once.
    after = taken(pacer, frames(25, 1, start=6.0))
    assert len(before) == 10
    assert len(after) == 10
    assert min(b - a for a, b in itertools.pairwise(after)) >= 0.075


def test_due_does_not_consume() -> None:
    pacer = FramePacer(10)
    assert pacer.due(5.0)
    assert pacer.due(5.0)
    pacer.took(5.0)
    assert not pacer.due(5.04)
    assert pacer.due(5.08)  # within the quarter-period slack
