"""The version of HazardWatch that is running: the installed package's, as its release set it.

A release bundle sets ``[project] version`` and the slot installs that wheel, so the
installed distribution's metadata is the one true version; a constant in the source would
go stale after the first update. Never guesses: outside an installed package it says so.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "hazardwatch"


def own_version() -> str:
    """The installed ``hazardwatch`` version, or ``0+unknown`` when running uninstalled."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
