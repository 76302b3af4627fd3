"""Faults a simulated device shows: silence, exceptions, bad CRCs, frozen values, spikes.

A ``DeviceFaults`` is plain mutable state that tests and station files toggle while the
device is serving; it validates every assignment and never draws a random number unless
spikes are switched on, so a seed fixes the whole fault sequence.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes

FaultListener = Callable[[str], None]
"""Called with the field name after every assignment to a ``DeviceFaults`` field."""


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        msg = f"{name} must be true or false, got {value!r}"
        raise TypeError(msg)
    return value


def _check_exception_code(value: Any) -> int | None:
    if value is None:
        return None
    known = sorted(int(code) for code in ExcCodes)
    if isinstance(value, bool) or not isinstance(value, int) or value not in known:
        msg = f"exception_code must be one of the Modbus exception codes {known}, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _check_probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        msg = f"spike_probability must be a number within [0, 1], got {value!r}"
        raise ValueError(msg)
    return float(value)


def _check_magnitude(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"spike_magnitude must be a finite number, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _check_outages(value: Any) -> list[tuple[float, float]]:
    windows: list[tuple[float, float]] = []
    for window in value:
        start, end = window
        if not start < end:
            msg = f"outage window must start before it ends, got ({start}, {end})"
            raise ValueError(msg)
        windows.append((float(start), float(end)))
    return windows


def _check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"seed must be an integer, got {value!r}"
        raise TypeError(msg)
    return value


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "dead": lambda v: _check_flag("dead", v),
    "exception_code": _check_exception_code,
    "corrupt_crc": lambda v: _check_flag("corrupt_crc", v),
    "stuck": lambda v: _check_flag("stuck", v),
    "spike_probability": _check_probability,
    "spike_magnitude": _check_magnitude,
    "outages": _check_outages,
    "seed": _check_seed,
}


@dataclass(eq=False)
class DeviceFaults:
    """The faults one simulated device shows right now; assign fields to toggle them.

    Attributes:
        dead: the device answers nothing at all.
        exception_code: every request is answered with this Modbus exception code.
        corrupt_crc: responses go out with a broken CRC (serial links only; Modbus TCP
            has no CRC, so there it changes nothing).
        stuck: signal-driven registers keep the values they had when the fault began.
        spike_probability: chance, per read and per signal-driven register channel in
            the read, that the channel reports ``spike_magnitude`` (engineering units)
            above its true value for that one read.
        spike_magnitude: size of a spike, in the channel's engineering units.
        outages: simulated-time windows ``[start, end)`` in UTC seconds during which
            the device is dead. Assign a new list to have it validated.
        seed: seed of the spike generator; assigning it restarts the sequence.
    """

    dead: bool = False
    exception_code: int | None = None
    corrupt_crc: bool = False
    stuck: bool = False
    spike_probability: float = 0.0
    spike_magnitude: float = 0.0
    outages: list[tuple[float, float]] = field(default_factory=list)
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _listeners: list[FaultListener] = field(init=False, repr=False, default_factory=list)

    def __setattr__(self, name: str, value: Any) -> None:
        check = _CHECKS.get(name)
        if check is not None:
            value = check(value)
        super().__setattr__(name, value)
        if name == "seed":
            super().__setattr__("_rng", random.Random(value))
        if check is not None:
            for listener in self.__dict__.get("_listeners", ()):
                listener(name)

    def add_listener(self, listener: FaultListener) -> None:
        """Call ``listener`` with the field name whenever a fault field is assigned.

        The device owning these faults uses it to freeze its registers the moment
        ``stuck`` is switched on.
        """
        self._listeners.append(listener)

    def silent_at(self, sim_time: float) -> bool:
        """Return True when the device gives no answer at ``sim_time``."""
        return self.dead or any(start <= sim_time < end for start, end in self.outages)

    def draw_spike(self) -> bool:
        """Decide whether one channel spikes in the current read; draws only when enabled."""
        if self.spike_probability <= 0:
            return False
        return self._rng.random() < self.spike_probability
