"""Seeded, deterministic physical scenarios that simulated sensors sample.

Every quantity is an exact pure function of simulated UTC time in seconds, so any poller
at any rate, and any test, sees the same values; a scenario must never read the wall
clock, keep state between calls or draw random numbers after construction.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

Signal: TypeAlias = Callable[[float], float]
"""A scalar quantity as a function of simulated time; devices bind one per channel."""

FloatArray: TypeAlias = npt.NDArray[np.float64]

_SECONDS_PER_HOUR = 3600.0
_SECONDS_PER_DAY = 86400.0


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _require_finite(name: str, value: float) -> None:
    _require(math.isfinite(value), f"{name} must be finite, got {value}")


def _require_positive(name: str, value: float) -> None:
    _require(math.isfinite(value) and value > 0, f"{name} must be positive, got {value}")


def _require_non_negative(name: str, value: float) -> None:
    _require(math.isfinite(value) and value >= 0, f"{name} must be >= 0, got {value}")


def gaussian_noise(seed: int, t: float) -> float:
    """Standard normal deviate that depends only on ``seed`` and ``t`` to the millisecond.

    A hash rather than a generator keeps the noise independent of call order and rate.
    """
    key = f"{seed}:{round(t * 1000.0)}".encode()
    digest = hashlib.blake2b(key, digest_size=16).digest()
    # 53-bit uniforms in (0, 1]; u1 must avoid 0 for the logarithm.
    u1 = ((int.from_bytes(digest[:8], "little") >> 11) + 1) / 2.0**53
    u2 = (int.from_bytes(digest[8:], "little") >> 11) / 2.0**53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class DesignStorm:
    """Design-storm hyetograph: a triangular envelope with seeded per-step variability.

    The envelope rises linearly from zero at ``start`` to ``peak_mm_h`` at
    ``start + peak_position * duration_s`` and falls back to zero at ``start + duration_s``.
    Intensity is piecewise constant over steps of ``step_s`` (the last step is shortened to
    end with the storm): each step takes the envelope at its midpoint times a gamma-distributed
    factor with mean 1 and standard deviation ``variability``.
    """

    def __init__(
        self,
        start: float,
        duration_s: float,
        peak_mm_h: float,
        *,
        peak_position: float = 0.4,
        step_s: float = 60.0,
        variability: float = 0.2,
        seed: int = 0,
    ) -> None:
        _require_finite("start", start)
        _require_positive("duration_s", duration_s)
        _require_non_negative("peak_mm_h", peak_mm_h)
        _require(
            0.0 <= peak_position <= 1.0,
            f"peak_position must be within [0, 1], got {peak_position}",
        )
        _require_positive("step_s", step_s)
        _require_non_negative("variability", variability)
        self.start = float(start)
        self.duration_s = float(duration_s)
        self.peak_mm_h = float(peak_mm_h)
        self.peak_position = float(peak_position)
        self.step_s = float(step_s)
        self.variability = float(variability)
        self.seed = seed

        # The tolerance stops float error in duration/step from adding an empty last step.
        n_steps = max(1, math.ceil(self.duration_s / self.step_s - 1e-9))
        edges = self.start + np.arange(n_steps + 1, dtype=np.float64) * self.step_s
        edges[-1] = self.end
        self._edges: FloatArray = edges
        tau = ((edges[:-1] + edges[1:]) / 2.0 - self.start) / self.duration_s
        rising = tau / peak_position if peak_position > 0 else np.full_like(tau, np.inf)
        falling = (
            (1.0 - tau) / (1.0 - peak_position) if peak_position < 1 else np.full_like(tau, np.inf)
        )
        envelope = self.peak_mm_h * np.minimum(rising, falling)
        self._rates_mm_h: FloatArray = envelope * self._factors(n_steps)
        depths = self._rates_mm_h * np.diff(edges) / _SECONDS_PER_HOUR
        self._cumulative_at_edges: FloatArray = np.concatenate(([0.0], np.cumsum(depths)))

    def _factors(self, n_steps: int) -> FloatArray:
        if self.variability == 0:
            return np.ones(n_steps, dtype=np.float64)
        # Gamma keeps the factor non-negative with the requested mean and spread.
        shape = 1.0 / self.variability**2
        rng = np.random.default_rng(self.seed)
        return rng.gamma(shape, 1.0 / shape, size=n_steps)

    @property
    def end(self) -> float:
        """Time at which the rain stops, in UTC seconds."""
        return self.start + self.duration_s

    @property
    def peak_time(self) -> float:
        """Time of the envelope's peak, in UTC seconds."""
        return self.start + self.peak_position * self.duration_s

    @property
    def total_mm(self) -> float:
        """Total storm depth in mm."""
        return float(self._cumulative_at_edges[-1])

    @property
    def edges(self) -> FloatArray:
        """Step boundaries in UTC seconds (a copy); intensity is constant between them."""
        return self._edges.copy()

    @property
    def step_intensities_mm_h(self) -> FloatArray:
        """Intensity of each step in mm/h (a copy), one fewer than ``edges``."""
        return self._rates_mm_h.copy()

    def step_index(self, t: float) -> int:
        """Index of the step containing ``t``; only meaningful for ``start <= t < end``."""
        # Searching the stored edges (not dividing by step_s) guarantees edges[k] <= t,
        # so partial-step sums can never go negative through rounding.
        k = int(np.searchsorted(self._edges, t, side="right")) - 1
        return min(max(k, 0), len(self._rates_mm_h) - 1)

    def intensity_mm_h(self, t: float) -> float:
        """Rain intensity at ``t`` in mm/h; zero outside ``[start, end)``."""
        if t < self.start or t >= self.end:
            return 0.0
        return float(self._rates_mm_h[self.step_index(t)])

    def cumulative_mm(self, t: float) -> float:
        """Exact rain depth in mm fallen from the beginning of time up to ``t``."""
        if t <= self.start:
            return 0.0
        if t >= self.end:
            return self.total_mm
        k = self.step_index(t)
        partial = self._rates_mm_h[k] * (t - self._edges[k]) / _SECONDS_PER_HOUR
        return float(self._cumulative_at_edges[k] + partial)

    def window_sum_mm(self, t: float, window_s: float) -> float:
        """Rain depth in mm fallen in the window ``(t - window_s, t]``."""
        _require_non_negative("window_s", window_s)
        return self.cumulative_mm(t) - self.cumulative_mm(t - window_s)

    def describe(self) -> dict[str, float | int]:
        """Parameters and total depth, for logs and the demo."""
        return {
            "start": self.start,
            "duration_s": self.duration_s,
            "peak_mm_h": self.peak_mm_h,
            "peak_position": self.peak_position,
            "step_s": self.step_s,
            "variability": self.variability,
            "seed": self.seed,
            "total_mm": self.total_mm,
        }


