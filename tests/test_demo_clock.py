"""The demo's clocks: the slope runs fast enough to fail within the demo, never too fast.

A gateway polls as fast as its machine lets it; on a clock tens of thousands of times
fast a slow machine thins the slope's record until its forecast warns only hours ahead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.clock import ScaledClock
from hardware_sim.demo import (
    DEMO_SITES,
    MAX_SLOPE_SPEED,
    SLOPE_SHARE,
    DemoGateway,
    demo_end,
    station_speed,
)
from hardware_sim.scenarios import CreepingSlope
from hardware_sim.station import builtin_stations, load_station

ORIGIN = 1_726_552_800.0


def _gateway(name: str, tmp_path: Path, speed: float, duration_s: float) -> DemoGateway:
    site = next(s for s in DEMO_SITES if s.station == name)
    spec = load_station(builtin_stations()[name])
    at_storm_speed = spec.build(ScaledClock(speed, ORIGIN, ORIGIN), ORIGIN)
    clock = ScaledClock(station_speed(at_storm_speed, ORIGIN, speed, duration_s), ORIGIN, ORIGIN)
    gateway = DemoGateway(site, tmp_path / name, name, clock=clock)
    gateway.station = spec.build(clock, ORIGIN)
    return gateway


def _slope_failure_wall(gateway: DemoGateway) -> float:
    assert gateway.station is not None
    assert gateway.clock is not None
    slope = gateway.station.scenarios["slope"]
    assert isinstance(slope, CreepingSlope)
    return gateway.clock.anchor + (slope.failure_time - gateway.clock.origin) / gateway.clock.speed


def test_a_long_demo_fits_the_slope_in_it_and_ends_on_time(tmp_path: Path) -> None:
    gateways = [_gateway(s.station, tmp_path, 240.0, 90.0) for s in DEMO_SITES]
    slope = next(g for g in gateways if g.site.station == "slope")
    assert slope.clock is not None
    assert slope.clock.speed < MAX_SLOPE_SPEED
    assert _slope_failure_wall(slope) == pytest.approx(ORIGIN + SLOPE_SHARE * 90.0)
    assert demo_end(gateways, ORIGIN, 90.0) == pytest.approx(ORIGIN + 90.0)
    # The other stations keep the storm's speed.
    assert all(g.clock is not None and g.clock.speed == 240.0 for g in gateways if g is not slope)


def test_a_short_demo_runs_until_the_slower_slope_has_failed(tmp_path: Path) -> None:
    gateways = [_gateway(s.station, tmp_path, 600.0, 25.0) for s in DEMO_SITES]
    slope = next(g for g in gateways if g.site.station == "slope")
    assert slope.clock is not None
    assert slope.clock.speed == MAX_SLOPE_SPEED
    failure_wall = _slope_failure_wall(slope)
    assert failure_wall > ORIGIN + 25.0
    # The slope fails at the same share of the (longer) demo, leaving time for its red.
    end = demo_end(gateways, ORIGIN, 25.0)
    assert end - ORIGIN == pytest.approx((failure_wall - ORIGIN) / SLOPE_SHARE)
