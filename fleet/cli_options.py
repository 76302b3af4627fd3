"""Options every ``fleet`` subcommand shares (data directory, database), declared once.

Declarations for typer and the check of a ``--database`` value. This module must never
open the data directory or read anything from it, and never print a database password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleet.database_url import DatabaseUrlError, check_database

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="HAZARDWATCH_FLEET_DIR",
        help="Database, signing key and broker files live here.",
    ),
]
DEFAULT_DATA_DIR = Path("fleet-data")

Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="HAZARDWATCH_DATABASE",
        help="PostgreSQL URL, e.g. postgresql://fleet@db/hazardwatch (default: fleet.sqlite "
        "in the data directory; release files stay in the data directory either way).",
        show_envvar=True,
    ),
]


def checked_database(url: str | None, *, reachable: bool = False) -> str | None:
    """``url`` once it is a usable PostgreSQL URL (``None``: SQLite), else a usage error.

    With ``reachable``, also connect once, so a command refuses an unreachable database
    with libpq's reason (never the password) rather than a traceback.
    """
    if url is None:
        return None
    try:
        url = check_database(url)
    except DatabaseUrlError as exc:
        raise typer.BadParameter(str(exc), param_hint="--database") from None
    if reachable:
        # Only a command that opens the database pays for importing the service.
        from fleet.service import DatabaseUnreachableError, check_reachable  # noqa: PLC0415

        try:
            check_reachable(url)
        except DatabaseUnreachableError as exc:
            raise typer.BadParameter(str(exc), param_hint="--database") from None
    return url
