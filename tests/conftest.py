"""Shared fixtures (a socat pty pair standing in for an RS485 cable) and the suite's marks.

Each test file is marked by what it runs, so a developer can leave the slow parts out
(``./dev test --quick`` runs ``-m "not e2e and not crash and not slow"``; CI runs all).
A file of quick tests with one end-to-end test in it names that test (``FILE::TEST``):

- ``e2e``: the real agent, fleet, broker or browser as processes, end to end;
- ``crash``: processes SIGKILLed at chosen points and started again;
- ``slow``: long runs (API fuzzing, benches' smoke runs, building release bundles,
  enrollment against a running fleet).
"""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from hardware_sim.harness.agent import NUMBA_CACHE
from hardware_sim.harness.postgres import PostgresCluster, postgres_installed, running_postgres
from hardware_sim.pty_link import PtyPair

MARKS = {
    "e2e": {
        "test_agent_e2e.py",
        "test_agent_restart_level.py",
        "test_agent_slope_e2e.py",
        "test_config_ota.py",
        "test_console_browser.py",
        # `fleet ingest --database` processes on mosquitto and PostgreSQL, one SIGKILLed.
        "test_postgres_ingest.py",
        # `fleet serve` as a process with a live feed open, stopped by SIGTERM (5 s grace).
        "test_console_api.py::test_fleet_serve_stops_on_sigterm_while_a_console_listens",
        "test_demo.py",
        "test_full_disk.py",
        "test_release_e2e.py",
        "test_rollout_mosquitto.py",
        "test_siren_node_agent.py",
        "test_sl651_rules_e2e.py",
        "test_uplink_exactly_once.py",
        "test_uplink_reconnect.py",
        "test_uplink_tls.py",
        "test_village_call.py",
    },
    "crash": {
        "test_callans_crash.py",
        "test_chaos_smoke.py",
        "test_fleet_crash.py",
        # Two `fleet serve` replicas on mosquitto; the 叫应 lease's holder SIGKILLed.
        "test_fleet_replicas.py",
        # `fleet migrate` SIGKILLed midway, then run again to the end.
        "test_fleet_migrate.py::test_a_migration_killed_midway_and_run_again_equals_one_clean_run",
        "test_ota_crash.py",
    },
    "slow": {
        "test_bench_console.py",
        "test_bench_escalation.py",
        "test_bench_postgres.py",
        "test_bench_scale.py",
        "test_enroll.py",
        # An 8 s broker outage, in real time: ingest's backoff must not outlast it.
        "test_fleet_ingest.py::test_ingest_is_back_within_seconds_of_a_broker_restart_after_an_outage",
        "test_ota_slots.py",
        # Issue 14's 60 s broker outage under three PostgreSQL ingest workers, in real time.
        "test_postgres_ingest.py::test_three_workers_store_each_reading_once_across_a_broker_outage",
        "test_rest_schemathesis.py",
        # Builds a release bundle and installs it twice into venv slots.
        "test_update_install.py",
        # The bundle installed in an arm64 root under qemu (minutes; only with a cached root).
        "test_pi_check_smoke.py",
    },
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its file, or by its own name in its file (see MARKS)."""
    for item in items:
        name = getattr(item, "originalname", item.name)  # without parameters
        for mark, entries in MARKS.items():
            if item.path.name in entries or f"{item.path.name}::{name}" in entries:
                item.add_marker(mark)


@pytest.fixture(scope="session")
def _numba_cache_warm() -> None:
    """Compile every alarm kernel into the agents' numba cache, once per test run."""
    subprocess.run(
        [sys.executable, "-m", "edge_agent.alarm_preload"],
        env={**os.environ, "NUMBA_CACHE_DIR": str(NUMBA_CACHE)},
        check=True,
        timeout=900,
    )


@pytest.fixture(autouse=True)
def _kernels_compiled_before_agents_start(request: pytest.FixtureRequest) -> None:
    # In a clean clone the first agent would compile its kernels at start, tens of seconds
    # on a loaded machine, while a test's simulated storm (on a fast clock that is
    # already running) goes by unseen. Tests that start agents get a warm cache first.
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("crash"):
        request.getfixturevalue("_numba_cache_warm")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the run; each test takes a fresh schema of it."""
    if not postgres_installed():
        pytest.fail("PostgreSQL is not installed (./dev setup installs Debian's postgresql)")
    with running_postgres() as cluster:
        yield cluster


@pytest.fixture
def pty_pair() -> Iterator[PtyPair]:
    """Two linked pseudo-terminals; the simulator opens device_end, clients agent_end."""
    with PtyPair() as pair:
        yield pair
