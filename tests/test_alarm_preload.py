"""Preloading the kernels: every kind is covered, and the compiler's pages are handed back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import get_args

from edge_agent.alarm_preload import SLOPE_KINDS, rules_for_kinds, warm_up_rules
from hardware_sim.harness.agent import NUMBA_CACHE
from site_schema.rule_specs import AnySlopeRule, SampleRule

PROBE = """
import json, re
from edge_agent.alarm_preload import preload_kernels
from alarm_engine import AlarmEngine
from site_schema.rule_specs import FailureForecastRule, WaterLevelRule

def llvm_rss_kb():
    # Private pages only: pages another process (this test run's pytest) also maps are
    # not this process's to give back, and cost it nothing extra.
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = "libllvmlite" in line
        elif inside and line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total

preload_kernels("numba")
after_preload = llvm_rss_kb()
engine = AlarmEngine(
    [
        WaterLevelRule(id="creek", channel="c", thresholds=(1.0, 2.0, 3.0, 4.0)),
        # The forecast has a kernel of its own: preloaded too, or LLVM comes back here.
        FailureForecastRule(id="scarp", channel="x", horizons_h=(None, 168.0, 144.0, 48.0)),
    ],
    "numba",
)
changes = engine.push("c", 10.0, 3.5, True)
for hour in range(30):
    engine.push("x", 3600.0 * hour, 0.1 * hour, True)
print(json.dumps({
    "after_preload_kb": after_preload,
    "after_use_kb": llvm_rss_kb(),
    "level": engine.levels()["creek"],
    "changes": len(changes),
}))
"""


def test_one_warm_up_rule_per_kernel_and_slope_kinds_share_one() -> None:
    kinds = [rule.kind for rule in warm_up_rules()]
    assert len(kinds) == len(set(kinds)) == 6
    assert [r.kind for r in rules_for_kinds({"tangent_angle"})] == ["rate_of_rise"]
    assert [r.kind for r in rules_for_kinds({"failure_forecast"})] == ["failure_forecast"]
    assert {r.kind for r in rules_for_kinds({"water_level", "rain_windows"})} == {
        "water_level",
        "rain_windows",
    }
    assert rules_for_kinds({"all_of"}) == []
    # Preloading must stay light (no rule models imported), so it names the slope kinds
    # itself: they must be exactly the kinds of the slope rule specs.
    assert {rule.kind for rule in get_args(AnySlopeRule)} == SLOPE_KINDS


def test_every_rule_kind_a_site_can_name_has_its_kernel_preloaded() -> None:
    # A kind left out compiles on the agent's first reading, polling nothing meanwhile
    # (the failure forecast once did): a new rule kind must come with its warm-up rule.
    for spec in get_args(SampleRule):
        assert rules_for_kinds({spec.kind}), spec.kind


def test_after_preloading_the_compiler_pages_are_released_and_kernels_still_run() -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(NUMBA_CACHE)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(figures)
    # libllvmlite.so maps ~170 MB and loading touches tens of MB of it; afterwards only a
    # few pages of its own stay, and evaluating with the loaded kernels does not bring
    # LLVM back.
    assert figures["after_preload_kb"] < 8 * 1024
    assert figures["after_use_kb"] < 8 * 1024
    assert figures["level"] == 3
    assert figures["changes"] == 1
