"""Print a table of the shipped device profiles without ever cutting a profile's name.

A name is what a site or station file's ``profile =`` takes, so the ``edge`` and
``hwsim`` listings must show it whole. This module only prints the table it is given; it
must never build one, read a profile or change the console's width for good.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def print_uncut(console: Console, table: Table) -> None:
    """Print ``table``, widening ``console`` for it alone if its no-wrap columns need that.

    Narrower than the names need (a pipe is 80 columns), the table grows past the width
    rather than cutting them: the console never folds its lines.
    """
    narrowest = Measurement.get(console, console.options.update_width(1000), table).minimum
    width = console.width
    console.width = max(width, narrowest)
    try:
        console.print(table)
    finally:
        console.width = width
