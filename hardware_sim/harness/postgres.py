"""A real PostgreSQL for tests and benches: a throwaway cluster in a temporary directory.

``running_postgres`` runs Debian's ``initdb`` and ``postgres`` (``/usr/lib/postgresql/N``)
on a free loopback port, as an unprivileged user when the tests run as root (PostgreSQL
refuses to run as root), and removes the cluster afterwards. ``PostgresCluster.fresh_schema``
gives each test its own empty schema, reached through a URL whose ``search_path`` names it.

The cluster trusts every local connection and, unless ``durable``, does not fsync: it is
for tests only. Never imported by the production packages; never imports ``tests`` or
``bench``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.waiting import wait_until

#: The superuser of the throwaway cluster (no password: it trusts loopback connections).
SUPERUSER = "postgres"
DATABASE = "hazardwatch"


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` directory (Debian layout), or None."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def postgres_installed() -> bool:
    """Whether ``initdb`` and ``postgres`` are installed (Debian's ``postgresql`` package)."""
    bin_dir = postgres_bin_dir()
    return bin_dir is not None and (bin_dir / "initdb").exists()


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the cluster as: an unprivileged account when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no unprivileged account (postgres, nobody) exists")


@dataclass
class PostgresCluster:
    """A running throwaway cluster: its directory, port and server process."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes]
    _schemas: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        """The test database as the superuser."""
        return self.database_url(DATABASE)

    def database_url(self, database: str) -> str:
        """A database of the cluster as the superuser."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        """What the server logged so far."""
        log_file = self.directory / "postgres.log"
        return log_file.read_text(errors="replace") if log_file.exists() else ""

    def psql(self, sql: str, database: str = DATABASE) -> None:
        """Run statements on a database of the cluster (autocommit)."""
        with psycopg.connect(self.database_url(database), autocommit=True) as conn:
            conn.execute(sql.encode())

    def accepts(self) -> bool:
        """Whether the server accepts connections yet."""
        try:
            with psycopg.connect(self.database_url("postgres")):
                return True
        except psycopg.OperationalError:  # still starting
            return False

    @contextlib.contextmanager
    def fresh_schema(self) -> Iterator[str]:
        """A new empty schema; yields a URL whose connections use only it. Dropped after."""
        name = f"t{os.getpid()}_{next(self._schemas)}"
        self.psql(f"CREATE SCHEMA {name}")
        try:
            yield f"{self.url}?options=-csearch_path%3D{name}"
        finally:
            self.psql(f"DROP SCHEMA {name} CASCADE")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_postgres(*, durable: bool = False, settings: Sequence[str] = ()) -> PostgresCluster:
    """``initdb`` a cluster in a new temporary directory and start it; return once it accepts.

    The directory is made outside any test's private temporary directory, since the
    unprivileged server must be able to enter it. ``settings`` are more ``name=value``
    server settings (a bench's production-like sizes), applied after the defaults here.
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    run_as = _run_as()
    directory = Path(tempfile.mkdtemp(prefix="hazardwatch-pg-"))
    data = directory / "data"
    if run_as is not None:
        os.chown(directory, *run_as)
    uid, gid = run_as if run_as is not None else (None, None)
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        user=uid,
        group=gid,
    )
    port = free_port()
    options = [
        "-c",
        "listen_addresses=127.0.0.1",
        "-p",
        str(port),
        "-c",
        f"unix_socket_directories={directory}",
        "-c",
        "max_connections=200",
        "-c",
        "shared_buffers=64MB",
    ]
    if not durable:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        options += ["-c", "full_page_writes=off"]
    for setting in settings:
        options += ["-c", setting]
    log_file = (directory / "postgres.log").open("wb")
    process = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), *options],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        user=uid,
        group=gid,
    )
    log_file.close()
    cluster = PostgresCluster(directory, port, process)
    try:
        wait_until(
            lambda: process.poll() is None and port_open(port) and cluster.accepts(),
            30,
            "PostgreSQL to accept connections",
        )
        cluster.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
    except BaseException:
        log = cluster.log()
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise AssertionError(f"PostgreSQL did not start:\n{log}") from None
    return cluster


@contextlib.contextmanager
def running_postgres(
    *, durable: bool = False, settings: Sequence[str] = ()
) -> Iterator[PostgresCluster]:
    """``start_postgres`` as a context manager that always stops it and removes its files."""
    cluster = start_postgres(durable=durable, settings=settings)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)
