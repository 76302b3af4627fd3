"""``edge update install``: a release bundle from a USB stick, as the guide installs it.

A bundle is built from this tree (``ota.bundle``, the wheel cache keeps it offline after the
first build) and installed with the real ``edge`` CLI into a slot tree in a temporary
directory; the evidence is the slot tree itself and ``edge update status``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ota.bundle import WHEELS_DIR, build_release
from ota.manifest import ReleaseManifest
from ota.slots import SUPERVISOR_FILE, SlotError, SlotTree
from ota.system_packages import DEBIAN_PACKAGES, installed_versions

REPO = Path(__file__).resolve().parents[1]
WHEEL_CACHE = REPO / ".cache" / "ota-wheels"
EDGE = [sys.executable, "-m", "edge_agent.cli"]


def edge(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [*EDGE, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ReleaseManifest]]:
    out = tmp_path_factory.mktemp("stick") / "hazardwatch-0.1.1"
    manifest = build_release(REPO, out, "0.1.1", "0.1.0", WHEEL_CACHE)
    yield out, manifest
    shutil.rmtree(out.parent, ignore_errors=True)


def test_a_bundle_installs_offline_and_once(
    bundle: tuple[Path, ReleaseManifest], tmp_path: Path
) -> None:
    out, _ = bundle
    root = tmp_path / "opt-hazardwatch"
    first = edge("update", "install", out, "--root", root, "--no-compile")
    again = edge("update", "install", out, "--root", root, "--no-compile")
    status = edge("update", "status", "--root", root, "--json")
    assert first.returncode == 0, first.stderr
    assert "release 0.1.1 installed in" in first.stdout
    assert first.stdout.rstrip().endswith("current")
    assert (root / "current").resolve() == root / "slots" / "0.1.1"
    assert (root / SUPERVISOR_FILE).is_file()
    # What the guide copies out of the slot: the udev rule and the unit file are shipped.
    shipped = next((root / "current" / "lib").glob("python3*/site-packages/edge_agent"))
    assert (shipped / "udev" / "99-hazardwatch-rs485.rules").is_file()
    assert (shipped / "systemd" / "hazardwatch-edge-slots.service").is_file()
    ran = subprocess.run(
        [root / "current" / "bin" / "edge", "profiles"], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0
    assert "relay_module_8ch" in ran.stdout
    assert (again.returncode, again.stdout.strip()) == (0, "release 0.1.1 is already current")
    state = json.loads(status.stdout)
    assert state["committed"]["version"] == "0.1.1"
    assert state["pending"] is None


def test_a_tampered_bundle_is_refused_before_anything_is_installed(
    bundle: tuple[Path, ReleaseManifest], tmp_path: Path
) -> None:
    out, manifest = bundle
    stick = tmp_path / "hazardwatch-0.1.1"
    shutil.copytree(out, stick)
    wheel = stick / WHEELS_DIR / next(f.name for f in manifest.files if f.name.startswith("typer"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    root = tmp_path / "opt-hazardwatch"
    refused = edge("update", "install", stick, "--root", root, "--no-compile")
    missing = edge("update", "install", tmp_path / "nothing", "--root", root)
    assert refused.returncode == 2
    assert f"cannot install {stick}" in refused.stderr
    assert f"{wheel.name}: sha256 is" in refused.stderr
    assert not (root / "current").exists()
    assert not (root / "slots" / "0.1.1").exists()
    assert missing.returncode == 2
    assert "manifest.json: not a release manifest" in missing.stderr


def test_on_pi_os_32_bit_the_slot_takes_numpy_and_cffi_from_the_system(
    bundle: tuple[Path, ReleaseManifest], tmp_path: Path
) -> None:
    out, manifest = bundle
    base = sys._base_executable  # the interpreter slots are made from (the venv's base)
    if set(installed_versions(base)) != set(DEBIAN_PACKAGES):
        pytest.skip(f"{base} lacks numpy or cffi: it cannot stand in for Pi OS 32-bit's Python")
    root = tmp_path / "opt-hazardwatch"
    tree = SlotTree(root, compile_bytecode=False, machine="armv7l")
    tree.install(manifest, out / WHEELS_DIR)
    slot = tree.slot("0.1.1")
    assert "include-system-site-packages = true" in (slot / "pyvenv.cfg").read_text()
    # pip found them satisfied: not installed again in the slot, imported from the system.
    site = next((slot / "lib").glob("python3*/site-packages"))
    assert not list(site.glob("numpy*"))
    assert not list(site.glob("cffi*"))
    where = subprocess.run(
        [slot / "bin" / "python", "-c", "import numpy, cffi; print(numpy.__file__, cffi.__file__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(slot) not in where.stdout
    # Elsewhere a slot stays on its own packages.
    other = SlotTree(tmp_path / "opt-64", compile_bytecode=False, machine="aarch64")
    other.install(manifest, out / WHEELS_DIR)
    cfg = (other.slot("0.1.1") / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg


def test_on_pi_os_32_bit_missing_debian_packages_are_named_with_the_apt_line(
    bundle: tuple[Path, ReleaseManifest], tmp_path: Path
) -> None:
    out, manifest = bundle
    bare = "/usr/bin/python3"  # Debian's own Python, without python3-numpy or python3-cffi
    if not Path(bare).exists() or installed_versions(bare):
        pytest.skip(f"{bare} is absent or has numpy or cffi: no bare system Python here")
    root = tmp_path / "opt-hazardwatch"
    tree = SlotTree(root, python=bare, compile_bytecode=False, machine="armv7l")
    with pytest.raises(SlotError) as refused:
        tree.install(manifest, out / WHEELS_DIR)
    assert str(refused.value) == (
        "installing 0.1.1 needs what the system lacks: Raspberry Pi OS 32-bit takes "
        "python3-numpy, python3-cffi from Debian: "
        "sudo apt-get install -y python3-numpy python3-cffi"
    )
    assert not tree.slot("0.1.1").exists()
    assert not (root / "current").exists()
