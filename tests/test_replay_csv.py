"""``edge replay --csv``: a site's rules backtested on a displacement record, as a subprocess."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from hardware_sim.slope_corpus import ORIGIN, quiet_site_year, tertiary_displacement

EDGE = [sys.executable, "-m", "edge_agent.cli"]
EXAMPLE = "edge_agent/examples/slope_road.toml"
CHANNEL = "scarp_extensometer.extension"
HOUR = 3600.0


def edge(*args, cwd=None):
    return subprocess.run(
        [*EDGE, *args], capture_output=True, text=True, timeout=300, check=False, cwd=cwd
    )


@pytest.fixture(scope="module")
def failing_record(tmp_path_factory):
    """A scarp that creeps at 0.8 mm/day and fails 15 days in, sampled every 10 minutes."""
    failure_t = ORIGIN + 15 * 86400.0
    t = np.arange(ORIGIN, failure_t - 300.0, 600.0)
    x = (
        40.0
        + 0.8 / 86400.0 * (t - ORIGIN)
        + tertiary_displacement(failure_t - t, 0.8, 150 * HOUR, 2.0)
    )
    x += np.random.default_rng(1).normal(0.0, 0.02, t.shape[0])
    path = tmp_path_factory.mktemp("record") / "scarp.csv"
    rows = ["time,extension_mm"]
    rows += [
        f"{datetime.fromtimestamp(ti, UTC).isoformat(timespec='seconds')},{xi:.4f}"
        for ti, xi in zip(t, x, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path, failure_t


def _not_json(constant):
    raise AssertionError(f"{constant} is not JSON: a strict parser refuses the line")


def replay_lines(path):
    """``edge replay --csv --json`` of the record with the shipped site: (forecasts, changes)."""
    result = edge("replay", "-c", EXAMPLE, "--csv", str(path), "--channel", CHANNEL, "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line, parse_constant=_not_json) for line in result.stdout.splitlines()]
    return [line["forecast"] for line in lines if "forecast" in line], [
        line for line in lines if "rule" in line
    ]


def test_replay_csv_prints_the_forecasts_and_the_levels_in_order(failing_record):
    path, failure_t = failing_record
    forecasts, changes = replay_lines(path)
    assert forecasts, "a forecast at each evaluation step"
    reds = [c for c in changes if c["rule"] == "slope_forecast" and c["to"] == "red"]
    assert reds, changes
    assert failure_t - reds[0]["t"] >= 24 * HOUR
    assert "predicted failure at" in reds[0]["detail"]
    rises = [c for c in changes if c["rule"] == "slope_forecast" and c["kind"] == "rise"]
    assert [c["to"] for c in rises] == ["yellow", "orange", "red"][-len(rises) :]


def test_replay_csv_says_which_forecasts_passed_the_evidence_test(failing_record):
    path, _ = failing_record
    forecasts, changes = replay_lines(path)
    passed = [f for f in forecasts if f["passes"]]
    set_aside = [f for f in forecasts if not f["passes"]]
    assert passed
    assert set_aside
    assert all(f["set_aside"] is None for f in passed)
    # before the window holds a day of readings there is no forecast, and it says so
    assert set_aside[0]["set_aside"] == "no forecast yet: too few readings"
    # the steady creep before the acceleration shows no evidence of one
    weak = next(f for f in set_aside if f["set_aside"].startswith("evidence "))
    assert weak["set_aside"].endswith(" < 600")
    # the red came from a forecast that passed
    red = next(c for c in changes if c["rule"] == "slope_forecast" and c["to"] == "red")
    assert [f for f in forecasts if f["t"] <= red["t"]][-1]["passes"]
    # in words, a forecast set aside says why
    words = edge("replay", "-c", EXAMPLE, "--csv", str(path), "--channel", CHANNEL)
    assert words.returncode == 0, words.stderr
    marked = [line for line in words.stdout.splitlines() if "; set aside: " in line]
    assert len(marked) == sum(1 for f in set_aside if isinstance(f["lead_h"], float))
    # numbers that are not finite are written as the wire writes them, in strict JSON
    assert set_aside[0]["lead_h"] == "nan"
    # the first forecast that passes is not confirmed yet: three in a row must agree
    assert passed[0]["confirmed_h"] == "inf"
    # the red's forecast step carries the lead its horizon judged
    judged = [f for f in forecasts if f["t"] <= red["t"]][-1]["confirmed_h"]
    assert judged <= 48
    assert f"time in {judged:.1f} h (3 forecasts in a row agree" in red["detail"]


def test_replay_csv_says_which_forecasts_a_refutation_held(tmp_path):
    # Quiet year 3044's sharp seasonal rise (hourly): fits accelerating faster than the
    # rule accepts put the failure hours ahead, the hours passed, and the next fits, alpha
    # back in range and strong, would have confirmed a red. The rule held them for 48 h
    # after the refutation; the backtest once printed them as passing, 22-33 h ahead, with
    # no red to show for it.
    record = quiet_site_year(3044)
    hours = (record.t - record.t[0]) / HOUR
    near = (hours > 7500.0) & (hours < 7960.0)
    path = tmp_path / "rise.csv"
    rows = ["time,extension_mm"]
    rows += [f"{ti:.0f},{xi:.4f}" for ti, xi in zip(record.t[near], record.x[near], strict=True)]
    path.write_text("\n".join(rows) + "\n")
    forecasts, changes = replay_lines(path)
    held = (
        "within 48 h of a refuted forecast (alpha above 2.75; its interval passed with no failure)"
    )
    holds = [f for f in forecasts if f["set_aside"] == held]
    assert holds
    # on their own numbers they pass the evidence test: only the hold set them aside
    assert all(f["evidence"] >= 600 and 1.5 <= f["alpha"] <= 2.75 for f in holds)
    assert min(f["lead_h"] for f in holds) < 48
    # a forecast shown as passing is one the rule counted
    assert all(f["newest_h"] != "inf" for f in forecasts if f["passes"])
    assert not [c for c in changes if c["to"] in ("orange", "red")]
    words = edge("replay", "-c", EXAMPLE, "--csv", str(path), "--channel", CHANNEL)
    assert words.returncode == 0, words.stderr
    assert f"; set aside: {held}" in words.stdout


def test_replay_csv_draws_the_inverse_velocity_plot(failing_record, tmp_path):
    path, _ = failing_record
    out = tmp_path / "iv.png"
    result = edge(
        "replay", "-c", EXAMPLE, "--csv", str(path), "--channel", CHANNEL, "--plot", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "level change(s)" in result.stdout


@pytest.mark.parametrize(
    ("content", "channel", "message"),
    [
        ("time,value\n2026-01-01T00:00:00,1.0\n2026-01-01T00:00:00,1.1\n", CHANNEL, "line 3"),
        ("time,value\n2026-01-01T00:00:00,1.0\n2026-01-01T01:00:00,1.0.5\n", CHANNEL, "line 3"),
        ("time;value\n2026-01-01T00:00:00;1.234,5\n", CHANNEL, "value '1.234,5' is not a number"),
        (
            "time,value\n2026-01-01T00:00:00,\n2026-01-01T01:00:00,NaN\n",
            CHANNEL,
            "no rows with a value",
        ),
        ("time,value\n2026-01-01T00:00:00,abc\n", CHANNEL, "value 'abc' is not a number"),
        ("time,value\nyesterday,1.0\n", CHANNEL, "neither ISO 8601 nor Unix seconds"),
        ("time,value\n1e300,1.0\n", CHANNEL, "outside 2000-2100"),
        ("time,value\nnan,1.0\n", CHANNEL, "outside 2000-2100"),
        ("time,value\n2026-01-01T00:00:00,inf\n", CHANNEL, "value must be a finite number"),
        ("time,value\n2026-01-01T00:00:00,1.0\n", "road_relays.relay1", "no rule of"),
    ],
)
def test_replay_csv_refuses_a_bad_record_with_the_line(tmp_path, content, channel, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = edge("replay", "-c", EXAMPLE, "--csv", str(path), "--channel", channel)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def _export(failing_record, tmp_path, separator, decimal, zone_hours):
    """The record as a logger or spreadsheet writes it: zoneless local times, gaps, resends."""
    path, _ = failing_record
    rows = path.read_text().splitlines()[1:]
    local = timezone(timedelta(hours=zone_hours))
    out = [f"Zeit{separator}Weg (mm)"]
    for number, row in enumerate(rows):
        when, value = row.split(",")
        moment = datetime.fromisoformat(when).astimezone(local).replace(tzinfo=None)
        cell = value.replace(".", decimal)
        if number % 97 == 5:
            cell = "" if number % 2 else "NaN"  # the logger had no reading
        out.append(f"{moment.isoformat(sep=' ')}{separator}{cell}")
        if number % 101 == 7:
            out.append(out[-1])  # a resend
    exported = tmp_path / "export.csv"
    exported.write_text("\ufeff" + "\n".join(out) + "\n")  # with the BOM Excel writes
    return exported


def _reds(result):
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return [c["t"] for c in lines if c.get("rule") == "slope_forecast" and c.get("to") == "red"]


def test_a_spreadsheet_export_in_local_time_backtests_like_the_clean_record(
    failing_record, tmp_path
):
    clean = edge(
        "replay", "-c", EXAMPLE, "--csv", str(failing_record[0]), "--channel", CHANNEL, "--json"
    )
    assert clean.returncode == 0, clean.stderr
    exported = _export(failing_record, tmp_path, ";", ",", 8)
    result = edge(
        "replay", "-c", EXAMPLE, "--csv", str(exported), "--channel", CHANNEL,
        "--utc-offset", "+08:00", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "row(s) without a value left out as missing readings" in result.stderr
    assert "repeated row(s) (same time, same value) read once" in result.stderr
    assert "times without a zone read as UTC+08:00" in result.stderr
    # the same moments, so the red comes at the same time (give or take the gaps' hour)
    assert _reds(clean)
    assert _reds(result)
    assert abs(_reds(result)[0] - _reds(clean)[0]) <= HOUR
    # read as UTC, the same file's red comes eight hours late: the note says why
    as_utc = edge("replay", "-c", EXAMPLE, "--csv", str(exported), "--channel", CHANNEL, "--json")
    assert as_utc.returncode == 0, as_utc.stderr
    assert "give --utc-offset, e.g. +08:00, if the logger kept local time" in as_utc.stderr
    assert abs(_reds(as_utc)[0] - _reds(clean)[0] - 8 * HOUR) <= HOUR


def test_a_tab_separated_record_and_a_bad_utc_offset(failing_record, tmp_path):
    exported = _export(failing_record, tmp_path, "\t", ".", 0)
    result = edge("replay", "-c", EXAMPLE, "--csv", str(exported), "--channel", CHANNEL, "--json")
    assert result.returncode == 0, result.stderr
    assert _reds(result)
    refused = edge(
        "replay", "-c", EXAMPLE, "--csv", str(exported), "--channel", CHANNEL,
        "--utc-offset", "Beijing",
    )  # fmt: skip
    assert refused.returncode != 0
    assert "--utc-offset 'Beijing' must look like +08:00" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