class CreekLevel:
    """Creek stage from a linear reservoir fed by a storm.

    Storage ``S`` (mm over the catchment) obeys ``dS/dt = r(t - lag_s) - S / recession_s``
    with ``r`` the storm intensity in mm/s; the stage is
    ``base_level_m + catchment_gain_m_per_mm * S``. Rain is constant within each storm
    step, so the storage is solved exactly on the storm's own step grid and evaluated
    exactly in between; no separate time step is needed.
    """

    def __init__(
        self,
        storm: DesignStorm,
        base_level_m: float,
        catchment_gain_m_per_mm: float,
        recession_s: float,
        lag_s: float = 0.0,
    ) -> None:
        _require_finite("base_level_m", base_level_m)
        _require_non_negative("catchment_gain_m_per_mm", catchment_gain_m_per_mm)
        _require_positive("recession_s", recession_s)
        _require_non_negative("lag_s", lag_s)
        self.storm = storm
        self.base_level_m = float(base_level_m)
        self.catchment_gain_m_per_mm = float(catchment_gain_m_per_mm)
        self.recession_s = float(recession_s)
        self.lag_s = float(lag_s)

        self._edges = storm.edges
        self._inflow_mm_s: FloatArray = storm.step_intensities_mm_h / _SECONDS_PER_HOUR
        decay = np.exp(-np.diff(self._edges) / self.recession_s)
        equilibrium = self._inflow_mm_s * self.recession_s
        storage = np.zeros(len(self._edges), dtype=np.float64)
        for k in range(len(decay)):
            storage[k + 1] = equilibrium[k] + (storage[k] - equilibrium[k]) * decay[k]
        self._storage_mm: FloatArray = storage

    def storage_mm(self, t: float) -> float:
        """Catchment storage at ``t`` in mm."""
        # The storm's clock: the reservoir at t sees rain that fell lag_s earlier.
        ts = t - self.lag_s
        storm = self.storm
        if ts <= storm.start:
            return 0.0
        if ts >= storm.end:
            remaining = math.exp(-(ts - storm.end) / self.recession_s)
            return float(self._storage_mm[-1]) * remaining
        k = storm.step_index(ts)
        equilibrium = float(self._inflow_mm_s[k]) * self.recession_s
        decay = math.exp(-(ts - float(self._edges[k])) / self.recession_s)
        return equilibrium + (float(self._storage_mm[k]) - equilibrium) * decay

    def level_m(self, t: float) -> float:
        """Creek stage at ``t`` in metres."""
        return self.base_level_m + self.catchment_gain_m_per_mm * self.storage_mm(t)

    def rate_of_rise_m_per_h(self, t: float, window_s: float) -> float:
        """Mean rate of rise over ``(t - window_s, t]`` in m/h (negative when falling)."""
        _require_positive("window_s", window_s)
        rise = self.level_m(t) - self.level_m(t - window_s)
        return rise / window_s * _SECONDS_PER_HOUR

    def describe(self) -> dict[str, float | int]:
        """Parameters of the reservoir and of its storm, for logs and the demo."""
        return {
            "base_level_m": self.base_level_m,
            "catchment_gain_m_per_mm": self.catchment_gain_m_per_mm,
            "recession_s": self.recession_s,
            "lag_s": self.lag_s,
            **{f"storm_{key}": value for key, value in self.storm.describe().items()},
        }


