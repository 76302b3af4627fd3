"""Warming a new slot's kernels before the switch: the site's kernels, and only those.

A real ``python -c`` in a slot whose interpreter is this one, compiling into a fresh
numba cache. Each kernel is seconds of a Pi's CPU, so a site without a failure forecast
does not pay for the forecast's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edge_agent.updater import warm_kernels


def _slot(tmp_path: Path) -> Path:
    """A slot whose ``bin/python`` is this test run's interpreter, with its packages."""
    slot = tmp_path / "slot"
    (slot / "bin").mkdir(parents=True)
    python = slot / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return slot


def _compiled(cache: Path) -> set[str]:
    """The kernel modules with an index in ``cache``: 'kernels', 'forecast_kernels' ..."""
    return {index.name.split(".")[0] for index in cache.rglob("*.nbi")}


def test_a_new_slot_gets_the_kernels_its_site_runs_on_and_no_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    site = tmp_path / "site.toml"
    site.write_text('[[rule]]\nid = "creek"\nkind = "water_level"\n')
    seconds = warm_kernels(_slot(tmp_path), site_config=site)
    assert seconds is not None
    assert seconds > 0
    assert _compiled(cache) == {"kernels"}  # the level kernel's module, not the forecast's


def test_without_a_cache_directory_nothing_is_warmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    site = tmp_path / "site.toml"
    site.write_text('[[rule]]\nid = "creek"\nkind = "water_level"\n')
    assert warm_kernels(_slot(tmp_path), site_config=site) is None
