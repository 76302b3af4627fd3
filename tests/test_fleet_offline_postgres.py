"""The fleet's offline commands on PostgreSQL: ``--database`` or ``HAZARDWATCH_DATABASE``.

Each command runs as the operator runs it (``python -m fleet.cli`` in a subprocess) on a
fresh schema of a real PostgreSQL cluster; what it stored is read back through a
repository opened on the same URL, and the SQLite file in ``--data-dir`` is never created.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fleet.broker_files import PASSWORD_FILE
from fleet.postgres_repository import PostgresRepository
from fleet.repository import NewGateway, Role
from hardware_sim.harness.postgres import PostgresCluster
from protocol import OfflineBundle

ROSTER = (
    "site_id,tier,name,role,mobile,email,webhook\n"
    "creek-village,village,王建国,群测群防员,+8613812345678,wang@village.example.cn,\n"
)


def fleet(*args: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``fleet ARGS``; ``database`` goes in HAZARDWATCH_DATABASE, else it is unset."""
    env = {k: v for k, v in os.environ.items() if k != "HAZARDWATCH_DATABASE"}
    if database is not None:
        env["HAZARDWATCH_DATABASE"] = database
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def said(done: subprocess.CompletedProcess[str]) -> str:
    """What the command told the user, without the box it drew round it."""
    return " ".join(done.stderr.replace("│", " ").split())


def test_an_api_token_created_with_database_authenticates_on_that_database(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    data_dir = ("--data-dir", str(tmp_path))
    with postgres.fresh_schema() as url:
        done = fleet(
            "apitoken", "create", "--name", "first-admin", "--role", "admin",
            *data_dir, "--database", url,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        listed = fleet("apitoken", "list", *data_dir, "--database", url)
        repository = PostgresRepository(url)
        try:
            token = repository.api_token_for_secret(done.stdout.strip(), time.time())
        finally:
            repository.close()
    assert token is not None
    assert (token.name, token.role) == ("first-admin", Role.ADMIN)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{token.id}\tfirst-admin\tadmin\texpires 20")
    assert not (tmp_path / "fleet.sqlite").exists()


def test_an_enrollment_token_created_with_database_is_redeemed_there(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    data_dir = ("--data-dir", str(tmp_path))
    with postgres.fresh_schema() as url:
        done = fleet("token", "create", "--site", "creek-village", *data_dir, "--database", url)
        assert done.returncode == 0, done.stderr
        repository = PostgresRepository(url)
        try:
            gateway = repository.redeem_enrollment_token(
                done.stdout.strip(),
                NewGateway("gw-aaaaaaaaaa", "k" * 44, "$7$x", None, None),
                time.time(),
            )
        finally:
            repository.close()
        broker = fleet("broker-config", *data_dir, "--database", url)
    assert gateway.site_id == "creek-village"
    assert broker.returncode == 0, broker.stderr
    assert "1 gateways" in broker.stderr  # the gateway enrolled on PostgreSQL
    assert "gw-aaaaaaaaaa:" in (tmp_path / "broker" / PASSWORD_FILE).read_text()
    assert not (tmp_path / "fleet.sqlite").exists()


def test_an_offline_bundle_written_with_database_is_redeemed_there(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    out = tmp_path / "enroll.json"
    with postgres.fresh_schema() as url:
        done = fleet(
            "token", "bundle", "--site", "ridge", "--out", str(out),
            "--data-dir", str(tmp_path), database=url,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        bundle = OfflineBundle.model_validate_json(out.read_text())
        repository = PostgresRepository(url)
        try:
            gateway = repository.redeem_enrollment_token(
                bundle.token,
                NewGateway("gw-bbbbbbbbbb", "k" * 44, "$7$x", None, None),
                time.time(),
            )
        finally:
            repository.close()
    assert gateway.site_id == "ridge"
    assert not (tmp_path / "fleet.sqlite").exists()


def test_the_roster_is_imported_and_shown_on_the_database_named_by_the_env_var(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    data_dir = ("--data-dir", str(tmp_path))
    csv = tmp_path / "roster.csv"
    csv.write_text(ROSTER, encoding="utf-8")
    with postgres.fresh_schema() as url:
        imported = fleet("roster", "import", str(csv), *data_dir, database=url)
        shown = fleet("roster", "show", "creek-village", *data_dir, database=url)
        repository = PostgresRepository(url)
        try:
            names = [p.name for p in repository.escalation.roster("creek-village")]
        finally:
            repository.close()
        # The SQLite file of the same data directory knows nobody: nothing landed there.
        elsewhere = fleet("roster", "show", "creek-village", *data_dir)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "creek-village: 1 person(s)\n"
    assert shown.returncode == 0, shown.stderr
    assert "王建国" in shown.stdout
    assert names == ["王建国"]
    assert elsewhere.returncode == 1
    assert "has nobody on its roster" in elsewhere.stderr


def test_a_bad_or_unreachable_database_is_refused_naming_database_without_the_password(
    tmp_path: Path,
) -> None:
    data_dir = ("--data-dir", str(tmp_path))
    not_postgres = fleet("token", "create", "--site", "creek-village", *data_dir,
                         "--database", "mysql://fleet:s3cret@db/hw")  # fmt: skip
    no_name = fleet("roster", "show", "creek-village", *data_dir,
                    database="postgresql://fleet:s3cret@db.example:5432")  # fmt: skip
    unreachable = fleet("apitoken", "create", "--name", "a", "--role", "admin", *data_dir,
                        database="postgresql://fleet:s3cret@127.0.0.1:9/hazardwatch")  # fmt: skip
    assert (not_postgres.returncode, no_name.returncode, unreachable.returncode) == (2, 2, 2)
    assert "--database" in said(not_postgres)
    assert "is not a postgresql:// URL" in said(not_postgres)
    assert "names no database" in said(no_name)
    assert "cannot connect" in said(unreachable)
    assert "fleet:***@127.0.0.1:9" in said(unreachable).replace(" ", "")
    for done in (not_postgres, no_name, unreachable):
        assert "s3cret" not in said(done).replace(" ", "")
        assert done.stdout == ""  # no token was printed
    assert not (tmp_path / "fleet.sqlite").exists()
