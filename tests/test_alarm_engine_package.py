"""The ``alarm_engine`` package loads its engine (and numpy) on first use, not on import."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import alarm_engine
from alarm_engine import LevelChange
print("numpy" in sys.modules, "alarm_engine.engine" in sys.modules)
from alarm_engine import AlarmEngine, Series
from alarm_engine.engine import AlarmEngine as Engine, Series as EngineSeries
print("numpy" in sys.modules, AlarmEngine is Engine, Series is EngineSeries)
try:
    alarm_engine.Nothing
except AttributeError as exc:
    print(exc)
"""


def test_the_engine_and_numpy_load_when_first_asked_for() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "False False",
        "True True True",
        "module 'alarm_engine' has no attribute 'Nothing'",
    ]
