"""Backtesting: run a site's rules over a displacement (or any channel) record from a CSV.

Columns: time (ISO 8601 or Unix seconds), value, as loggers and spreadsheets export them
(``,``, ``;`` or tab separated; empty or NaN values are gaps). Reads the file and prints;
it never writes to a store and never touches a bus. Optionally draws the inverse-velocity
picture with matplotlib (an optional extra: ``pip install hazardwatch[plot]``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from alarm_engine import AlarmEngine, LevelChange
from alarm_engine.details import FORECAST_VALUES
from alarm_engine.reference_forecast import held_aside, set_aside
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


#: Value cells that mean "no reading" in logger exports: the row is a gap, not an error.
MISSING_VALUES = frozenset({"", "nan", "na", "n/a", "null", "none", "-", "--"})


@dataclass(frozen=True, slots=True)
class Record:
    """A record as read: times and values, and what was left out or assumed on the way."""

    t: np.ndarray
    x: np.ndarray
    zone: timezone = UTC
    missing: int = 0
    repeated: int = 0
    zoneless: bool = False

    def notes(self) -> list[str]:
        """What a technician should know about how the file was read."""
        said = []
        if self.missing:
            said.append(f"{self.missing} row(s) without a value left out as missing readings")
        if self.repeated:
            said.append(f"{self.repeated} repeated row(s) (same time, same value) read once")
        if self.zoneless:
            said.append(
                f"times without a zone read as {self.zone.tzname(None)}"
                " (give --utc-offset, e.g. +08:00, if the logger kept local time)"
            )
        return said


def parse_utc_offset(text: str) -> timezone:
    """``+08:00``, ``-0530`` or ``0`` as a zone; raises ``RecordError`` for anything else."""
    cleaned = text.strip()
    if cleaned in ("0", "Z", "z", "UTC"):
        return UTC
    try:
        offset = datetime.strptime(cleaned, "%z").utcoffset()
    except ValueError:
        offset = None
    if offset is None or abs(offset.total_seconds()) > 14 * 3600:
        msg = f"--utc-offset {text!r} must look like +08:00 or -05:30 (at most 14 h)"
        raise RecordError(msg)
    return timezone(offset)


def _time(text: str, where: str, zone: timezone) -> tuple[float, bool]:
    """Seconds since the epoch, and whether the text carried no zone of its own."""
    try:
        return float(text), False
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{where}: time {text!r} is neither ISO 8601 nor Unix seconds"
        raise RecordError(msg) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone).timestamp(), True
    return moment.timestamp(), False


def _dialect(lines: list[str]) -> tuple[str, bool]:
    """The column separator, and whether values may write a decimal comma (``12,5``).

    A spreadsheet set to a decimal comma exports with ``;`` (or a tab) between columns;
    with either, a comma in a value can only be a decimal one.
    """
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for separator in (";", "\t"):
            if separator in line:
                return separator, True
        break
    return ",", False


def _number(text: str, decimal_comma: bool) -> float:
    """A cell as a number; raises ``ValueError`` for one that is not."""
    return float(text.strip().replace(",", ".") if decimal_comma else text)


def _value(text: str, where: str, decimal_comma: bool) -> float | None:
    """The reading, or None for a cell that says there was none."""
    if text.strip().lower() in MISSING_VALUES:
        return None
    try:
        value = _number(text, decimal_comma)
    except ValueError:
        msg = f"{where}: value {text!r} is not a number"
        raise RecordError(msg) from None
    if not math.isfinite(value):
        msg = f"{where}: value must be a finite number"
        raise RecordError(msg)
    return value


def read_record(path: Path, zone: timezone = UTC) -> Record:
    """Times and values of a two-column CSV (a header row is optional).

    Columns are separated by ``,``, or by ``;`` or a tab (values may then write a decimal
    comma). Times without a zone are read in ``zone``. A row whose value cell is empty or
    says NaN, NA or null is a missing reading and is left out; a row repeated exactly
    (same time, same value, as a logger that resends writes) is read once. Both are
    counted in the record's notes.

    Raises:
        RecordError: for an unreadable file, a bad row, or times that do not increase.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read the record: {exc}"
        raise RecordError(msg) from None
    lines = text.splitlines()
    separator, decimal_comma = _dialect(lines)
    times: list[float] = []
    values: list[float] = []
    missing = repeated = 0
    zoneless = False
    for number, row in enumerate(csv.reader(lines, delimiter=separator), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"{path}: line {number}"
        if len(row) < 2:
            msg = f"{where}: needs two columns (time, value), got {row!r}"
            raise RecordError(msg)
        if number == 1 and not times:
            try:
                _number(row[1], decimal_comma)
            except ValueError:
                if row[1].strip().lower() not in MISSING_VALUES:
                    continue  # a header
        t, naive = _time(row[0].strip(), where, zone)
        if not MIN_TIMESTAMP <= t <= MAX_TIMESTAMP:
            msg = f"{where}: time {row[0].strip()} is outside 2000-2100"
            raise RecordError(msg)
        value = _value(row[1], where, decimal_comma)
        zoneless = zoneless or naive
        if value is None:
            missing += 1
            continue
        if times and t == times[-1] and value == values[-1]:
            repeated += 1
            continue
        if times and t <= times[-1]:
            msg = f"{where}: time {row[0].strip()} does not come after the previous row"
            raise RecordError(msg)
        times.append(t)
        values.append(value)
    if not times:
        msg = f"{path}: no rows with a value"
        raise RecordError(msg)
    return Record(np.array(times), np.array(values), zone, missing, repeated, zoneless)


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
    """The failure forecasts among the steps, one row per evaluation that changed them.

    Each row also says whether the forecast counted (``passes``) and, if not, why
    (``set_aside``): only a forecast that counted can raise a level. Whether it counted
    is the rule's own answer (its snapshot's ``newest_h`` is finite), never worked out
    again here: a forecast that passes the evidence test on its numbers may still have
    been held after a refuted one (``held_aside``).
    """
    rules = {r.id: r for r in site.rules if isinstance(r, FailureForecastRule)}
    rows: list[dict[str, Any]] = []
    last: dict[str, tuple[float, ...]] = {}
    for step in result.steps:
        rule = rules.get(step["rule"])
        if rule is None:
            continue
        key = tuple(v for k, v in step.items() if k not in ("t", "rule"))
        if last.get(step["rule"]) == key:
            continue
        last[step["rule"]] = key
        passes = math.isfinite(step["newest_h"])
        why = None
        if not passes:
            numbers = tuple(float(step[name]) for name in FORECAST_VALUES)
            why = set_aside(numbers, rule) or held_aside(rule)
        rows.append(step | {"passes": passes, "set_aside": why})
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
    """Draw 1/v against time, the fit at the first red (or the last that passed), level bands.

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
    steps = [r for r in forecast_steps(site, result) if r["passes"]]
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
