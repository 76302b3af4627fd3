"""What a release slot takes from Debian on Raspberry Pi OS 32-bit (armv7l, armv6l).

PyPI has no wheels of numpy and cffi for these machines, and building them on a Pi takes
hours; Debian bookworm ships both (``python3-numpy``, ``python3-cffi``). There a slot's
venv sees the system's site-packages, the release's bundle leaves those two out (its
dependencies are resolved against the system's versions), and pip finds them already
satisfied. This module names the machines and the packages, and says which are missing.

It must never install anything, nor reach apt or an index: it only reads what the
interpreter it is given can import, so the technician's ``apt-get`` stays the one way in.
"""

from __future__ import annotations

import json
import subprocess

#: Machines whose slots take ``DEBIAN_PACKAGES`` from the system (Pi OS 32-bit).
MACHINES = frozenset({"armv7l", "armv6l"})
#: Distribution -> the Debian package that provides it.
DEBIAN_PACKAGES = {"numpy": "python3-numpy", "cffi": "python3-cffi"}


def uses_system_packages(machine: str) -> bool:
    """Whether a slot on ``machine`` is built on the system's site-packages."""
    return machine in MACHINES


def installed_versions(python: str) -> dict[str, str]:
    """The version of each of ``DEBIAN_PACKAGES`` that ``python`` sees (absent: left out)."""
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run(
        [python, "-c", probe, *DEBIAN_PACKAGES], capture_output=True, text=True, check=True
    )
    found: dict[str, str] = json.loads(done.stdout)
    return found


def missing_advice(python: str) -> str | None:
    """The ``apt-get`` line that installs what ``python`` lacks, or None when nothing is."""
    found = installed_versions(python)
    missing = [deb for name, deb in DEBIAN_PACKAGES.items() if name not in found]
    if not missing:
        return None
    return (
        f"Raspberry Pi OS 32-bit takes {', '.join(missing)} from Debian: "
        f"sudo apt-get install -y {' '.join(missing)}"
    )
