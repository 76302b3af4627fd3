"""Backtesting: run a site's rules over a displacement (or any channel) record from a CSV.

Columns: time (ISO 8601 or Unix seconds), value. Reads the file and prints; it never writes
to a store and never touches a bus. Optionally draws the inverse-velocity picture with
matplotlib (an optional extra: ``pip install hazardwatch[plot]``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from alarm_engine import AlarmEngine, LevelChange
from protocol.limits import MAX_TIMESTAMP, MIN_TIMESTAMP
from site_schema.rule_specs import ChannelRule, FailureForecastRule
from site_schema.site_config import SiteConfig


class RecordError(ValueError):
    """The CSV record is unusable; the message names the file, the line and the problem."""


@dataclass(slots=True)
class Backtest:
    """What a replay of one record gave: level changes, and each rule's value snapshot per step."""

    changes: list[LevelChange]
    steps: list[dict[str, Any]] = field(default_factory=list)
    t: Any = None
    x: Any = None


def _time(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{where}: time {text!r} is neither ISO 8601 nor Unix seconds"
        raise RecordError(msg) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_record(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Times and values of a two-column CSV (a header row is optional).

    Raises:
        RecordError: for an unreadable file, a bad row, or times that do not increase.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read the record: {exc}"
        raise RecordError(msg) from None
    times: list[float] = []
    values: list[float] = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"{path}: line {number}"
        if len(row) < 2:
            msg = f"{where}: needs two columns (time, value), got {row!r}"
            raise RecordError(msg)
        if number == 1 and not times:
            try:
                float(row[1])
            except ValueError:
                continue  # a header
        t = _time(row[0].strip(), where)
        try:
            value = float(row[1])
        except ValueError:
            msg = f"{where}: value {row[1]!r} is not a number"
            raise RecordError(msg) from None
        if not math.isfinite(value):
            msg = f"{where}: value must be a finite number"
            raise RecordError(msg)
        if not MIN_TIMESTAMP <= t <= MAX_TIMESTAMP:
            msg = f"{where}: time {row[0].strip()} is outside 2000-2100"
            raise RecordError(msg)
        if times and t <= times[-1]:
            msg = f"{where}: time {row[0].strip()} does not come after the previous row"
            raise RecordError(msg)
        times.append(t)
        values.append(value)
    if not times:
        msg = f"{path}: no rows"
        raise RecordError(msg)
    return np.array(times), np.array(values)


def backtest(
    site: SiteConfig, channel: str, t: np.ndarray, x: np.ndarray, backend: str = "auto"
) -> Backtest:
    """Run the site's rules on ``channel`` over the record, one evaluation step at a time.

    Raises:
        RecordError: when no rule of the site watches ``channel``.
    """
    rules = [r for r in site.rules if isinstance(r, ChannelRule) and r.channel == channel]
    if not rules:
        watched = sorted({r.channel for r in site.rules if isinstance(r, ChannelRule)})
        msg = f"no rule of {site.source} watches '{channel}' (watched: {', '.join(watched)})"
        raise RecordError(msg)
    engine = AlarmEngine(rules, backend)
    step_s = min(getattr(r, "eval_every_s", 0.0) or 3600.0 for r in rules)
    result = Backtest([], t=t, x=x)
    good = np.ones(t.shape[0], dtype=bool)
    edges = np.searchsorted(t, np.arange(t[0] + step_s, t[-1] + step_s, step_s), side="left")
    start = 0
    for end in [*edges.tolist(), t.shape[0]]:
        if end <= start:
            continue
        result.changes += engine.push_many(channel, t[start:end], x[start:end], good[start:end])
        for rule_id, values in engine.metrics().items():
            result.steps.append({"t": float(t[end - 1]), "rule": rule_id, **values})
        start = end
    return result


def forecast_steps(site: SiteConfig, result: Backtest) -> list[dict[str, Any]]:
    """The failure forecasts among the steps, one row per evaluation that changed them."""
    forecast_ids = {r.id for r in site.rules if isinstance(r, FailureForecastRule)}
    rows: list[dict[str, Any]] = []
    last: dict[str, tuple[float, ...]] = {}
    for step in result.steps:
        if step["rule"] not in forecast_ids:
            continue
        key = tuple(v for k, v in step.items() if k not in ("t", "rule"))
        if last.get(step["rule"]) == key:
            continue
        last[step["rule"]] = key
        rows.append(step)
    return rows


def observed_inverse_velocity(
    t: np.ndarray, x: np.ndarray, window_s: float = 6 * 3600.0
) -> tuple[np.ndarray, np.ndarray]:
    """Hourly (time, 1/v in day/mm) from least-squares slopes stamped at their window's centre."""
    centres = np.arange(t[0] + window_s / 2, t[-1] - window_s / 2, 3600.0)
    out_t: list[float] = []
    out_iv: list[float] = []
    for centre in centres:
        inside = (t >= centre - window_s / 2) & (t <= centre + window_s / 2)
        if inside.sum() < 3:
            continue
        slope = np.polyfit(t[inside] - centre, x[inside], 1)[0] * 86400.0
        if slope > 0:
            out_t.append(float(centre))
            out_iv.append(1.0 / slope)
    return np.array(out_t), np.array(out_iv)


def plot_inverse_velocity(site: SiteConfig, result: Backtest, out: Path) -> None:
    """Draw 1/v against time, the fit at the first red (or the last forecast), level bands.

    Raises:
        RecordError: when matplotlib is not installed.
    """
    try:
        import matplotlib  # noqa: PLC0415 - an optional extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        msg = "--plot needs matplotlib: pip install 'hazardwatch[plot]'"
        raise RecordError(msg) from None
    t0 = float(result.t[0])

    def hours(t: Any) -> Any:
        return (np.asarray(t) - t0) / 3600.0

    fig, ax = plt.subplots(figsize=(10, 5))
    obs_t, obs_iv = observed_inverse_velocity(result.t, result.x)
    ax.plot(hours(obs_t), obs_iv, ".", ms=3, color="tab:blue", label="1/v measured (6 h fits)")
    forecast_ids = {r.id for r in site.rules if isinstance(r, FailureForecastRule)}
    colours = {2: "gold", 3: "darkorange", 4: "red"}
    level_t: dict[int, float] = {}
    for change in result.changes:
        if change.rule_id in forecast_ids and change.kind == "rise":
            for level in range(change.old + 1, change.new + 1):
                level_t.setdefault(level, change.t)
    end_h = float(hours(result.t[-1]))
    for level, colour in colours.items():
        if level in level_t:
            ax.axvspan(float(hours(level_t[level])), end_h, color=colour, alpha=0.12, lw=0)
    steps = [r for r in forecast_steps(site, result) if math.isfinite(r["lead_h"])]
    chosen = [r for r in steps if 4 in level_t and r["t"] >= level_t[4]] or steps[-1:]
    if chosen:
        fit = chosen[0]
        p = 1.0 / (fit["alpha"] - 1.0)
        tau = np.linspace(fit["lead_h"] + 168.0, 0.0, 300)
        curve = (1.0 / fit["velocity_mm_day"]) * (tau / fit["lead_h"]) ** p
        fit_h = float(hours(fit["t"])) + fit["lead_h"] - tau
        ax.plot(
            fit_h,
            curve,
            "-",
            color="tab:red",
            label=f"fit at first red (accelerating part), alpha {fit['alpha']:.2f}",
        )
        ax.axvline(float(hours(fit["failure_t"])), color="k", ls="--", label="predicted failure")
        if math.isfinite(fit["failure_t_high"]):
            ax.axvspan(
                float(hours(fit["failure_t_low"])),
                float(hours(fit["failure_t_high"])),
                color="grey",
                alpha=0.3,
                label="its 95 % interval",
            )
    ax.set_xlabel(f"hours after {datetime.fromtimestamp(t0, UTC):%Y-%m-%d %H:%M}Z")
    ax.set_ylabel("inverse velocity (day/mm)")
    top = float(np.percentile(obs_iv, 99)) * 1.2 if obs_iv.size else 1.0
    ax.set_ylim(0, top)
    ax.legend(loc="upper right")
    ax.set_title("Inverse velocity; shaded from when the forecast rose to yellow, orange, red")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
