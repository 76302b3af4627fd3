"""Backend selection: numba when present, the reference (one warning) when not.

Results stay correct even with numba's JIT disabled.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One small history per rule family, run in a child process so numba's environment and
# import state can differ from this process.
SCENARIO = textwrap.dedent(
    """
    import json, math, sys
    import numpy as np
    from alarm_engine import *
    from site_schema.rule_specs import *

    T0 = 1_750_000_000.0
    n = 400
    t = T0 + 60.0 * np.arange(n)
    rain = np.cumsum(np.where(np.arange(n) % 7 < 3, 0.4, 0.0)) % 50.0
    level = 1.0 + 2.0 * np.sin(np.arange(n) / 40.0)
    disp = np.cumsum(np.linspace(0.001, 0.2, n))
    good = np.arange(n) % 13 != 0
    rules = [
        RainWindowRule(id="rain", channel="r", counter_modulus=50.0, hold_s=600.0,
                       windows=(RainWindow("1h", 3600.0, (5.0, 10.0, 15.0, 20.0)),)),
        AntecedentRainRule(id="ear", channel="r", decay_per_day=0.8,
                           thresholds=(5.0, 20.0, None, None)),
        IntensityDurationRule(id="id", channel="r",
                              curves=(None, PowerLaw(2.2, -0.44), None, None)),
        WaterLevelRule(id="level", channel="w", thresholds=(1.0, 2.0, 2.5, 2.9), hysteresis=0.1),
        RateOfRiseRule(id="rise", channel="w", window_s=900.0, thresholds=(1.0, 2.0, 3.0, 4.0)),
        DisplacementVelocityRule(id="v", channel="d", window_s=1800.0,
                                 thresholds=(50.0, 100.0, 200.0, 250.0)),
        DisplacementAccelerationRule(id="a", channel="d", window_s=1800.0,
                                     thresholds=(10.0, 100.0, None, None)),
        TangentAngleRule(id="tan", channel="d", window_s=1800.0, creep_rate_mm_day=20.0,
                         thresholds=(None, 45.0, 80.0, 85.0)),
        InverseVelocityRule(id="inv", channel="d", window_s=1800.0, fit_window_s=7200.0,
                            min_r2=0.5, horizons_h=(100.0, 50.0, 10.0, 1.0)),
        CombinationRule(id="any", kind="any_of", members=("rain", "level", "tan")),
    ]
    engine = AlarmEngine(rules, backend=sys.argv[1])
    changes = engine.replay({"r": (t, rain, good), "w": (t, level, good), "d": (t, disp, good)})
    print(json.dumps({"backend": engine.backend,
                      "changes": [[c.rule_id, c.t, c.old, c.new, c.kind, repr(c.metric)]
                                  for c in changes]}))
    """
)


def run(backend: str, env_extra: dict[str, str], prelude: str = "") -> dict:
    env = {**os.environ, **env_extra, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", prelude + SCENARIO, backend],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    return {"stderr": result.stderr, **json.loads(result.stdout.splitlines()[-1])}


@pytest.fixture(scope="module")
def reference():
    return run("reference", {})


def test_the_scenario_exercises_every_rule(reference):
    assert {c[0] for c in reference["changes"]} == {
        "rain",
        "ear",
        "id",
        "level",
        "rise",
        "v",
        "a",
        "tan",
        "inv",
        "any",
    }


def test_numba_with_jit_disabled_still_matches_the_reference(reference):
    pytest.importorskip("numba")
    disabled = run("numba", {"NUMBA_DISABLE_JIT": "1"})
    assert disabled["backend"] == "numba"
    assert disabled["changes"] == reference["changes"]


def test_compiled_numba_matches_the_reference_in_a_fresh_process(reference):
    pytest.importorskip("numba")
    assert run("auto", {})["changes"] == reference["changes"]


# Makes `import numba` fail the way it does on a host without the package.
NO_NUMBA = "import sys\nsys.modules['numba'] = None\n"


def test_auto_falls_back_to_the_reference_with_one_warning_when_numba_is_missing(reference):
    prelude = NO_NUMBA + textwrap.dedent(
        """
        import logging
        logging.basicConfig(level=logging.WARNING)
        from alarm_engine import AlarmEngine
        AlarmEngine([], backend="auto")
        """
    )
    fallback = run("auto", {}, prelude)
    assert fallback["backend"] == "reference"
    assert fallback["changes"] == reference["changes"]
    assert fallback["stderr"].count("numba is not available") == 1


def test_asking_for_numba_without_it_is_an_error():
    with pytest.raises(subprocess.CalledProcessError) as err:
        run("numba", {}, NO_NUMBA)
    assert "alarm backend 'numba' is not available" in err.value.stderr
