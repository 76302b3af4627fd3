"""Tests of the deterministic physical scenarios that drive the simulated sensors."""

import math
from collections.abc import Callable

import numpy as np
import pytest

from hardware_sim.scenarios import (
    CreekLevel,
    CreepingSlope,
    DesignStorm,
    ExtensometerProjection,
    GnssProjection,
    InclinometerProjection,
)

T0 = 1_700_000_000.0
HOUR = 3600.0
DAY = 86400.0


def make_storm(seed: int = 7, variability: float = 0.3) -> DesignStorm:
    return DesignStorm(
        T0, 6 * HOUR, 40.0, peak_position=0.4, step_s=300.0, variability=variability, seed=seed
    )


def make_slope(noise_mm: float = 0.0, seed: int = 0) -> CreepingSlope:
    # One day of creep at 5 mm/day, then two days of acceleration to failure.
    onset = T0 + DAY
    return CreepingSlope.from_creep_rate(
        onset + 2 * DAY, onset, 5.0, T0, initial_displacement_mm=12.0, noise_mm=noise_mm, seed=seed
    )


def sample_times(start: float, stop: float, count: int = 997) -> list[float]:
    return [float(t) for t in np.linspace(start, stop, count)]


def test_same_seed_gives_identical_storm_values_at_many_times() -> None:
    a, b = make_storm(seed=3), make_storm(seed=3)
    for t in sample_times(T0 - HOUR, T0 + 7 * HOUR):
        assert a.intensity_mm_h(t) == b.intensity_mm_h(t)
        assert a.cumulative_mm(t) == b.cumulative_mm(t)


def test_different_seeds_give_different_storm_profiles() -> None:
    a, b = make_storm(seed=3), make_storm(seed=4)
    assert not np.array_equal(a.step_intensities_mm_h, b.step_intensities_mm_h)
    assert a.total_mm != b.total_mm


def test_storm_values_do_not_depend_on_sampling_order() -> None:
    storm = make_storm()
    times = sample_times(T0, T0 + 6 * HOUR, 301)
    forward = [storm.cumulative_mm(t) for t in times]
    backward = [storm.cumulative_mm(t) for t in reversed(times)]
    assert forward == backward[::-1]


def test_storm_without_variability_follows_the_triangular_envelope() -> None:
    storm = make_storm(variability=0.0)
    # Step midpoints sample the envelope: 40 mm/h at the peak, linear either side.
    assert storm.intensity_mm_h(T0 + 150.0) == pytest.approx(40.0 * 150.0 / (0.4 * 6 * HOUR))
    assert storm.intensity_mm_h(T0 + 6 * HOUR - 1.0) == pytest.approx(
        40.0 * 150.0 / (0.6 * 6 * HOUR)
    )
    # Triangle area: 0.5 * 6 h * 40 mm/h.
    assert storm.total_mm == pytest.approx(120.0, rel=1e-3)


def test_storm_intensity_is_never_negative_and_zero_outside_the_storm() -> None:
    storm = DesignStorm(T0, 2 * HOUR, 30.0, variability=2.0, seed=1)
    assert all(storm.intensity_mm_h(t) >= 0 for t in sample_times(T0, T0 + 2 * HOUR))
    assert storm.intensity_mm_h(T0 - 1.0) == 0.0
    assert storm.intensity_mm_h(T0 + 2 * HOUR) == 0.0


def test_storm_cumulative_matches_fine_numerical_integration_of_intensity() -> None:
    storm = make_storm()
    dt = 1.0
    times = np.arange(T0 - HOUR, T0 + 7 * HOUR, dt)
    intensity = np.array([storm.intensity_mm_h(float(t)) for t in times])
    # Left Riemann sum is exact here because steps (300 s) are whole multiples of dt.
    integral = np.concatenate(([0.0], np.cumsum(intensity * dt / HOUR)))
    for i in range(0, len(times), 997):
        assert storm.cumulative_mm(float(times[i])) == pytest.approx(integral[i], abs=1e-9)
    assert storm.total_mm == pytest.approx(integral[-1], rel=1e-12)


def test_storm_cumulative_is_zero_before_start_non_decreasing_and_total_after_end() -> None:
    storm = make_storm()
    assert storm.cumulative_mm(T0 - 1e6) == 0.0
    assert storm.cumulative_mm(T0) == 0.0
    values = [storm.cumulative_mm(t) for t in sample_times(T0 - HOUR, T0 + 7 * HOUR, 5003)]
    assert np.all(np.diff(values) >= 0)
    assert storm.cumulative_mm(T0 + 6 * HOUR) == storm.total_mm
    assert storm.cumulative_mm(T0 + 100 * DAY) == storm.total_mm


