"""The packages' one-way flow, checked: a forbidden import fails here, naming the file.

drivers -> edge_agent -> protocol (MQTT) -> fleet, with ``ota`` beside them and
``hardware_sim`` (simulators, and the harness tests and benches share) outside; the
site-file schema (``site_schema``) and the alarm engine (``alarm_engine``) are imported by
both sides and import neither. Read from
the source with ``ast`` (every import, lazy ones inside functions too), so nothing is
imported to check it.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PROJECT = (
    "alarm_engine",
    "drivers",
    "edge_agent",
    "fleet",
    "protocol",
    "site_schema",
    "ota",
    "hardware_sim",
    "bench",
    "tests",
)
PRODUCTION = (
    "alarm_engine",
    "drivers",
    "edge_agent",
    "fleet",
    "protocol",
    "site_schema",
    "ota",
    "hardware_sim",
)

#: (package, package it must never import)
FORBIDDEN = {
    *(
        ("drivers", p)
        for p in ("alarm_engine", "edge_agent", "fleet", "hardware_sim", "site_schema")
    ),
    ("fleet", "edge_agent"),
    # The site-file schema is imported by both sides, so it imports neither.
    *(("site_schema", p) for p in ("alarm_engine", "edge_agent", "fleet", "ota", "hardware_sim")),
    # The alarm engine runs at the gateway and at the fleet: it knows neither side, nor the
    # Modbus stack; it takes its rules from site_schema and its words from protocol.
    *(("alarm_engine", p) for p in ("edge_agent", "fleet", "drivers", "ota", "hardware_sim")),
    # Simulators and the harness (hardware_sim.harness) run the real parts from outside.
    *((p, "hardware_sim") for p in ("edge_agent", "fleet", "ota")),
    *(("protocol", p) for p in PROJECT if p != "protocol"),
    *((p, q) for p in PRODUCTION for q in ("tests", "bench")),
    ("bench", "tests"),
}

#: From ``drivers``, the site-file schema may import plain settings and profiles only:
#: never the Modbus runtime (``drivers.bus``, ``drivers.poller``) and what it brings.
SCHEMA_DRIVERS = frozenset(
    {
        "drivers.bus_config",
        "drivers.codec",
        "drivers.device_config",
        "drivers.profiles",
        "drivers.toml_schema",
        "drivers.tomlfile",
    }
)
#: Third-party modules neither the site-file schema nor those drivers modules may import:
#: the fleet validates site files with it and must not load a JIT compiler or a Modbus stack.
SCHEMA_NEVER = frozenset({"numba", "pymodbus", "serial", "aiomqtt", "amqtt", "fastapi"})


def module_names(path: Path) -> set[str]:
    """Every module ``path`` imports (dotted, as written), anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def imports(path: Path) -> set[str]:
    """Top-level project packages ``path`` imports, anywhere in the file."""
    return {n.split(".")[0] for n in module_names(path) if n.split(".")[0] in PROJECT}


def module_path(module: str) -> Path:
    """The source file of a project module."""
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@functools.cache  # read every file once per run, not once per test
def crossings() -> frozenset[tuple[str, str]]:
    found = set()
    for package in PROJECT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imports(path):
                if (package, target) in FORBIDDEN:
                    found.add((path.relative_to(ROOT).as_posix(), target))
    return frozenset(found)


def test_no_package_imports_one_it_must_never_import() -> None:
    # No exceptions: the fleet checks site files with site_schema, not the gateway's code.
    assert crossings() == set()


def test_the_site_schema_takes_plain_settings_and_profiles_only_from_drivers() -> None:
    wrong = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in sorted((ROOT / "site_schema").rglob("*.py"))
        for name in module_names(path)
        if name.split(".")[0] == "drivers" and name not in SCHEMA_DRIVERS
    }
    assert wrong == set()


