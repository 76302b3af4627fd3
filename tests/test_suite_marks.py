"""The suite's marks (tests/conftest.py MARKS) name files and tests that exist.

A renamed file or test would silently lose its mark and run in ``./dev test --quick``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import MARKS

TESTS = Path(__file__).parent
ENTRIES = sorted((mark, entry) for mark, entries in MARKS.items() for entry in entries)


@pytest.mark.parametrize(("mark", "entry"), ENTRIES)
def test_each_marked_file_or_test_exists(mark: str, entry: str) -> None:
    file, _, test = entry.partition("::")
    path = TESTS / file
    assert path.is_file(), f"{mark}: no {file}"
    if test:
        assert re.search(rf"^(async )?def {re.escape(test)}\(", path.read_text(), re.M), (
            f"{mark}: {file} has no test {test}"
        )
