"""The siren node's firmware logic under CPython, answering real Modbus RTU on a pty.

The same ``drivers.siren_node`` code that runs on the board runs here; only the HAL
differs: bytes go through pyserial, time comes from the injectable clock, the tipping
bucket follows a scenario's cumulative rain, and every switching of the siren relay is
logged. The node's time never comes from the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import serial

from drivers.bus_config import SerialBusConfig
from drivers.clock import Clock
from drivers.siren_node.hal import NodeHal
from drivers.siren_node.node import SirenNode
from drivers.siren_node.registers import COIL_SIREN, DEFAULT_UNIT_ID
from hardware_sim.device import CoilChange
from hardware_sim.pty_link import PtyPair

RainSignal = Callable[[float], float]
"""Cumulative rain in mm as a function of simulated time, e.g. ``DesignStorm.cumulative_mm``."""


class PtyHal(NodeHal):
    """The node's HAL in the simulator.

    Attributes:
        siren: the relay as the node drives it.
        siren_log: every switching of the relay (address 0), in order.
        ack_held: the acknowledge button is held down.
    """

    def __init__(
        self, port: serial.Serial, clock: Clock, rain_mm: RainSignal | None, mm_per_tip: float
    ) -> None:
        if not 0 < mm_per_tip < math.inf:  # NaN too: it would count no rain at all
            msg = f"mm_per_tip must be a positive finite number, got {mm_per_tip}"
            raise ValueError(msg)
        self.port = port
        self.clock = clock
        self.mm_per_tip = mm_per_tip
        self.siren = False
        self.siren_log: list[CoilChange] = []
        self.ack_held = False
        self._rain_mm = rain_mm
        self._tips_taken = self._tips_at(clock.now())

    def _tips_at(self, sim_time: float) -> int:
        if self._rain_mm is None:
            return 0
        # The tolerance keeps 0.6 mm at 0.2 mm a tip from counting as 2.9999 tips.
        return math.floor(self._rain_mm(sim_time) / self.mm_per_tip + 1e-9)

    def ticks_ms(self) -> int:
        """Return simulated time in milliseconds."""
        return round(self.clock.now() * 1000.0)

    def uart_read(self) -> bytes | None:
        """Return whatever the agent end has sent, without waiting."""
        waiting = self.port.in_waiting
        return bytes(self.port.read(waiting)) if waiting else None

    def uart_write(self, frame: bytes) -> None:
        """Send an answer to the agent end."""
        self.port.write(frame)

    def set_siren(self, on: bool) -> None:
        """Record the relay switching."""
        if on != self.siren:
            self.siren = on
            self.siren_log.append(CoilChange(self.clock.now(), time.monotonic(), COIL_SIREN, on))

    def ack_pressed(self) -> bool:
        """Return the button as the test holds it."""
        return self.ack_held

    def take_tips(self) -> int:
        """Return the tips the bucket made since the last call, from the rain signal."""
        tips = self._tips_at(self.clock.now())
        new = max(0, tips - self._tips_taken)
        self._tips_taken = max(tips, self._tips_taken)
        return new


class SimulatedSirenNode:
    """A siren node on the device end of a pty, its firmware logic stepping in a task.

    The node powers up when the object is made; ``async with`` connects it to the line
    and runs it until exit. It steps whenever bytes arrive and at least every ``TICK_S``
    real seconds.

    Attributes:
        node: the firmware's node object (state, registers, fallback).
        hal: its HAL (relay log, button).
        steps: main-loop passes run so far.
    """

    TICK_S = 0.005

    def __init__(
        self,
        port_path: str | Path,
        clock: Clock,
        rain_mm: RainSignal | None = None,
        *,
        unit_id: int = DEFAULT_UNIT_ID,
        baudrate: int = 9600,
        mm_per_tip: float = 0.2,
    ) -> None:
        self.port_path = Path(port_path)
        self.clock = clock
        self.unit_id = unit_id
        self.baudrate = baudrate
        self.steps = 0
        self._port = serial.Serial()
        self._port.port = str(self.port_path)
        self._port.baudrate = baudrate
        self._port.timeout = 0
        self.hal = PtyHal(self._port, clock, rain_mm, mm_per_tip)
        self.node = SirenNode(self.hal, unit_id, baudrate)
        self._stepped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def siren(self) -> bool:
        """Return True while the siren relay is on."""
        return self.hal.siren

    @property
    def siren_log(self) -> list[CoilChange]:
        """Return every switching of the siren relay since power-up."""
        return self.hal.siren_log

    async def __aenter__(self) -> Self:
        self._port.open()
        self._task = asyncio.create_task(self._run(), name=f"siren node {self.unit_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                # A node loop that died of an error raises it here.
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            self._port.close()

    async def settle(self, within_s: float = 5.0) -> None:
        """Return once the node has run a whole step that began after this call.

        Raises:
            TimeoutError: when the node does not step within ``within_s`` real seconds.
        """
        # step() is synchronous, so no step is under way while this coroutine runs.
        target = self.steps + 1
        async with asyncio.timeout(within_s):
            while self.steps < target:
                self._stepped.clear()
                await self._stepped.wait()

    async def press_ack(self) -> None:
        """Press the acknowledge button and let it go once the node has seen it held."""
        self.hal.ack_held = True
        try:
            await self.settle()
        finally:
            self.hal.ack_held = False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = self._port.fileno()
        loop.add_reader(fd, readable.set)
        try:
            while True:
                readable.clear()
                self.node.step()
                self.steps += 1
                self._stepped.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(readable.wait(), self.TICK_S)
        finally:
            loop.remove_reader(fd)


@asynccontextmanager
async def serve_siren_node(
    clock: Clock,
    rain_mm: RainSignal | None = None,
    *,
    agent_end: str | Path | None = None,
    unit_id: int = DEFAULT_UNIT_ID,
    baudrate: int = 9600,
    mm_per_tip: float = 0.2,
) -> AsyncIterator[tuple[SerialBusConfig, SimulatedSirenNode]]:
    """Run a node behind a fresh pty pair; yield the agent's bus config and the node.

    ``agent_end`` places the agent's end of the pty (a private temporary path if left out).
    """
    with PtyPair(agent_end=agent_end) as pty:
        node = SimulatedSirenNode(
            pty.device_end,
            clock,
            rain_mm,
            unit_id=unit_id,
            baudrate=baudrate,
            mm_per_tip=mm_per_tip,
        )
        async with node:
            yield SerialBusConfig("siren-node", str(pty.agent_end), baudrate), node
