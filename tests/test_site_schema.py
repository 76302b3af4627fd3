"""The site-file schema stands alone: the fleet checks a site file without gateway code.

Run in a fresh interpreter, so what is loaded is what importing the schema really brings.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: What the fleet's site-file check must never load: gateway code, a JIT, a Modbus stack.
NEVER = ("edge_agent", "hardware_sim", "numba", "pymodbus", "serial")

CHECK = """
import sys
import {module}
from site_schema.site_config import parse_site_text
from site_schema.site_errors import SiteConfigError
try:
    parse_site_text('[site]\\nid = "x"\\n', "site.toml")
except SiteConfigError as exc:
    print(exc)
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({never!r})))
"""


@pytest.mark.parametrize("module", ["site_schema.site_config", "fleet.site_validation"])
def test_checking_a_site_file_loads_no_gateway_code_jit_or_modbus_stack(module: str) -> None:
    code = CHECK.format(module=module, never=NEVER)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    refusal, loaded = done.stdout.splitlines()
    assert refusal == "site.toml: a site needs at least one [[bus]]"
    assert loaded == "[]"
