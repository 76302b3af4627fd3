"""The consoles every ``edge`` command prints through, and its one way to report an error.

Messages name TOML items such as ``[[bus]]`` and ``[device]``, which Rich would take for
markup and drop, so an error is always escaped; and they are never wrapped, because a
message cut at 80 columns in a log or a pipe no longer matches what a script greps for.
Never prints anything but what it is given, and never prints JSON that a strict parser
refuses.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

# Soft wrap: a line longer than the terminal stays one line (the terminal folds it on
# screen; a pipe or a log keeps it whole).
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr, verbatim, and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=code)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr, verbatim; the command carries on."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)


def print_json(data: Any) -> None:
    """Print ``data`` as strict JSON on stdout: an infinite or NaN number as a string.

    A metric such as a forecast's lead is infinite while no failure is in sight; Python
    would write ``Infinity``, which ``jq`` and JavaScript refuse. ``"inf"`` and ``"nan"``
    are what the fleet's wire carries too.
    """
    from protocol.payloads import finite_json  # noqa: PLC0415 - pydantic only when printing JSON

    console.print_json(data=finite_json(data), allow_nan=False)


def write_json_line(data: Any) -> None:
    """``print_json``'s strict JSON as one compact line on stdout, for JSON-lines output."""
    from protocol.payloads import finite_json  # noqa: PLC0415 - pydantic only when printing JSON

    sys.stdout.write(json.dumps(finite_json(data), allow_nan=False) + "\n")
