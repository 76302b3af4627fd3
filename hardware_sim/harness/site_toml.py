"""Site files for tests and benches: simulated devices on one Modbus TCP link, as TOML text.

The tests and benches run the agent on the same few devices (the creek village's rain
gauge, creek radar and siren relays) and differ in how often they poll and in the rules,
outputs and tables they add. ``tcp_site`` writes the text once: the ``[site]`` table, the
tables that go before the bus (``[agent]``, ``[uplink]``), the bus ``field`` at
127.0.0.1 with its port left as ``{port}`` (``SimSite`` replaces it; ``str.format`` only
does for a text with no inline table), one ``[[device]]`` table per device, then the rest,
each block after a blank line. Names go in as TOML strings, whatever characters they hold.

Never imported by the production packages; never imports ``tests`` or ``bench``. It only
writes text: whether the site is valid is ``site_schema``'s to say, as for the agent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

#: The one bus of every site written here.
BUS = "field"


@dataclass(frozen=True)
class SiteDevice:
    """A ``[[device]]`` table on the bus ``field``.

    ``channels`` empty polls every readable channel of the profile; ``timeout_s`` None
    and ``unit_id`` None leave the profile's own.
    """

    name: str
    profile: str
    channels: tuple[str, ...] = ()
    unit_id: int | None = None
    timeout_s: float | None = 0.2

    def toml(self, poll_s: float | None) -> str:
        """The device's table, polled every ``poll_s`` (None: the site file's default)."""
        lines = ["[[device]]", f"name = {_string(self.name)}", f"bus = {_string(BUS)}"]
        lines.append(f"profile = {_string(self.profile)}")
        if self.unit_id is not None:
            lines.append(f"unit_id = {self.unit_id}")
        if poll_s is not None:
            lines.append(f"poll_interval_s = {_number(poll_s)}")
        if self.timeout_s is not None:
            lines.append(f"timeout_s = {_number(self.timeout_s)}")
        if self.channels:
            lines.append("channels = [" + ", ".join(map(_string, self.channels)) + "]")
        return "\n".join(lines)


#: The creek village's devices, at the unit ids of ``uplink.storm_station``'s simulators.
RAIN_GAUGE = SiteDevice("rain", "dfrobot_sen0575", ("rain_total",))
CREEK_RADAR = SiteDevice("creek", "hlk_ld8001h", ("water_level",))
SIREN_RELAYS = SiteDevice("relays", "relay_module_8ch", ("relay1", "relay2"))

#: The hourly rain window of the creek village, latched from red.
RAIN_1H_RULE = """[[rule]]
id = "rain_1h"
kind = "rain_windows"
channel = "rain.rain_total"
latch_from = "red"
hold_s = 1800
windows = { "1h" = { blue = 5, yellow = 12, orange = 20, red = 30 } }"""

#: The creek's water level, in millimetres.
CREEK_LEVEL_RULE = """[[rule]]
id = "creek"
kind = "water_level"
channel = "creek.water_level"
thresholds = { blue = 1500, yellow = 2000, orange = 2500, red = 3500 }
hold_s = 600"""


def siren_actuator(test_pattern: str | None = None) -> str:
    """The siren on ``relays``: ``strobe`` on relay 2, ``warble`` on relays 1 and 2."""
    lines = [
        "[[actuator]]",
        'id = "siren"',
        'device = "relays"',
        'patterns = { strobe = ["relay2"], warble = ["relay1", "relay2"] }',
    ]
    if test_pattern is not None:
        lines.append(f"test_pattern = {_string(test_pattern)}")
    return "\n".join(lines)


def tcp_site(
    site_id: str,
    devices: Sequence[SiteDevice],
    *,
    poll_s: float | None = None,
    name: str | None = None,
    before_bus: Sequence[str] = (),
    after_devices: Sequence[str] = (),
) -> str:
    """A site file's text: ``devices`` on the bus ``field`` (port ``{port}``).

    ``poll_s`` is every device's poll interval (None: the site file's default); ``before_bus``
    are tables such as ``[agent]`` and ``[uplink]``; ``after_devices`` rules, outputs and
    the other tables, each a block of TOML. Nothing is checked here: the agent's site
    loader refuses a wrong file with its own message, as it would in the field.
    """
    site = [f"[site]\nid = {_string(site_id)}" + (f"\nname = {_string(name)}" if name else "")]
    bus = f'[[bus]]\nname = "{BUS}"\nkind = "tcp"\nhost = "127.0.0.1"\nport = {{port}}'
    blocks = [
        *site,
        *before_bus,
        bus,
        *(d.toml(poll_s) for d in devices),
        *after_devices,
    ]
    return "\n" + "\n\n".join(block.strip("\n") for block in blocks) + "\n"


def _number(value: float) -> str:
    """A TOML number as a person writes it: 10, not 10.0; 0.2 as 0.2."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _string(text: str) -> str:
    """``text`` as a TOML basic string: JSON's escapes are TOML's, and DEL is escaped too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