def test_storm_window_sums_are_differences_of_cumulative_and_add_up() -> None:
    storm = make_storm()
    t = T0 + 4 * HOUR + 123.0
    assert storm.window_sum_mm(t, HOUR) == pytest.approx(
        storm.cumulative_mm(t) - storm.cumulative_mm(t - HOUR)
    )
    three_hours = sum(storm.window_sum_mm(t - k * HOUR, HOUR) for k in range(3))
    assert storm.window_sum_mm(t, 3 * HOUR) == pytest.approx(three_hours)
    assert storm.window_sum_mm(T0 + 7 * HOUR, 24 * HOUR) == pytest.approx(storm.total_mm)
    assert storm.window_sum_mm(t, 0.0) == 0.0


def test_storm_describe_reports_parameters_and_total() -> None:
    storm = make_storm()
    info = storm.describe()
    assert info["peak_mm_h"] == 40.0
    assert info["seed"] == 7
    assert info["total_mm"] == storm.total_mm


def make_creek(storm: DesignStorm, lag_s: float = 1800.0) -> CreekLevel:
    return CreekLevel(
        storm, base_level_m=0.5, catchment_gain_m_per_mm=0.02, recession_s=2 * HOUR, lag_s=lag_s
    )


def test_creek_stays_at_base_until_the_lagged_rain_arrives_then_rises() -> None:
    creek = make_creek(make_storm())
    assert creek.level_m(T0 - HOUR) == 0.5
    assert creek.level_m(T0 + 1800.0) == 0.5
    assert creek.level_m(T0 + 1800.0 + HOUR) > 0.5
    assert creek.rate_of_rise_m_per_h(T0 + 1800.0 + HOUR, 900.0) > 0


def test_creek_peaks_after_the_rain_peak_and_recedes_towards_base() -> None:
    storm = make_storm(variability=0.0)
    creek = make_creek(storm)
    times = np.arange(T0, T0 + 12 * HOUR, 60.0)
    levels = np.array([creek.level_m(float(t)) for t in times])
    peak_time = float(times[int(np.argmax(levels))])
    # Both the lag and the reservoir's recession delay the peak beyond the rain's peak.
    assert peak_time > storm.peak_time + 1800.0
    after = levels[times > peak_time]
    assert np.all(np.diff(after) < 0)
    assert creek.level_m(T0 + 6 * HOUR + 1800.0 + 20 * creek.recession_s) == pytest.approx(
        0.5, abs=1e-6
    )
    assert creek.rate_of_rise_m_per_h(peak_time + 2 * HOUR, 900.0) < 0


def test_creek_level_matches_fine_euler_integration_of_the_reservoir() -> None:
    storm = make_storm()
    creek = make_creek(storm, lag_s=0.0)
    dt = 1.0
    storage = 0.0
    t = T0
    for _ in range(int(8 * HOUR)):
        rain = storm.intensity_mm_h(t) / HOUR
        storage += dt * (rain - storage / creek.recession_s)
        t += dt
    assert creek.level_m(t) == pytest.approx(0.5 + 0.02 * storage, rel=1e-3)


def test_creek_level_is_continuous_across_step_edges() -> None:
    storm = make_storm()
    creek = make_creek(storm)
    for edge in storm.edges:
        t = float(edge) + creek.lag_s
        assert creek.level_m(t - 1e-4) == pytest.approx(creek.level_m(t), abs=1e-7)


def test_slope_velocity_is_continuous_at_onset_and_matches_creep_rate() -> None:
    slope = make_slope()
    onset = slope.onset_time
    assert slope.velocity_mm_s(onset - 1e-3) == pytest.approx(slope.velocity_mm_s(onset), rel=1e-6)
    assert slope.velocity_mm_s(onset - HOUR) == pytest.approx(5.0 / DAY)
    assert slope.inverse_velocity(onset - HOUR) == pytest.approx(DAY / 5.0)


