"""Helpers for tests that poll simulated devices over real Modbus TCP or RTU over a pty."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from drivers.bus_config import BusConfig, SerialBusConfig, TcpBusConfig
from hardware_sim.device import SimulatedDevice
from hardware_sim.pty_link import PtyPair
from hardware_sim.server import SimulatedBus, serve_rtu, serve_tcp

TRANSPORTS = ("tcp", "rtu")


@asynccontextmanager
async def served(
    kind: str, devices: Iterable[SimulatedDevice], name: str = "field"
) -> AsyncIterator[tuple[BusConfig, SimulatedBus]]:
    """Serve ``devices`` over ``kind`` and yield the agent's bus config and the sim bus."""
    if kind == "tcp":
        async with serve_tcp(devices) as bus:
            assert bus.port is not None
            yield TcpBusConfig(name, "127.0.0.1", bus.port), bus
        return
    with PtyPair() as pty:
        async with serve_rtu(devices, str(pty.device_end)) as bus:
            yield SerialBusConfig(name, str(pty.agent_end)), bus
