"""A work-chat robot's messages a minute, as the fleet counts them (fleet.robot_pace)."""

from __future__ import annotations

import pytest

from fleet.robot_pace import RobotLimit, RobotPace


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_robot_gets_its_limit_in_a_window_then_waits_for_the_oldest_slot() -> None:
    clock = Clock()
    pace = RobotPace(RobotLimit(per_window=3, window_s=60.0), clock)
    robot, other = "https://qyapi.example/send?key=a", "https://qyapi.example/send?key=b"
    waits = []
    for at in (0.0, 10.0, 20.0, 30.0):
        clock.now = 1000.0 + at
        waits.append(pace.wait_s(robot))
    assert waits == [0.0, 0.0, 0.0, 30.0]  # the 4th waits until the 1st is a window old
    assert pace.wait_s(other) == 0.0  # each robot has its own count
    clock.now = 1060.0
    assert pace.wait_s(robot) == 0.0


def test_a_robot_that_refused_for_its_rate_is_full_for_a_whole_window() -> None:
    clock = Clock()
    pace = RobotPace(RobotLimit(per_window=20, window_s=62.0), clock)
    robot = "https://qyapi.example/send?key=a"
    assert pace.wait_s(robot) == 0.0
    assert pace.full(robot) == 62.0
    clock.now += 61.0
    assert pace.wait_s(robot) == pytest.approx(1.0)
    clock.now += 1.0
    assert pace.wait_s(robot) == 0.0


@pytest.mark.parametrize(("per_window", "window_s"), [(0, 60.0), (20, 0.0), (20, float("nan"))])
def test_a_limit_that_lets_nothing_through_is_refused(per_window: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="a robot limit needs at least 1 post"):
        RobotLimit(per_window, window_s)