class CreepingSlope:
    """Slope that creeps steadily, then accelerates to failure (Fukuzono / Voight, alpha=2).

    Units: time in UTC seconds, displacement in mm, velocity in mm/s, inverse velocity in
    s/mm, and ``a_inv`` in 1/mm (s/mm of inverse velocity lost per second).

    Stages:
    - before ``creep_start``: at rest at ``initial_displacement_mm``;
    - ``creep_start <= t < onset_time``: constant velocity ``1 / (a_inv * (failure_time -
      onset_time))``, so velocity is continuous at onset;
    - ``onset_time <= t < failure_time``: ``1/v = a_inv * (failure_time - t)`` and the
      displacement grows as ``ln((failure_time - onset_time) / (failure_time - t)) / a_inv``;
    - at and after ``failure_time``: velocity is ``inf`` and inverse velocity 0.

    Displacement diverges at failure, so the instrument is taken as lost ``FAILURE_CAP_S``
    before it: from ``failure_time - FAILURE_CAP_S`` on, displacement holds its value there.
    """

    FAILURE_CAP_S = 1.0

    def __init__(
        self,
        failure_time: float,
        onset_time: float,
        a_inv: float,
        creep_start: float,
        *,
        initial_displacement_mm: float = 0.0,
        noise_mm: float = 0.0,
        seed: int = 0,
    ) -> None:
        _require_finite("failure_time", failure_time)
        _require_finite("onset_time", onset_time)
        _require_finite("creep_start", creep_start)
        _require_finite("initial_displacement_mm", initial_displacement_mm)
        _require(
            failure_time - onset_time > self.FAILURE_CAP_S,
            f"onset_time must be more than {self.FAILURE_CAP_S} s before failure_time, "
            f"got onset_time={onset_time}, failure_time={failure_time}",
        )
        _require(
            creep_start <= onset_time,
            f"creep_start must not be after onset_time, "
            f"got creep_start={creep_start}, onset_time={onset_time}",
        )
        _require_positive("a_inv", a_inv)
        _require_non_negative("noise_mm", noise_mm)
        self.failure_time = float(failure_time)
        self.onset_time = float(onset_time)
        self.a_inv = float(a_inv)
        self.creep_start = float(creep_start)
        self.initial_displacement_mm = float(initial_displacement_mm)
        self.noise_mm = float(noise_mm)
        self.seed = seed

    @classmethod
    def from_creep_rate(
        cls,
        failure_time: float,
        onset_time: float,
        creep_mm_per_day: float,
        creep_start: float,
        *,
        initial_displacement_mm: float = 0.0,
        noise_mm: float = 0.0,
        seed: int = 0,
    ) -> CreepingSlope:
        """Build a slope from its steady creep rate in mm/day instead of ``a_inv``."""
        _require_positive("creep_mm_per_day", creep_mm_per_day)
        _require(
            onset_time < failure_time,
            f"onset_time must be before failure_time, "
            f"got onset_time={onset_time}, failure_time={failure_time}",
        )
        a_inv = _SECONDS_PER_DAY / (creep_mm_per_day * (failure_time - onset_time))
        return cls(
            failure_time,
            onset_time,
            a_inv,
            creep_start,
            initial_displacement_mm=initial_displacement_mm,
            noise_mm=noise_mm,
            seed=seed,
        )

    @property
    def creep_velocity_mm_s(self) -> float:
        """Velocity of the steady-creep stage in mm/s."""
        return 1.0 / (self.a_inv * (self.failure_time - self.onset_time))

    def velocity_mm_s(self, t: float) -> float:
        """True velocity at ``t`` in mm/s; ``inf`` at and after failure."""
        if t < self.creep_start:
            return 0.0
        if t < self.onset_time:
            return self.creep_velocity_mm_s
        if t < self.failure_time:
            return 1.0 / (self.a_inv * (self.failure_time - t))
        return math.inf

    def inverse_velocity(self, t: float) -> float:
        """True inverse velocity at ``t`` in s/mm; ``inf`` at rest, 0 at and after failure."""
        if t < self.creep_start:
            return math.inf
        if t < self.onset_time:
            return self.a_inv * (self.failure_time - self.onset_time)
        return self.a_inv * max(0.0, self.failure_time - t)

    def displacement_mm(self, t: float) -> float:
        """True cumulative displacement at ``t`` in mm (continuous and non-decreasing)."""
        if t < self.creep_start:
            return self.initial_displacement_mm
        at_onset = self.initial_displacement_mm + self.creep_velocity_mm_s * (
            self.onset_time - self.creep_start
        )
        if t < self.onset_time:
            return self.initial_displacement_mm + self.creep_velocity_mm_s * (t - self.creep_start)
        t = min(t, self.failure_time - self.FAILURE_CAP_S)
        span = self.failure_time - self.onset_time
        return at_onset + math.log(span / (self.failure_time - t)) / self.a_inv

    def measured_displacement_mm(self, t: float) -> float:
        """Displacement in mm as a sensor reports it: truth plus seeded noise.

        The noise has standard deviation ``noise_mm`` and depends only on ``seed`` and
        ``t`` rounded to the millisecond, so repeated reads at one instant agree.
        """
        truth = self.displacement_mm(t)
        if self.noise_mm == 0:
            return truth
        return truth + self.noise_mm * gaussian_noise(self.seed, t)

    def describe(self) -> dict[str, float | int]:
        """Parameters of the slope, for logs and the demo."""
        return {
            "failure_time": self.failure_time,
            "onset_time": self.onset_time,
            "a_inv": self.a_inv,
            "creep_start": self.creep_start,
            "creep_mm_per_day": self.creep_velocity_mm_s * _SECONDS_PER_DAY,
            "initial_displacement_mm": self.initial_displacement_mm,
            "noise_mm": self.noise_mm,
            "seed": self.seed,
        }


