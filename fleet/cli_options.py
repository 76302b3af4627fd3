"""Options every ``fleet`` subcommand shares (the data directory), declared once.

Pure declarations for typer; this module must never open the data directory or read
anything from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="HAZARDWATCH_FLEET_DIR",
        help="Database, signing key and broker files live here.",
    ),
]
DEFAULT_DATA_DIR = Path("fleet-data")
