"""The gateway's own site file: read from its disk, and its serial ports looked up there.

Agent-side only: the schema and every check both sides share are ``site_schema``; this
module adds what only the gateway can do, read a local file and see its own ports. It
never opens a port.
"""

from __future__ import annotations

import os.path
from pathlib import Path

from drivers.bus_config import SerialBusConfig
from drivers.tomlfile import read_toml
from site_schema.site_config import SiteConfig, parse_site
from site_schema.site_errors import SiteConfigError


def load_site(path: str | Path) -> SiteConfig:
    """Load and validate a site file.

    Raises:
        SiteConfigError: when the file is missing, is not TOML, or is invalid.
    """
    path = Path(path)
    data = read_toml(path, "site file", SiteConfigError)
    # read_toml has checked it is UTF-8; the text is only for naming lines in errors.
    text = path.read_text(encoding="utf-8", errors="replace") if "include" in data else None
    return parse_site(data, str(path), path.parent, text)


def absent_serial_ports(site: SiteConfig) -> list[str]:
    """One message per serial bus whose device file does not exist on this machine.

    Checked where the file is used, never where it is parsed: the fleet validates a
    configuration for a gateway whose ports it cannot see. Looks the path up only; never
    opens it.
    """
    return [
        f"{site.source}: bus '{bus.name}': serial device {bus.device} does not exist"
        for bus in site.buses
        if isinstance(bus, SerialBusConfig) and not os.path.exists(bus.device)
    ]
