"""Seeded synthetic displacement records for judging slope-failure warnings.

Two families, each drawn from a seed so that a record can be rebuilt exactly:

- **failure records**: steady creep at ``creep_mm_day`` with an accelerating (tertiary)
  part of the Voight kind superposed, ``v(t) = v_s * (1 + (T / (t_f - t)) ** (1 / (alpha - 1)))``,
  up to the failure time ``t_f``. ``T`` is the length of the tertiary phase: the time before
  failure at which the accelerating part equals the steady creep (the velocity has
  doubled); before that it fades out, as measured creep curves do at the onset of
  acceleration. For ``alpha = 2`` the inverse velocity of the accelerating part is a
  straight line to zero at ``t_f`` (Fukuzono 1985). With ``onset="abrupt"`` the same
  record (same parameters, samples and noise) creeps steadily until ``T`` before failure
  and then accelerates as Voight's law alone, ``v = v_s * (T / (t_f - t)) ** p``: the
  velocity is continuous, its rise starts at once. That is Fukuzono's picture (a straight
  1/v line from the onset) and the form the simulator's creeping slope takes.
- **quiet site-years**: a year of steady creep with rain-driven seasonal accelerations that
  slow down again, a sensor re-installation step, and daily temperature cycles, and no
  failure.

Both carry Gaussian noise, missing samples and occasional outliers. This module only makes
data; it never evaluates a rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

HOUR = 3600.0
DAY = 86400.0
#: Records start here (2026-01-01T00:00Z), so times look like a gateway's.
ORIGIN = 1_767_225_600.0

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SlopeRecord:
    """One displacement record and what is true about it.

    ``failure_t`` is NaN for a record with no failure. ``t`` and ``x`` are the samples a
    gateway would store (missing samples are absent, outliers included).
    """

    name: str
    t: FloatArray
    x: FloatArray
    interval_s: float
    noise_mm: float
    failure_t: float
    params: dict[str, float] = field(default_factory=dict)

    @property
    def fails(self) -> bool:
        """True for a record that ends in failure."""
        return not math.isnan(self.failure_t)


def tertiary_displacement(
    tau_s: FloatArray, creep_mm_day: float, tertiary_s: float, alpha: float
) -> FloatArray:
    """Displacement of the accelerating part at ``tau_s`` seconds before failure (up to a constant).

    It is the integral of ``v_s * (T / tau) ** p`` with ``p = 1 / (alpha - 1)``.
    """
    v_s = creep_mm_day / DAY
    p = 1.0 / (alpha - 1.0)
    if abs(p - 1.0) < 1e-12:
        return np.asarray(-v_s * tertiary_s * np.log(tau_s / tertiary_s), dtype=np.float64)
    scaled = (tau_s / tertiary_s) ** (1.0 - p)
    return np.asarray(v_s * tertiary_s * scaled / (p - 1.0), dtype=np.float64)


def accelerating_part(params: dict[str, float], tau_s: FloatArray) -> FloatArray:
    """A failure record's motion beyond its steady creep, ``tau_s`` seconds before failure.

    Up to a constant; for either onset (``params["abrupt_onset"]`` 1 for abrupt).
    """
    creep, alpha = params["creep_mm_day"], params["alpha"]
    tertiary_s = params["tertiary_h"] * HOUR
    if not params.get("abrupt_onset"):
        return tertiary_displacement(tau_s, creep, tertiary_s, alpha)
    v_s = creep / DAY
    p = 1.0 / (alpha - 1.0)
    inside = np.minimum(tau_s, tertiary_s) / tertiary_s
    if abs(p - 1.0) < 1e-12:
        voight = -v_s * tertiary_s * np.log(inside)
    else:
        voight = v_s * tertiary_s * (1.0 - inside ** (1.0 - p)) / (1.0 - p)
    # steady creep stops counting at the onset: the Voight motion replaces it
    return np.asarray(voight + v_s * (np.minimum(tau_s, tertiary_s) - tertiary_s), dtype=np.float64)


def tertiary_signal(record: SlopeRecord, lead_h: float, window_s: float = 14 * DAY) -> float:
    """How plainly a failure record's acceleration shows ``lead_h`` hours before failure.

    The accelerating part of the record's true motion at the samples the record holds in
    the ``window_s`` ending then, after the best steady creep and daily cycle are taken
    out of it, as a sum of squares over the noise variance (the noncentrality of a test
    for acceleration with the noise known). It grows with the creep rate, the tertiary
    phase and the readings held, and falls with the noise; missing samples and a
    telemetry gap late in the window take from it. It is what the record carries, not
    what any rule makes of it; zero for a record that does not fail.
    """
    if not record.fails:
        return 0.0
    end = record.failure_t - lead_h * HOUR
    t = record.t[(record.t > end - window_s) & (record.t <= end)]
    if t.shape[0] < 5:  # no more readings than the 4 terms taken out: nothing shows
        return 0.0
    tail = accelerating_part(record.params, record.failure_t - t)
    turn = 2.0 * math.pi * (t - ORIGIN) / DAY
    creep_and_cycle = np.stack([np.ones_like(t), (t - t[0]) / DAY, np.cos(turn), np.sin(turn)], 1)
    fitted, *_ = np.linalg.lstsq(creep_and_cycle, tail, rcond=None)
    left = tail - creep_and_cycle @ fitted
    return float(left @ left / record.noise_mm**2)


def _sample_times(
    rng: np.random.Generator, start: float, end: float, interval_s: float, missing: float
) -> FloatArray:
    n = int((end - start) // interval_s)
    t = start + interval_s * np.arange(n + 1, dtype=np.float64)
    t = t[t < end]
    keep = np.asarray(rng.random(t.shape[0]) >= missing, dtype=np.bool_)
    if rng.random() < 0.5 and t.shape[0] > 100:
        # a telemetry gap of a few hours, as after a flat battery or a lost link
        gap_start = rng.uniform(start, end - 12 * HOUR)
        keep = keep & ~((t >= gap_start) & (t < gap_start + rng.uniform(2, 8) * HOUR))
    return t[keep]


def _outliers(rng: np.random.Generator, x: FloatArray, noise_mm: float, rate: float) -> FloatArray:
    hit = rng.random(x.shape[0]) < rate
    size = rng.uniform(10.0, 30.0, x.shape[0]) * noise_mm * rng.choice([-1.0, 1.0], x.shape[0])
    return np.asarray(np.where(hit, x + size, x), dtype=np.float64)


def failure_record(
    seed: int, interval_s: float | None = None, onset: str = "gradual"
) -> SlopeRecord:
    """A creeping slope that accelerates to failure, drawn from ``seed``.

    ``onset`` is ``"gradual"`` (the accelerating part superposed on the creep) or
    ``"abrupt"`` (steady creep, then Voight's law alone); the two records of a seed share
    every parameter, sample time and noise draw.

    Raises:
        ValueError: for another ``onset``.
    """
    if onset not in ("gradual", "abrupt"):
        msg = f"onset must be 'gradual' or 'abrupt', not {onset!r}"
        raise ValueError(msg)
    rng = np.random.default_rng([11, seed])
    interval = interval_s if interval_s is not None else float(rng.choice([600.0, 3600.0]))
    creep = float(math.exp(rng.uniform(math.log(0.1), math.log(2.0))))
    alpha = float(rng.uniform(1.5, 2.5))
    tertiary_s = float(math.exp(rng.uniform(math.log(50.0), math.log(400.0)))) * HOUR
    noise = float(rng.uniform(0.02, 0.1))
    before_s = tertiary_s + rng.uniform(10.0, 20.0) * DAY
    failure_t = ORIGIN + before_s + rng.uniform(0.0, interval)
    t = _sample_times(rng, ORIGIN, failure_t, interval, missing=rng.uniform(0.0, 0.05))
    params = {
        "creep_mm_day": creep,
        "alpha": alpha,
        "tertiary_h": tertiary_s / HOUR,
        "abrupt_onset": 1.0 if onset == "abrupt" else 0.0,
    }
    x = 100.0 + creep / DAY * (t - ORIGIN) + accelerating_part(params, failure_t - t)
    x -= x[0] - 100.0
    cycle_mm = rng.uniform(0.0, 1.0) * noise
    x += cycle_mm * np.sin(2 * math.pi * (t - ORIGIN) / DAY + rng.uniform(0, 2 * math.pi))
    x += rng.normal(0.0, noise, t.shape[0])
    x = _outliers(rng, x, noise, rate=rng.uniform(0.0, 0.003))
    params["cycle_mm"] = cycle_mm
    name = f"failure-{seed}" if onset == "gradual" else f"failure-{seed}-abrupt"
    return SlopeRecord(name, t, x, interval, noise, failure_t, params)


def _seasonal_velocity_factor(
    rng: np.random.Generator, t: FloatArray, end: float
) -> tuple[FloatArray, list[float]]:
    """1 + the seasonal accelerations: each rises smoothly to a peak, then decays."""
    factor = np.ones(t.shape[0])
    peaks: list[float] = []
    for _ in range(int(rng.integers(1, 3))):
        peak_t = rng.uniform(ORIGIN + 30 * DAY, end - 30 * DAY)
        rise_s = rng.uniform(5.0, 25.0) * DAY
        decay_s = rng.uniform(10.0, 45.0) * DAY
        gain = rng.uniform(1.0, 6.0)
        rising = (t > peak_t - rise_s) & (t <= peak_t)
        # raised cosine up to the peak, exponential slow-down after it
        phase = (t[rising] - (peak_t - rise_s)) / rise_s
        factor[rising] += gain * 0.5 * (1.0 - np.cos(math.pi * phase))
        after = t > peak_t
        factor[after] += gain * np.exp(-(t[after] - peak_t) / decay_s)
        peaks.append(gain)
    return factor, peaks


def _quiet_draws(
    seed: int, interval_s: float | None
) -> tuple[np.random.Generator, float, float, float, float, FloatArray]:
    """Quiet year ``seed``'s draws before its seasonal accelerations, which come next.

    Returns the generator after them, the sampling interval, creep rate, noise, end and
    sample times.
    """
    rng = np.random.default_rng([23, seed])
    interval = interval_s if interval_s is not None else float(rng.choice([600.0, 3600.0]))
    creep = float(math.exp(rng.uniform(math.log(0.1), math.log(2.0))))
    noise = float(rng.uniform(0.02, 0.1))
    end = ORIGIN + 365 * DAY
    t = _sample_times(rng, ORIGIN, end, interval, missing=rng.uniform(0.0, 0.05))
    return rng, interval, creep, noise, end, t


def quiet_seasonal_factor(seed: int, at: FloatArray) -> FloatArray:
    """Quiet year ``seed``'s creep-rate factor (1 + its seasonal accelerations) at ``at``.

    The same accelerations ``quiet_site_year(seed)`` moves by, evaluated at any times: a
    study can take the year's motion without its samples, noise, cycle or step.
    """
    rng, _, _, _, end, _ = _quiet_draws(seed, None)
    factor, _ = _seasonal_velocity_factor(rng, at, end)
    return factor


def quiet_site_year(seed: int, interval_s: float | None = None) -> SlopeRecord:
    """A year of a slow-moving slope that never fails, drawn from ``seed``."""
    rng, interval, creep, noise, end, t = _quiet_draws(seed, interval_s)
    factor, peaks = _seasonal_velocity_factor(rng, t, end)
    dt = np.diff(t, prepend=t[0])
    x = 100.0 + np.cumsum(creep / DAY * factor * dt)
    cycle_mm = rng.uniform(0.2, 3.0) * noise
    x += cycle_mm * np.sin(2 * math.pi * (t - ORIGIN) / DAY + rng.uniform(0, 2 * math.pi))
    step_mm = 0.0
    if rng.random() < 0.5:
        # the sensor was re-installed: a jump, then the same creep from a new zero
        step_t = rng.uniform(ORIGIN + 20 * DAY, end - 20 * DAY)
        step_mm = float(rng.uniform(5.0, 50.0) * rng.choice([-1.0, 1.0]))
        x = np.where(t >= step_t, x + step_mm, x)
    x += rng.normal(0.0, noise, t.shape[0])
    x = _outliers(rng, x, noise, rate=rng.uniform(0.0, 0.003))
    params = {
        "creep_mm_day": creep,
        "cycle_mm": cycle_mm,
        "step_mm": step_mm,
        "seasonal_gain": max(peaks),
    }
    return SlopeRecord(f"quiet-{seed}", t, x, interval, noise, math.nan, params)
