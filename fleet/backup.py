"""``fleet backup``: a consistent copy of the fleet's database, whichever backend holds it.

SQLite: the standard library's online backup API copies the file page by page from one
read transaction, so ingest and the console go on meanwhile and the copy is one moment's
state; the copy is then checked (``PRAGMA quick_check``). PostgreSQL: ``pg_dump`` in its
custom format (restore with ``pg_restore``), itself one consistent snapshot.

The copy holds password and token hashes and every reading: it is created readable by its
owner only (0600), in a temporary file renamed into place when complete, and an existing
file is never replaced. This module must never put a database password on a command line
(``ps`` shows it) or in a message: ``pg_dump`` gets it through ``PGPASSWORD``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from fleet.database_url import check_database, redacted


class BackupError(RuntimeError):
    """The backup could not be made; the message says why, without secrets."""


def backup_sqlite(db_path: Path, out: Path) -> None:
    """Copy the SQLite database at ``db_path`` to ``out`` (0600, never over a file)."""
    if not db_path.exists():
        raise BackupError(f"no fleet database at {db_path}: check --data-dir")
    with _new_private_file(out) as tmp:
        source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)
        try:
            copy = sqlite3.connect(tmp)
            try:
                source.backup(copy)
                verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                copy.close()
        finally:
            source.close()
        if verdict != "ok":
            raise BackupError(f"the copy failed its integrity check: {verdict}")


def backup_postgres(url: str, out: Path) -> None:
    """``pg_dump`` the database at ``url`` to ``out`` in the custom format (0600)."""
    check_database(url)
    pg_dump = postgres_tool("pg_dump")
    parts = urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}@" if parts.username else ""
        url = urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
    with _new_private_file(out) as tmp:
        done = subprocess.run(
            [pg_dump, "--format=custom", f"--file={tmp}", f"--dbname={url}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            said = done.stderr.strip().replace(env.get("PGPASSWORD") or "\0", "***")
            raise BackupError(f"pg_dump of {redacted(url)} failed: {said}")


def postgres_tool(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` (Debian layout), else the one on PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    found = str(versions[-1]) if versions else shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed: apt-get install postgresql-client")
    return found


@contextlib.contextmanager
def _new_private_file(out: Path) -> Iterator[Path]:
    """A temporary 0600 file beside ``out``, linked to ``out`` once the block succeeds."""
    if out.exists():
        raise BackupError(f"{out} exists: a backup never replaces a file, choose another name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise BackupError(f"{out} appeared meanwhile: not replaced") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