def test_slope_displacement_is_continuous_and_increasing() -> None:
    slope = make_slope()
    assert slope.displacement_mm(T0 - HOUR) == 12.0
    for boundary in (slope.creep_start, slope.onset_time):
        assert slope.displacement_mm(boundary - 1e-3) == pytest.approx(
            slope.displacement_mm(boundary), abs=1e-6
        )
    times = sample_times(T0, slope.failure_time - 2.0, 5003)
    values = [slope.displacement_mm(t) for t in times]
    assert np.all(np.diff(values) > 0)
    # One day of creep at 5 mm/day on top of the initial 12 mm.
    assert slope.displacement_mm(slope.onset_time) == pytest.approx(17.0)


def test_slope_displacement_is_the_integral_of_velocity_in_the_accelerating_stage() -> None:
    slope = make_slope()
    a, b = slope.onset_time + HOUR, slope.failure_time - HOUR
    times = np.linspace(a, b, 20001)
    velocity = np.array([slope.velocity_mm_s(float(t)) for t in times])
    integral = float(np.sum((velocity[1:] + velocity[:-1]) / 2 * np.diff(times)))
    assert slope.displacement_mm(b) - slope.displacement_mm(a) == pytest.approx(integral, rel=1e-4)


def test_slope_at_failure_reports_infinite_velocity_and_saturated_displacement() -> None:
    slope = make_slope()
    tf = slope.failure_time
    saturated = slope.displacement_mm(tf - slope.FAILURE_CAP_S)
    assert math.isfinite(saturated)
    assert slope.displacement_mm(tf) == saturated
    assert slope.displacement_mm(tf + DAY) == saturated
    assert slope.velocity_mm_s(tf) == math.inf
    assert slope.inverse_velocity(tf) == 0.0
    assert slope.inverse_velocity(tf + DAY) == 0.0


def fitted_failure_time(slope: CreepingSlope, baseline_samples: int) -> float:
    step = 600.0
    times = np.arange(slope.onset_time, slope.failure_time - step, step)
    displacement = np.array([slope.measured_displacement_mm(float(t)) for t in times])
    k = baseline_samples
    velocity = (displacement[k:] - displacement[:-k]) / (k * step)
    midpoints = (times[k:] + times[:-k]) / 2
    assert np.all(velocity > 0)
    gradient, intercept = np.polyfit(midpoints, 1.0 / velocity, 1)
    return float(-intercept / gradient)


