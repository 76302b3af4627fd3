"""Release bundles for the Pi's machines, and the pieces of ``./dev pi-check`` that need no root.

The check itself (debootstrap, qemu, the agent in an arm64 root) is ``bench/pi_check.py``;
``test_pi_check_smoke`` runs a short one where a cached root makes that quick.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hardware_sim.harness.pi_root import PiRootError, debian_mirror
from ota.bundle import TARGETS, BundleError, Target, build_release

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from pi_check import guide_block  # noqa: E402


def test_an_aarch64_bundle_asks_pip_for_every_manylinux_tag_bookworm_satisfies() -> None:
    options = TARGETS["aarch64"].pip_options()
    platforms = [options[i + 1] for i, o in enumerate(options) if o == "--platform"]
    assert platforms[0] == "manylinux_2_36_aarch64"
    assert "manylinux_2_28_aarch64" in platforms  # numba's and numpy's wheels
    assert "manylinux_2_17_aarch64" in platforms
    assert platforms[-2:] == ["manylinux2014_aarch64", "linux_aarch64"]
    assert options[options.index("--python-version") + 1] == "3.11"
    assert options.count("--abi") == 3


def test_an_armv7l_bundle_is_refused_here_because_its_markers_differ(tmp_path: Path) -> None:
    armhf = Target("armv7l", (2, 36), "3.11")
    with pytest.raises(BundleError, match=r"numba is left out on armv7l.*build it on a machine"):
        build_release(REPO, tmp_path / "out", "0.1.1", "0.1.0", target=armhf)
    assert not (tmp_path / "out").exists()


def test_fleet_release_build_names_the_targets_it_knows() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "release", "build", str(REPO), "--out", "x",
         "--version", "0.1.1", "--min-upgrade-from", "0.1.0", "--target", "armv7l"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--target 'armv7l': not a machine bundles are built for here" in done.stderr
    assert "targets: aarch64, x86_64; armv7l is built on an armv7l machine" in done.stderr


def test_the_root_comes_from_the_mirror_the_host_already_uses(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://ftp.example.org/debian bookworm main\n"
    )
    assert debian_mirror(tmp_path) == "http://ftp.example.org/debian"
    (tmp_path / "sources.list").write_text("deb http://ftp.example.org/ubuntu jammy main\n")
    with pytest.raises(PiRootError, match="no Debian bookworm archive"):
        debian_mirror(tmp_path)


def test_the_check_reads_the_guides_install_block_and_refuses_a_guide_without_it(
    tmp_path: Path,
) -> None:
    assert "edge update install" in guide_block()
    plain = tmp_path / "guide.md"
    plain.write_text("# Guide\n\n```sh\nls\n```\n")
    with pytest.raises(PiRootError, match="no ```sh block after <!-- pi-check: install -->"):
        guide_block(guide=plain)
