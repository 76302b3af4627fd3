"""What a site file makes the sirens and broadcast do: relay actuators, player, actions.

Validated data only (``site_schema.site_actuation`` builds it), shared by the site-file
parser and the gateway's actuation loop. Nothing here drives a coil, runs a player or
reads a clip; the player's command and the clips come from the gateway's own settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from drivers.device_config import DeviceConfig
from drivers.profiles import ChannelSpec


@dataclass(frozen=True, slots=True)
class RelayActuatorSpec:
    """A relay module whose coils drive a siren controller, strobes and the like.

    Each pattern names the coils that are on; every other coil of the actuator is off.
    """

    id: str
    device: DeviceConfig
    patterns: Mapping[str, tuple[str, ...]]
    test_pattern: str | None = None

    @property
    def coils(self) -> list[ChannelSpec]:
        """Every coil any pattern of this actuator uses, in address order."""
        names = {c for coils in self.patterns.values() for c in coils}
        return sorted((self.device.profile.channel(n) for n in names), key=lambda c: c.address)


#: The player a site file gets when it names none (``aplay -q {clip}``, always allowed).
DEFAULT_PLAYER_NAME = "aplay"


@dataclass(frozen=True, slots=True)
class PlayerChoice:
    """Which of the gateway's allowed players a site file asks for.

    By ``name``, or (site files written before players moved to the agent settings) by
    the exact ``command`` of an allowed player. It is a request, never something to run.
    """

    name: str = DEFAULT_PLAYER_NAME
    command: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class LevelAction:
    """What one alarm level does: a pattern per relay actuator, and a clip to broadcast."""

    patterns: Mapping[str, str] = field(default_factory=dict)
    clip: str | None = None


@dataclass(frozen=True, slots=True)
class ActuationSpec:
    """The site's actuators and what each level makes them do."""

    actuators: tuple[RelayActuatorSpec, ...] = ()
    player: PlayerChoice = field(default_factory=PlayerChoice)
    actions: Mapping[int, LevelAction] = field(default_factory=dict)
    reassert_s: float = 10.0
    test_duration_s: float = 5.0
