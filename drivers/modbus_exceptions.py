"""Modbus exception answers in words a technician can act on.

An exception answer means the device is there and refused one request. This module says
which code it sent and what that code means, which request drew it (function code and
register range), and, when the request looks like a common profile mistake (a PLC-style
address such as 40001, input registers read as holding ones or the reverse), a hint.
It only words what happened; it never decides what a failure means for a reading and
never talks to a device.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.profiles import Table

#: Meanings of the exception codes of the Modbus application protocol (v1.1b3, 7).
EXCEPTION_MEANINGS: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

#: The read function code of each table.
READ_FUNCTION: dict[Table, int] = {
    Table.COIL: 1,
    Table.DISCRETE: 2,
    Table.HOLDING: 3,
    Table.INPUT: 4,
}

FUNCTION_NAMES: dict[int, str] = {
    1: "read coils",
    2: "read discrete inputs",
    3: "read holding registers",
    4: "read input registers",
    5: "write single coil",
    6: "write single register",
    15: "write multiple coils",
    16: "write multiple registers",
}

_BIT_FUNCTIONS = frozenset({1, 2, 5, 15})

#: PLC-style register numbers: 3xxxx are input registers, 4xxxx holding ones, from 1.
_PLC_RANGES = ((40001, 49999, Table.HOLDING), (30001, 39999, Table.INPUT))


@dataclass(frozen=True, slots=True)
class ModbusRequest:
    """One request as sent: function code, first address, how many registers or bits."""

    function: int
    address: int
    count: int

    @classmethod
    def read(cls, table: Table, address: int, count: int) -> ModbusRequest:
        """The read of ``count`` registers (or bits) of ``table`` from ``address``."""
        return cls(READ_FUNCTION[table], address, count)

    def describe(self) -> str:
        """``FC03 read holding registers 0x1000 (4096), 1 register`` and the like."""
        unit = "bit" if self.function in _BIT_FUNCTIONS else "register"
        last = self.address + self.count - 1
        span = (
            f"{self.address:#06x} ({self.address})"
            if self.count == 1
            else f"{self.address:#06x}..{last:#06x} ({self.address}..{last})"
        )
        plural = "" if self.count == 1 else "s"
        name = FUNCTION_NAMES.get(self.function, "function")
        return f"FC{self.function:02d} {name} {span}, {self.count} {unit}{plural}"


def exception_meaning(code: int) -> str:
    """The standard meaning of an exception code, or that it is not a standard one."""
    return EXCEPTION_MEANINGS.get(code, "not a standard Modbus exception code")


def describe_exception(code: int, request: ModbusRequest | None) -> str:
    """``exception 02 (illegal data address) to FC03 read holding registers ...``."""
    text = f"exception {code:02d} ({exception_meaning(code)})"
    return text if request is None else f"{text} to {request.describe()}"


def exception_hint(code: int, request: ModbusRequest | None) -> str | None:
    """What a technician should check in the profile, when the request suggests a mistake.

    Returns None when nothing about the request points to a profile mistake (a device
    failure or a busy device is the device's own trouble).
    """
    if request is None or code not in (1, 2, 3):
        return None
    if code == 3:
        if request.function not in READ_FUNCTION.values():
            return None
        return (
            f"the device refuses a read of {request.count} at once: lower the profile's "
            "max_registers (or max_bits) to what its manual allows per request"
        )
    for low, high, table in _PLC_RANGES:
        if low <= request.address <= high:
            offset = request.address - low
            return (
                f"address {request.address} looks like PLC numbering ({low // 10000}xxxx, "
                f'counted from 1): the profile wants table = "{table.value}" and '
                f"address = {offset} ({offset:#06x})"
            )
    if request.function == 3:
        return (
            "if the manual lists these as input registers (function 04), the profile's "
            'table is "input"; if it counts registers from 1, the address is one too high'
        )
    if request.function == 4:
        return (
            "if the manual lists these as holding registers (function 03), the profile's "
            'table is "holding"; if it counts registers from 1, the address is one too high'
        )
    if code == 2:
        return "check the address against the manual: it may count from 1 rather than 0"
    return None
