"""One owner per physical Modbus bus: serialises transactions and classifies failures.

Every request on a bus goes through its ``ModbusBus``, one at a time (actuation
first), with the timeout of the device it addresses. A failure comes back as a
``TransactionError`` carrying a quality flag; it never escapes as a pymodbus exception
and never stalls the bus past that timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import ModbusPDU

from drivers.bus_config import BusConfig, SerialBusConfig
from drivers.bus_turns import BusTurns
from drivers.modbus_exceptions import ModbusRequest, describe_exception, exception_hint
from drivers.model import Quality
from drivers.port_problem import serial_port_problem
from drivers.profiles import Table

log = logging.getLogger(__name__)


def quiet_pymodbus() -> None:
    """Mute pymodbus's own log: for a process that polls through this bus owner.

    pymodbus logs every timeout at ERROR with a frame dump. Here every failure becomes a
    quality flag and one log line per outage (see the poller). Called by the programs
    that set up logging (``edge run``, ``edge poll``), never on import, so a library user
    keeps pymodbus's log as they set it.
    """
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


#: Characters per second on the wire: 11 bits per character (start, 8 data, parity/stop).
BITS_PER_CHAR = 11


def rtu_silence_s(baudrate: int) -> float:
    """Return the inter-frame silence t3.5 (fixed at 1.75 ms above 19200 baud)."""
    return 0.00175 if baudrate > 19200 else 3.5 * BITS_PER_CHAR / baudrate


class TransactionError(Exception):
    """A Modbus transaction produced no usable answer; ``quality`` says why.

    An exception answer carries its code and the request that drew it, and its ``detail``
    says both in words (``exception 02 (illegal data address) to FC03 ...``).
    """

    def __init__(
        self,
        quality: Quality,
        detail: str,
        exception_code: int | None = None,
        request: ModbusRequest | None = None,
    ) -> None:
        self.quality = quality
        self.detail = detail
        self.exception_code = exception_code
        self.request = request
        super().__init__(detail)

    @property
    def hint(self) -> str | None:
        """For an exception answer, what to check in the profile (None if nothing)."""
        if self.exception_code is None:
            return None
        return exception_hint(self.exception_code, self.request)


@dataclass
class BusStats:
    """Counters a technician or the health report reads."""

    transactions: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    last_success: float | None = None


class ModbusBus:
    """The single owner of one physical bus (a serial line or a TCP connection)."""

    def __init__(self, config: BusConfig) -> None:
        self.config = config
        self.stats = BusStats()
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
        self._turns = BusTurns()
        self._received = bytearray()
        self._silence = (
            rtu_silence_s(config.baudrate) if isinstance(config, SerialBusConfig) else 0.0
        )
        self._last_activity = 0.0

    @property
    def name(self) -> str:
        """Return the bus name from the site configuration."""
        return self.config.name

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # Keep the raw bytes of the current answer: pymodbus silently drops a frame with a
        # bad CRC, and only the raw bytes tell a CRC error from a silent slave.
        if sending:
            self._received.clear()
        else:
            self._received.extend(data)
        return data

    def _make_client(self, timeout_s: float) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        cfg = self.config
        if isinstance(cfg, SerialBusConfig):
            return AsyncModbusSerialClient(
                port=cfg.device,
                framer=FramerType.RTU,
                baudrate=cfg.baudrate,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
                bytesize=cfg.bytesize,
                timeout=timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._trace_packet,
            )
        return AsyncModbusTcpClient(
            cfg.host,
            port=cfg.port,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
        )

    async def close(self) -> None:
        """Close the connection; the next transaction reopens it."""
        async with self._turns.turn():
            if self._client is not None:
                self._client.close()
                self._client = None

    @contextlib.asynccontextmanager
    async def lend(self, config: BusConfig) -> AsyncIterator[ModbusBus]:
        """Lend the line to a probe with other settings (a candidate configuration).

        Holds an urgent turn, so polls and actuation on this bus wait until the probe is
        done; the probe's connection is closed afterwards and this bus reconnects with its
        own settings on its next transaction.
        """
        async with self._turns.turn(urgent=True):
            if self._client is not None:
                self._client.close()
                self._client = None
            probe = ModbusBus(config)
            try:
                yield probe
            finally:
                await probe.close()

    async def read(
        self,
        unit_id: int,
        table: Table,
        address: int,
        count: int,
        timeout_s: float,
        urgent: bool = False,
    ) -> list[int] | list[bool]:
        """Read ``count`` registers or bits from one table of one device.

        ``urgent`` reads (an actuator's read-back) go before queued polls.

        Raises:
            TransactionError: on timeout, exception response, CRC error or lost connection.
        """

        def call(client: Any) -> Awaitable[ModbusPDU]:
            readers: dict[Table, Callable[..., Awaitable[ModbusPDU]]] = {
                Table.HOLDING: client.read_holding_registers,
                Table.INPUT: client.read_input_registers,
                Table.COIL: client.read_coils,
                Table.DISCRETE: client.read_discrete_inputs,
            }
            return readers[table](address, count=count, device_id=unit_id)

        request = ModbusRequest.read(table, address, count)
        response = await self._transact(unit_id, timeout_s, call, urgent, request)
        if table.is_bits:
            # pymodbus pads bits to whole bytes, but a device may send fewer bytes than
            # asked: too few bits are a failed read like too few registers, not a value.
            bits = list(response.bits[:count])
            if len(bits) != count:
                self.stats.failures["short_response"] += 1
                raise TransactionError(
                    Quality.EXCEPTION, f"asked for {count} bits, got {len(bits)}"
                )
            return bits
        registers = list(response.registers)
        if len(registers) != count:
            self.stats.failures["short_response"] += 1
            raise TransactionError(
                Quality.EXCEPTION, f"asked for {count} registers, got {len(registers)}"
            )
        return registers

    async def write_coils(
        self,
        unit_id: int,
        address: int,
        values: Sequence[bool],
        timeout_s: float,
        urgent: bool = False,
    ) -> None:
        """Write one or more coils (FC05 for one, FC15 for several).

        ``urgent`` transactions (actuation) go before queued polls.

        Raises:
            TransactionError: as for ``read``.
        """
        if len(values) == 1:
            await self._transact(
                unit_id,
                timeout_s,
                lambda c: c.write_coil(address, bool(values[0]), device_id=unit_id),
                urgent,
                ModbusRequest(5, address, 1),
            )
        else:
            await self._transact(
                unit_id,
                timeout_s,
                lambda c: c.write_coils(address, list(values), device_id=unit_id),
                urgent,
                ModbusRequest(15, address, len(values)),
            )

    async def write_registers(
        self, unit_id: int, address: int, values: Sequence[int], timeout_s: float
    ) -> None:
        """Write holding registers (FC16).

        Raises:
            TransactionError: as for ``read``.
        """
        await self._transact(
            unit_id,
            timeout_s,
            lambda c: c.write_registers(address, list(values), device_id=unit_id),
            request=ModbusRequest(16, address, len(values)),
        )

    async def _transact(
        self,
        unit_id: int,
        timeout_s: float,
        call: Callable[[Any], Awaitable[ModbusPDU]],
        urgent: bool = False,
        request: ModbusRequest | None = None,
    ) -> ModbusPDU:
        async with self._turns.turn(urgent):
            self.stats.transactions += 1
            try:
                response = await self._execute(timeout_s, call, request)
            except TransactionError as failure:
                self.stats.failures[failure.quality.names()[0]] += 1
                raise
            self.stats.last_success = time.time()
            return response

    async def _execute(
        self,
        timeout_s: float,
        call: Callable[[Any], Awaitable[ModbusPDU]],
        request: ModbusRequest | None,
    ) -> ModbusPDU:
        if self._client is None:
            self._client = self._make_client(timeout_s)
        client = self._client
        if not client.connected and not await client.connect():
            raise TransactionError(Quality.NO_CONNECTION, self._connect_failure())
        # pymodbus reads the response timeout from its comm params on every request, so
        # setting it here gives each device its own timeout on a shared connection.
        client.ctx.comm_params.timeout_connect = timeout_s
        if self._silence:
            wait = self._last_activity + self._silence - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            response = await call(client)
        except ConnectionException as exc:
            raise TransactionError(Quality.NO_CONNECTION, str(exc)) from None
        except ModbusException:
            raise self._silence_failure(timeout_s) from None
        finally:
            self._last_activity = time.monotonic()
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            detail = describe_exception(code, request)
            raise TransactionError(Quality.EXCEPTION, detail, code, request)
        return response

    def _connect_failure(self) -> str:
        cfg = self.config
        if isinstance(cfg, SerialBusConfig):
            return f"cannot open bus {self.name}: {serial_port_problem(cfg.device)}"
        return f"cannot connect to bus {self.name} at {cfg.host}:{cfg.port}"

    def _silence_failure(self, timeout_s: float) -> TransactionError:
        raw = bytes(self._received)
        if isinstance(self.config, SerialBusConfig) and len(raw) >= FramerRTU.MIN_SIZE:
            crc = int.from_bytes(raw[-2:], "big")
            if not FramerRTU.check_CRC(raw[:-2], crc):
                return TransactionError(
                    Quality.CRC_ERROR, f"{len(raw)}-byte answer failed its CRC check"
                )
        return TransactionError(Quality.TIMEOUT, f"no answer within {timeout_s:.3g} s")
