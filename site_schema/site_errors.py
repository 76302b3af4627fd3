"""The error every site-file validator raises: it names the file, the item and the problem."""

from __future__ import annotations

from pathlib import Path


class SiteConfigError(ValueError):
    """The site file is invalid; the message names the file, the item and the problem."""

    def __init__(self, source: str | Path, problem: str, item: str | None = None) -> None:
        self.source = str(source)
        self.item = item
        self.problem = problem
        where = f"{self.source}: {item}" if item else self.source
        super().__init__(f"{where}: {problem}")