def test_inverse_velocity_fit_of_noiseless_measurements_crosses_zero_at_failure_time() -> None:
    slope = make_slope()
    span = slope.failure_time - slope.onset_time
    assert fitted_failure_time(slope, baseline_samples=1) == pytest.approx(
        slope.failure_time, abs=0.01 * span
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inverse_velocity_fit_of_noisy_measurements_crosses_zero_at_failure_time(
    seed: int,
) -> None:
    slope = make_slope(noise_mm=0.01, seed=seed)
    span = slope.failure_time - slope.onset_time
    # A one-hour baseline keeps 0.01 mm of noise small against the creep per difference.
    assert fitted_failure_time(slope, baseline_samples=6) == pytest.approx(
        slope.failure_time, abs=0.01 * span
    )


def test_measured_displacement_noise_is_repeatable_seeded_and_has_requested_spread() -> None:
    slope = make_slope(noise_mm=0.5, seed=11)
    t = slope.onset_time + 1234.5678
    assert slope.measured_displacement_mm(t) == slope.measured_displacement_mm(t)

    # Noise is keyed on the millisecond, so reads within it carry the same error.
    def error(x: float) -> float:
        return slope.measured_displacement_mm(x) - slope.displacement_mm(x)

    assert error(t + 0.0001) == pytest.approx(error(t), abs=1e-12)
    assert error(t + 0.01) != pytest.approx(error(t), abs=1e-12)
    other = make_slope(noise_mm=0.5, seed=12)
    assert other.measured_displacement_mm(t) != slope.measured_displacement_mm(t)
    times = sample_times(T0, T0 + DAY, 4001)
    errors = np.array([slope.measured_displacement_mm(x) - slope.displacement_mm(x) for x in times])
    assert abs(float(np.mean(errors))) < 0.05
    assert float(np.std(errors)) == pytest.approx(0.5, rel=0.1)


def test_slope_without_noise_measures_the_truth() -> None:
    slope = make_slope()
    for t in sample_times(T0, slope.failure_time, 101):
        assert slope.measured_displacement_mm(t) == slope.displacement_mm(t)


def test_gnss_projection_splits_displacement_along_the_downslope_direction() -> None:
    slope = make_slope()
    gnss = GnssProjection(slope, azimuth_deg=90.0, dip_deg=30.0)
    t = slope.onset_time + HOUR
    d = slope.displacement_mm(t)
    assert gnss.east_mm(t) == pytest.approx(d * math.cos(math.radians(30.0)))
    assert gnss.north_mm(t) == pytest.approx(0.0, abs=1e-12)
    assert gnss.up_mm(t) == pytest.approx(-d / 2)
    length = math.hypot(gnss.east_mm(t), gnss.north_mm(t), gnss.up_mm(t))
    assert length == pytest.approx(d)


def test_extensometer_and_inclinometer_scale_the_displacement() -> None:
    slope = make_slope()
    t = slope.onset_time + HOUR
    d = slope.displacement_mm(t)
    assert ExtensometerProjection(slope, gain=0.8).extension_mm(t) == pytest.approx(0.8 * d)
    inclinometer = InclinometerProjection(slope, mm_per_deg_x=50.0, mm_per_deg_y=-200.0)
    assert inclinometer.tilt_x_deg(t) == pytest.approx(d / 50.0)
    assert inclinometer.tilt_y_deg(t) == pytest.approx(-d / 200.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"duration_s": 0.0}, "duration_s"),
        ({"peak_mm_h": -1.0}, "peak_mm_h"),
        ({"peak_position": 1.5}, "peak_position"),
        ({"step_s": 0.0}, "step_s"),
        ({"variability": -0.1}, "variability"),
        ({"start": math.nan}, "start"),
    ],
)
def test_invalid_storm_parameters_raise_value_error_naming_them(
    kwargs: dict[str, float], name: str
) -> None:
    params: dict[str, float] = {"start": T0, "duration_s": HOUR, "peak_mm_h": 10.0} | kwargs
    with pytest.raises(ValueError, match=name):
        DesignStorm(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"recession_s": 0.0}, "recession_s"),
        ({"lag_s": -1.0}, "lag_s"),
        ({"catchment_gain_m_per_mm": -0.1}, "catchment_gain_m_per_mm"),
        ({"base_level_m": math.inf}, "base_level_m"),
    ],
)
def test_invalid_creek_parameters_raise_value_error_naming_them(
    kwargs: dict[str, float], name: str
) -> None:
    params = {
        "base_level_m": 0.5,
        "catchment_gain_m_per_mm": 0.02,
        "recession_s": HOUR,
        "lag_s": 0.0,
    } | kwargs
    with pytest.raises(ValueError, match=name):
        CreekLevel(make_storm(), **params)


def test_creek_rate_of_rise_rejects_a_non_positive_window() -> None:
    with pytest.raises(ValueError, match="window_s"):
        make_creek(make_storm()).rate_of_rise_m_per_h(T0, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"onset_time": T0 + 2 * DAY}, "onset_time"),
        ({"onset_time": T0 + 3 * DAY}, "onset_time"),
        ({"a_inv": 0.0}, "a_inv"),
        ({"a_inv": -1.0}, "a_inv"),
        ({"creep_start": T0 + 1.5 * DAY}, "creep_start"),
        ({"noise_mm": -0.1}, "noise_mm"),
    ],
)
def test_invalid_slope_parameters_raise_value_error_naming_them(
    kwargs: dict[str, float], name: str
) -> None:
    params = {
        "failure_time": T0 + 2 * DAY,
        "onset_time": T0 + DAY,
        "a_inv": 0.1,
        "creep_start": T0,
        "noise_mm": 0.0,
    } | kwargs
    with pytest.raises(ValueError, match=name):
        CreepingSlope(**params)  # type: ignore[arg-type]


def test_slope_from_creep_rate_rejects_onset_after_failure() -> None:
    with pytest.raises(ValueError, match="onset_time"):
        CreepingSlope.from_creep_rate(T0, T0 + DAY, 5.0, T0 - DAY)


@pytest.mark.parametrize(
    "build",
    [
        lambda s: InclinometerProjection(s, mm_per_deg_x=0.0, mm_per_deg_y=1.0),
        lambda s: InclinometerProjection(s, mm_per_deg_x=1.0, mm_per_deg_y=0.0),
        lambda s: GnssProjection(s, azimuth_deg=0.0, dip_deg=120.0),
        lambda s: ExtensometerProjection(s, gain=math.nan),
    ],
)
def test_invalid_projection_parameters_raise_value_error(
    build: Callable[[CreepingSlope], object],
) -> None:
    with pytest.raises(ValueError, match=r"mm_per_deg|dip_deg|gain"):
        build(make_slope())
