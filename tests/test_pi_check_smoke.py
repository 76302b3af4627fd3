"""CI's short Pi check: the release bundle installed by the guide's own block on arm64, one poll.

``./dev pi-check`` (bench/pi_check.py) is the whole check: a storm, alarms, the siren coil,
armhf too; it takes minutes under emulation and a first debootstrap takes more. This test
runs its ``--smoke`` on arm64 only where that is quick: as root, with qemu-user-static and
the arm64 root already built and cached (``./dev pi-check`` builds it). Elsewhere it is
skipped, saying why, and CI never waits on a debootstrap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hardware_sim.harness.pi_root import ROOTS, STAMP, SUITE

REPO = Path(__file__).resolve().parents[1]
CACHED_ROOT = ROOTS / f"{SUITE}-arm64" / STAMP


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the Pi check needs root (chroot, mount)"
    if shutil.which("qemu-aarch64-static") is None or shutil.which("debootstrap") is None:
        return "no qemu-user-static or debootstrap (./dev pi-check installs them)"
    if not CACHED_ROOT.is_file():
        return f"no cached arm64 root at {CACHED_ROOT.parent} (./dev pi-check builds it once)"
    return None


@pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")
@pytest.mark.timeout(1200)
def test_the_bundle_installs_as_the_guide_says_and_polls_every_device_on_arm64(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "pi_check.py"), "--arch", "arm64", "--smoke",
         "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=1100, check=False,
    )  # fmt: skip
    result = json.loads(done.stdout.splitlines()[-1])["arm64"]
    assert done.returncode == 0, result.get("error") or done.stderr[-3000:]
    assert result["passed"] is True
    assert result["root_cached"] is True
    # creek_village.toml polls 11 channels of five devices; --once exits 0 only if all answered.
    assert result["readings"] >= 11
