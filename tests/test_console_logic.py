"""The console's JavaScript logic under Node: level names, bands, window rain, 叫应 state.

``tests/console_logic_spec.mjs`` imports the very modules the browser loads and asserts
on their pure functions; this runs it (Node is part of the dev set-up).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SPEC = Path(__file__).with_name("console_logic_spec.mjs")
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="needs Node.js 18+ (./dev setup installs it)")
def test_the_consoles_logic_holds_under_node() -> None:
    assert NODE is not None
    # The console's modules are plain .js files with no package.json: load them as ES
    # modules, as the browser does.
    result = subprocess.run(
        [NODE, "--experimental-default-type=module", str(SPEC)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "console logic: ok" in result.stdout
