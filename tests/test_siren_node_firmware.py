"""The siren-node firmware as it ships, checked the way the board will run it.

Typed against the MicroPython stubs, compiled by mpy-cross, its register map matching the
agent's profile, and its logic passing its specs under a real MicroPython interpreter (the
WebAssembly port, on Node), both as source and as the compiled .mpy files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.profiles import Table, builtin_profiles
from drivers.siren_node import registers

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "drivers" / "siren_node"
MICROPYTHON = REPO / "tests" / "micropython"
FIRMWARE_MODULES = sorted(FIRMWARE.glob("*.py"))
SPECS = sorted(MICROPYTHON.glob("*_spec.py"))
SETUP_HINT = "./dev setup installs it"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware compiled by mpy-cross, one .mpy per module, as it goes on the board."""
    out = tmp_path_factory.mktemp("siren_node_mpy")
    for module in FIRMWARE_MODULES:
        result = subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-o", str(out / f"{module.stem}.mpy"), str(module)],
            capture_output=True,
            text=True,
            check=False,
        )
        report = (result.stdout + result.stderr).strip()
        if result.returncode != 0 or report:
            pytest.fail(f"mpy-cross on {module.name} (status {result.returncode}):\n{report}")
    return out


def test_every_firmware_module_compiles_with_mpy_cross_to_mpy_version_6(compiled: Path) -> None:
    mpy = sorted(compiled.glob("*.mpy"))
    assert [p.stem for p in mpy] == [m.stem for m in FIRMWARE_MODULES]
    # An .mpy file starts with b"M" and its format version; MicroPython 1.23+ loads 6.
    assert {p.read_bytes()[:2] for p in mpy} == {b"M\x06"}


def test_firmware_type_checks_against_the_micropython_stubs() -> None:
    if not (REPO / "typings" / "machine.pyi").exists():
        pytest.fail(f"the MicroPython stubs are missing from typings/; {SETUP_HINT}")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(FIRMWARE / "mypy.ini")],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"Node.js is missing; {SETUP_HINT}")
    if not (MICROPYTHON / "node_modules" / "@micropython").is_dir():
        pytest.fail(f"tests/micropython/node_modules is missing; {SETUP_HINT} (npm ci)")
    return node


@pytest.mark.parametrize("form", ["source", "mpy"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda path: path.stem)
def test_firmware_logic_passes_its_specs_under_real_micropython(
    spec: Path, form: str, compiled: Path
) -> None:
    firmware = FIRMWARE if form == "source" else compiled
    result = subprocess.run(
        [_node(), str(MICROPYTHON / "run.mjs"), str(firmware), str(spec)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    results = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failures = [
        f"{r['test']}:\n{r.get('detail', '')}" + "\n".join(r.get("output", []))
        for r in results
        if not r["ok"]
    ]
    assert results, f"no results from MicroPython:\n{result.stdout}{result.stderr}"
    assert not failures, "\n".join(failures)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_shipped_profile_describes_the_firmwares_register_map() -> None:
    profile = builtin_profiles()["siren_node"]
    assert profile.default_unit_id == registers.DEFAULT_UNIT_ID
    assert {c.table for c in profile.channels} == {Table.COIL, Table.HOLDING}
    coils = {c.address: c for c in profile.channels if c.table is Table.COIL}
    assert sorted(coils) == list(range(registers.COIL_COUNT))
    assert {a for a, c in coils.items() if c.writable} == set(registers.WRITABLE_COILS)
    holding = [c for c in profile.channels if c.table is Table.HOLDING]
    assert max(c.end for c in holding) < registers.REGISTER_COUNT
    read_only = sorted((c.address, c.width) for c in holding if not c.writable)
    assert read_only == sorted(registers.READ_ONLY_REGISTERS)
    writable = {c.address: c for c in holding if c.writable}
    assert sorted(writable) == sorted(r[0] for r in registers.WRITABLE_REGISTERS)
    for address, power_up, lowest, highest in registers.WRITABLE_REGISTERS:
        channel = writable[address]
        assert channel.width == 1
        if channel.valid_min is None or channel.valid_max is None:
            assert (lowest, highest) == (0, 0xFFFF), channel.name
        else:
            assert channel.to_raw(channel.valid_min) == pytest.approx(lowest), channel.name
            assert channel.to_raw(channel.valid_max) == pytest.approx(highest), channel.name
        assert channel.in_range(channel.to_engineering(power_up)), channel.name
    version = profile.channel("firmware_version")
    assert version.address == registers.REG_FIRMWARE_VERSION
    assert version.to_engineering(registers.FIRMWARE_VERSION) == pytest.approx(1.0)
