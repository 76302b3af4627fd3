"""A simulated device's values, settings and faults, observed without a bus."""

from __future__ import annotations

import pytest

from drivers.clock import ManualClock
from drivers.profiles import builtin_profiles
from hardware_sim import DeviceFaults, SimulatedDevice

T0 = 1_726_552_800.0


def radar(clock: ManualClock, faults: DeviceFaults | None = None) -> SimulatedDevice:
    return SimulatedDevice(
        builtin_profiles()["hlk_ld8001h"],
        1,
        clock,
        {"water_level": lambda t: 500.0 + (t - T0) / 10.0},
        values={"install_height": 400, "measuring_range": 10},
        faults=faults,
    )


def test_bound_channel_value_follows_the_clock() -> None:
    clock = ManualClock(T0)
    device = radar(clock)
    clock.advance(600.0)
    assert device.value("water_level") == 560.0


def test_unbound_channels_hold_power_up_values_until_set() -> None:
    device = radar(ManualClock(T0))
    device.set_value("measuring_range", 30)
    assert device.value("install_height") == 400
    assert device.value("measuring_range") == 30
    assert device.value("device_address") == 0


def test_setting_a_bound_channel_is_refused() -> None:
    device = radar(ManualClock(T0))
    with pytest.raises(ValueError, match="driven by a signal"):
        device.set_value("water_level", 1.0)


def test_unknown_channel_names_list_the_known_ones() -> None:
    device = radar(ManualClock(T0))
    with pytest.raises(KeyError, match="air_gap"):
        device.value("stage")


def test_values_beyond_the_register_saturate_like_a_transmitter() -> None:
    device = SimulatedDevice(builtin_profiles()["pressure_level_transmitter"], 1, ManualClock(T0))
    device.set_value("level_mm", -25.0)
    low = device.value("level_mm")
    device.set_value("level_mm", 1e9)
    assert (low, device.value("level_mm")) == (0.0, 65535.0)


def test_power_cycle_keeps_process_values_and_resets_settings() -> None:
    relays = SimulatedDevice(builtin_profiles()["relay_module_8ch"], 10, ManualClock(T0))
    relays.set_value("input1", 1)
    relays.set_value("relay3", 1)
    relays.power_cycle()
    assert relays.value("input1") == 1
    assert relays.value("relay3") == 0
    assert [(c.address, c.value) for c in relays.coil_log] == [(2, True), (2, False)]


def test_outages_make_the_device_silent_only_inside_the_window() -> None:
    clock = ManualClock(T0)
    device = radar(clock, faults=DeviceFaults(outages=[(T0 + 10, T0 + 20)]))
    states = []
    for _ in range(3):
        states.append(device.silent())
        clock.advance(10.0)
    assert states == [False, True, False]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("exception_code", 9, "exception_code must be one of"),
        ("spike_probability", 1.5, "spike_probability must be"),
        ("dead", "yes", "dead must be true or false"),
        ("outages", [(20.0, 10.0)], "must start before it ends"),
    ],
)
def test_fault_assignments_are_validated(field: str, value: object, message: str) -> None:
    faults = DeviceFaults()
    with pytest.raises((TypeError, ValueError), match=message):
        setattr(faults, field, value)


def test_dead_devices_do_not_count_requests() -> None:
    device = radar(ManualClock(T0), faults=DeviceFaults(dead=True))
    device.record_request(3, 3, 1)
    assert device.request_log == []
    assert device.requests == {}


def test_unit_id_must_be_a_slave_address() -> None:
    with pytest.raises(ValueError, match=r"1\.\.247"):
        SimulatedDevice(builtin_profiles()["hlk_ld8001h"], 0, ManualClock(T0))
