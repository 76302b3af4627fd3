"""Simulated field hardware (Modbus devices, an SMS modem) for tests, benchmarks and the demo.

Sensors are driven by the physical scenarios in ``hardware_sim.scenarios``; faults are
injected per device. Nothing in the gateway or the fleet service may import this package.
"""

from hardware_sim.device import CoilChange, SimulatedDevice
from hardware_sim.faults import DeviceFaults
from hardware_sim.modem import SentSms, SimulatedModem
from hardware_sim.pty_link import PtyLinkError, PtyPair
from hardware_sim.server import SimulatedBus, serve_rtu, serve_tcp

__all__ = [
    "CoilChange",
    "DeviceFaults",
    "PtyLinkError",
    "PtyPair",
    "SentSms",
    "SimulatedBus",
    "SimulatedDevice",
    "SimulatedModem",
    "serve_rtu",
    "serve_tcp",
]
