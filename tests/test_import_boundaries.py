"""The packages' one-way flow, checked: a forbidden import fails here, naming the file.

drivers -> edge_agent -> protocol (MQTT) -> fleet, with ``ota`` beside them and
``hardware_sim`` (simulators, and the harness tests and benches share) outside. Read from
the source with ``ast`` (every import, lazy ones inside functions too), so nothing is
imported to check it.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PROJECT = ("drivers", "edge_agent", "fleet", "protocol", "ota", "hardware_sim", "bench", "tests")
PRODUCTION = ("drivers", "edge_agent", "fleet", "protocol", "ota", "hardware_sim")

#: (package, package it must never import)
FORBIDDEN = {
    *(("drivers", p) for p in ("edge_agent", "fleet", "hardware_sim")),
    ("fleet", "edge_agent"),
    # Simulators and the harness (hardware_sim.harness) run the real parts from outside.
    *((p, "hardware_sim") for p in ("edge_agent", "fleet", "ota")),
    *(("protocol", p) for p in PROJECT if p != "protocol"),
    *((p, q) for p in PRODUCTION for q in ("tests", "bench")),
    ("bench", "tests"),
}

#: Known crossings, each with its reason; a new one fails the test.
KNOWN = {
    # The fleet checks a site file with the gateway's own parser before signing it, until
    # the site-file schema moves to a package both sides import.
    ("fleet/site_validation.py", "edge_agent"),
}


def imports(path: Path) -> set[str]:
    """Top-level project packages ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PROJECT)
    return found


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
    assert crossings() - KNOWN == set()


def test_each_known_crossing_is_still_there_or_leaves_the_list() -> None:
    # When a known crossing is removed, so must its entry be: the list stays the truth.
    assert KNOWN - crossings() == set()


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
    # SQLite's own parts: the 叫应 engine's data_version watch and the live feed's reads,
    # handed out by SQLiteRepository (open_alarm_watch, live_changes).
    "fleet/alarm_watch.py",
    "fleet/live_changes.py",
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
