"""A failure forecast in a 叫应 call's words, and the county clock they are told in."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleet.call_forecast import forecast_words
from fleet.escalation_config import load_escalation_settings
from fleet.site_forecast import SiteForecast

# 2026-12-06 16:30 UTC is 2026-12-07 00:30 in 北京时间: the date the village reads moves on.
LIKELY = datetime(2026, 12, 6, 16, 30, tzinfo=UTC).timestamp()
EARLIEST = datetime(2026, 12, 6, 9, 5, tzinfo=UTC).timestamp()


def forecast(**changes: object) -> SiteForecast:
    fields: dict[str, object] = {
        "state": "forecast",
        "lead_h": 20.0,
        "failure_t": LIKELY,
        "failure_t_low": EARLIEST,
        "failure_t_high": LIKELY + 9 * 3600,
    }
    fields.update(changes)
    return SiteForecast(**fields)  # type: ignore[arg-type]


def test_the_earliest_and_the_likely_time_are_told_in_beijing_time() -> None:
    words = forecast_words(forecast(), 8.0)
    assert words == "滑坡预测：最早12月6日17:05，最可能12月7日00:30（北京时间）。"  # noqa: RUF001


def test_without_an_earlier_bound_only_the_likely_time_is_told() -> None:
    words = forecast_words(forecast(failure_t_low=None), 8.0)
    assert words == "滑坡预测：约12月7日00:30（北京时间）。"  # noqa: RUF001


@pytest.mark.parametrize("state", ["not_accelerating", "no_forecast_yet", "not_reported"])
def test_no_failure_time_no_words(state: str) -> None:
    assert forecast_words(forecast(state=state, failure_t=None), 8.0) is None


@pytest.mark.parametrize(
    ("offset", "zone", "clock"),
    [
        (5.75, "UTC+5:45", "12月6日22:15"),
        (-3.5, "UTC-3:30", "12月6日13:00"),
        (0, "UTC+0", "12月6日16:30"),
    ],
)
def test_another_county_clock_is_named(offset: float, zone: str, clock: str) -> None:
    words = forecast_words(forecast(failure_t_low=None), offset)
    assert words == f"滑坡预测：约{clock}（{zone}）。"  # noqa: RUF001


def test_the_escalation_file_sets_the_county_clock_within_bounds(tmp_path: Path) -> None:
    path = tmp_path / "escalation.toml"
    path.write_text("tick_s = 1.0\n")
    assert load_escalation_settings(path).utc_offset_h == 8.0
    path.write_text("utc_offset_h = 5.75\n")
    assert load_escalation_settings(path).utc_offset_h == 5.75
    for bad in ("15", "true", '"8"'):
        path.write_text(f"utc_offset_h = {bad}\n")
        with pytest.raises(ValueError, match="utc_offset_h: the county's offset from UTC"):
            load_escalation_settings(path)
