"""A compiled kernel never outlives a constant it was compiled with.

numba caches a kernel keyed by the kernel's own source file, and freezes in the constants
it reads from other modules; the engine keys its cache directory by every source file of
the package, so a constant changed elsewhere (``forecast_layout``) compiles afresh. The
test runs a copy of the engine with a real on-disk cache, changes a constant in another
module of the copy, and runs it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

ENGINE = Path(__file__).resolve().parents[1] / "alarm_engine"
PROBE = """
from alarm_engine.kernels import jit
from alarm_engine.probe_value import VALUE


@jit
def probe() -> float:
    return VALUE
"""


def _run_probe(src: Path, cache: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", "from alarm_engine.probe import probe; print(probe())"],
        env=env,
        cwd=src,  # not the repository, whose own alarm_engine would come first
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout.strip())


def test_a_constant_changed_in_another_module_reaches_the_cached_kernel(tmp_path: Path) -> None:
    src = tmp_path / "src"
    engine = src / "alarm_engine"
    shutil.copytree(ENGINE, engine, ignore=shutil.ignore_patterns("__pycache__"))
    (engine / "probe.py").write_text(PROBE)
    (engine / "probe_value.py").write_text("VALUE = 1.0\n")
    cache = tmp_path / "numba-cache"
    assert _run_probe(src, cache) == 1.0
    assert _run_probe(src, cache) == 1.0  # the second start loads the kernel compiled first
    first = sorted(p.name for p in cache.iterdir())
    assert len(first) == 1
    assert list((cache / first[0]).rglob("*probe*.nbi"))  # it was cached, on disk
    (engine / "probe_value.py").write_text("VALUE = 2.0\n")  # probe.py itself untouched
    assert _run_probe(src, cache) == 2.0
    assert len(list(cache.iterdir())) == 2  # the first version's kernels stay for a rollback