class GnssProjection:
    """GNSS antenna on the slope, moving along the downslope direction.

    ``azimuth_deg`` is the downslope direction clockwise from north; ``dip_deg`` is its
    angle below the horizontal, so ``up_mm`` is negative for a positive dip. Components
    are the slope's measured displacement, so they carry its noise.
    """

    def __init__(self, slope: CreepingSlope, azimuth_deg: float, dip_deg: float) -> None:
        _require_finite("azimuth_deg", azimuth_deg)
        _require(-90.0 <= dip_deg <= 90.0, f"dip_deg must be within [-90, 90], got {dip_deg}")
        self.slope = slope
        self.azimuth_deg = float(azimuth_deg)
        self.dip_deg = float(dip_deg)
        azimuth = math.radians(azimuth_deg)
        dip = math.radians(dip_deg)
        self._east = math.cos(dip) * math.sin(azimuth)
        self._north = math.cos(dip) * math.cos(azimuth)
        self._up = -math.sin(dip)

    def east_mm(self, t: float) -> float:
        """East component of the displacement in mm."""
        return self._east * self.slope.measured_displacement_mm(t)

    def north_mm(self, t: float) -> float:
        """North component of the displacement in mm."""
        return self._north * self.slope.measured_displacement_mm(t)

    def up_mm(self, t: float) -> float:
        """Vertical component of the displacement in mm (negative when moving down)."""
        return self._up * self.slope.measured_displacement_mm(t)


class ExtensometerProjection:
    """Wire extensometer across the scarp: extension is ``gain`` times the displacement."""

    def __init__(self, slope: CreepingSlope, gain: float = 1.0) -> None:
        _require_finite("gain", gain)
        self.slope = slope
        self.gain = float(gain)

    def extension_mm(self, t: float) -> float:
        """Extension of the wire in mm, from the slope's measured displacement."""
        return self.gain * self.slope.measured_displacement_mm(t)


class InclinometerProjection:
    """Dual-axis inclinometer whose tilt grows linearly with the slope's displacement.

    ``mm_per_deg_x`` and ``mm_per_deg_y`` are the displacement that tilts each axis by one
    degree; a negative value tilts that axis the other way.
    """

    def __init__(self, slope: CreepingSlope, mm_per_deg_x: float, mm_per_deg_y: float) -> None:
        for name, value in (("mm_per_deg_x", mm_per_deg_x), ("mm_per_deg_y", mm_per_deg_y)):
            _require(
                math.isfinite(value) and value != 0,
                f"{name} must be finite and non-zero, got {value}",
            )
        self.slope = slope
        self.mm_per_deg_x = float(mm_per_deg_x)
        self.mm_per_deg_y = float(mm_per_deg_y)

    def tilt_x_deg(self, t: float) -> float:
        """Tilt about the x axis in degrees."""
        return self.slope.measured_displacement_mm(t) / self.mm_per_deg_x

    def tilt_y_deg(self, t: float) -> float:
        """Tilt about the y axis in degrees."""
        return self.slope.measured_displacement_mm(t) / self.mm_per_deg_y