def test_what_the_site_schema_imports_brings_no_jit_and_no_modbus_stack() -> None:
    # Followed through the drivers modules it may import, so none of them can bring one.
    files = [*sorted((ROOT / "site_schema").rglob("*.py")), *map(module_path, SCHEMA_DRIVERS)]
    wrong = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in files
        for name in module_names(path)
        if name.split(".")[0] in SCHEMA_NEVER
        or (name.split(".")[0] == "drivers" and name not in SCHEMA_DRIVERS)
    }
    assert wrong == set()


#: All the alarm engine may import besides the standard library and itself.
ENGINE_MAY_IMPORT = frozenset({"numba", "numpy", "protocol", "site_schema"})


def test_the_alarm_engine_imports_only_the_schema_protocol_and_numerics() -> None:
    # The fleet loads it as it is, so it must bring nothing of either side nor any I/O stack.
    wrong = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in sorted((ROOT / "alarm_engine").rglob("*.py"))
        for name in module_names(path)
        if name.split(".")[0] not in {*ENGINE_MAY_IMPORT, "alarm_engine"}
        and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert wrong == set()


@pytest.mark.parametrize("package", PROJECT)
def test_the_check_reads_every_package(package: str) -> None:
    assert list((ROOT / package).rglob("*.py")), package


def test_a_bench_importing_the_test_harness_is_a_crossing(tmp_path: Path) -> None:
    # The harness benches share with tests is in hardware_sim.harness; tests/ is not theirs.
    bench = tmp_path / "bench_like.py"
    bench.write_text(
        "from hardware_sim.harness.ports import free_port\n"
        "def later():\n    from tests.callans_parts import SmtpInbox\n"
    )
    assert imports(bench) == {"hardware_sim", "tests"}
    assert ("bench", "tests") in FORBIDDEN
    assert ("bench", "hardware_sim") not in FORBIDDEN


#: Storage backends: the only fleet modules that may import a database driver or a backend.
BACKENDS = ("fleet/sqlite_", "fleet/postgres")
#: Modules above the storage seam that still reach a backend, each with its reason.
KNOWN_BELOW_SEAM = {
    # The one place that picks the backend for the fleet's settings.
    "fleet/service.py",
    # fleet backup copies each backend's database with that backend's own tool.
    "fleet/backup.py",
    # fleet migrate reads a SQLite fleet and writes it into PostgreSQL, table by table.
    "fleet/migrate.py",
    # SQLite's own part: the 叫应 engine's data_version watch, handed out by
    # SQLiteRepository (open_alarm_watch).
    "fleet/alarm_watch.py",
    # The SL 651 centre keeps its station registry in the fleet's SQLite file (issue 15),
    # not behind the storage interface yet.
    "fleet/sl651_centre.py",
    "fleet/sl651_stations.py",
}
DRIVERS = ("sqlite3", "psycopg", "psycopg_pool")


def _storage_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {
        name
        for name in found
        if name.split(".")[0] in DRIVERS or name.startswith(("fleet.sqlite_", "fleet.postgres"))
    }


def test_nothing_above_the_storage_seam_imports_a_database_or_a_backend() -> None:
    # Routers, ingest, enrollment, rollouts and 叫应 see the protocols of fleet/repository.py
    # and fleet/escalation_store.py only; the domain rules there never know a database.
    reaching = set()
    for path in sorted((ROOT / "fleet").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if not name.startswith(BACKENDS) and _storage_imports(path):
            reaching.add(name)
    assert reaching == KNOWN_BELOW_SEAM


def test_no_script_beside_the_packages_shadows_one() -> None:
    """``python bench/x.py`` puts ``bench/`` first on the import path.

    A script named like a package of the project (``bench/alarm_engine.py``) would be
    imported in that package's place, and the bench would fail or measure the wrong code.
    """
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    for folder in ("bench", "tests"):
        shadows = {p.stem for p in (ROOT / folder).glob("*.py")} & packages
        assert not shadows, f"{folder}/ has scripts named like packages: {sorted(shadows)}"
