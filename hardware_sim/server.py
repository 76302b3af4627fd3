"""Serve simulated devices as one Modbus bus over TCP or serial RTU with pymodbus.

A bus behaves like an RS485 line: only devices that exist and are alive answer, anything
else stays silent. It only ever binds to the address it is given (loopback by default).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from hardware_sim.device import SimulatedDevice

LOOPBACK = "127.0.0.1"
# pymodbus logs a client hanging up mid-answer at ERROR with a frame dump; for a simulator
# whose clients come and go (and fall silent on purpose) that is noise, not news.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
_MBAP_UNIT_ID = 6


async def _unknown_unit(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    """Datastore action for unit ids with no device; its answer is never sent."""
    return ExcCodes.GATEWAY_NO_RESPONSE


def _catch_all() -> SimDevice:
    # pymodbus routes unknown unit ids to device 0; without one it logs a traceback.
    bits = [SimData(0, datatype=SimDataType.BITS)]
    registers = [SimData(0, datatype=SimDataType.REGISTERS)]
    return SimDevice(
        0, simdata=(bits, list(bits), registers, list(registers)), action=_unknown_unit
    )


class SimulatedBus:
    """Several simulated devices with distinct unit ids sharing one Modbus transport.

    Use ``serve_tcp`` or ``serve_rtu`` to run one; while it runs, ``transport`` says which
    kind it is and ``host``/``port`` or ``port_path`` say where it is.
    """

    def __init__(self, devices: Iterable[SimulatedDevice]) -> None:
        self.devices: dict[int, SimulatedDevice] = {}
        for device in devices:
            if device.unit_id in self.devices:
                other = self.devices[device.unit_id]
                msg = f"{device.name} and {other.name} both use unit id {device.unit_id}"
                raise ValueError(msg)
            self.devices[device.unit_id] = device
        self.transport: Literal["tcp", "rtu"] | None = None
        self.host: str | None = None
        self.port: int | None = None
        self.port_path: str | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    def device(self, unit_id: int) -> SimulatedDevice:
        """Return the device answering to ``unit_id``.

        Raises:
            KeyError: when no device on the bus has that unit id.
        """
        return self.devices[unit_id]

    def _context(self) -> list[SimDevice]:
        return [_catch_all(), *(device.sim_device() for device in self.devices.values())]

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending and (device := self.devices.get(pdu.dev_id)) is not None:
            count = pdu.count or len(pdu.bits) or len(pdu.registers)
            device.record_request(pdu.function_code, pdu.address, count)
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        unit_id = data[0] if self.transport == "rtu" else data[_MBAP_UNIT_ID]
        device = self.devices.get(unit_id)
        if device is None or device.silent():
            return b""
        if self.transport == "rtu" and device.faults.corrupt_crc:
            return data[:-2] + bytes(b ^ 0xFF for b in data[-2:])
        return data

    async def start_tcp(self, host: str = LOOPBACK, port: int = 0) -> None:
        """Listen for Modbus TCP on ``host:port``; port 0 picks a free port.

        Raises:
            OSError: when the address cannot be bound.
        """
        server = ModbusTcpServer(
            self._context(),
            address=(host, port),
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        self.transport = "tcp"
        await self._start(server, f"listen for Modbus TCP on {host}:{port} (is the port in use?)")
        listener = server.transport
        if not isinstance(listener, asyncio.Server):
            await self.stop()
            msg = f"pymodbus gave no listening socket for {host}:{port}"
            raise OSError(msg)
        self.host, self.port = listener.sockets[0].getsockname()[:2]

    async def start_rtu(
        self,
        port_path: str | os.PathLike[str],
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
    ) -> None:
        """Answer Modbus RTU on the serial port (or pty) at ``port_path``.

        Raises:
            OSError: when the port cannot be opened.
        """
        port_path = os.fspath(port_path)
        server = ModbusSerialServer(
            self._context(),
            framer=FramerType.RTU,
            port=port_path,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            bytesize=bytesize,
            trace_packet=self._trace_packet,
            trace_pdu=self._trace_pdu,
        )
        self.transport = "rtu"
        await self._start(server, f"open serial port {port_path} (does it exist?)")
        self.port_path = port_path

    async def _start(self, server: ModbusTcpServer | ModbusSerialServer, action: str) -> None:
        if self._server is not None:
            msg = "this bus is already serving"
            raise RuntimeError(msg)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            self.transport = None
            msg = f"cannot {action}"
            raise OSError(msg) from exc
        self._server = server

    async def stop(self) -> None:
        """Stop answering and release the socket or port; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            # pymodbus 3.16 leaves shutdown() unannotated.
            await server.shutdown()  # type: ignore[no-untyped-call]
        self.transport = None


@asynccontextmanager
async def serve_tcp(
    devices: Iterable[SimulatedDevice], host: str = LOOPBACK, port: int = 0
) -> AsyncIterator[SimulatedBus]:
    """Serve ``devices`` as one Modbus TCP gateway; the bus's ``port`` is the bound port."""
    bus = SimulatedBus(devices)
    await bus.start_tcp(host, port)
    try:
        yield bus
    finally:
        await bus.stop()


@asynccontextmanager
async def serve_rtu(
    devices: Iterable[SimulatedDevice],
    port_path: str | os.PathLike[str],
    baudrate: int = 9600,
    parity: str = "N",
    stopbits: int = 1,
    bytesize: int = 8,
) -> AsyncIterator[SimulatedBus]:
    """Serve ``devices`` as slaves on one RS485 line reached through ``port_path``."""
    bus = SimulatedBus(devices)
    await bus.start_rtu(port_path, baudrate, parity, stopbits, bytesize)
    try:
        yield bus
    finally:
        await bus.stop()
