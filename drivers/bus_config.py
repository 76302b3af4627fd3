"""Where a Modbus bus is: a serial port and its line settings, or a TCP endpoint.

Plain settings, as a site file declares them, shared by the bus owner (``drivers.bus``)
and the site-file schema (``site_schema``). This module never opens a port or a socket
and imports nothing that does (no pymodbus, no pyserial).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SerialBusConfig:
    """An RS485 line driven through a serial port."""

    name: str
    device: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8


@dataclass(frozen=True, slots=True)
class TcpBusConfig:
    """A Modbus TCP server or TCP-to-RS485 gateway."""

    name: str
    host: str
    port: int = 502


BusConfig = SerialBusConfig | TcpBusConfig


def same_line(a: BusConfig, b: BusConfig) -> bool:
    """Whether two bus settings address the same physical line (port or TCP endpoint)."""
    if isinstance(a, SerialBusConfig) and isinstance(b, SerialBusConfig):
        return a.device == b.device
    if isinstance(a, TcpBusConfig) and isinstance(b, TcpBusConfig):
        return (a.host, a.port) == (b.host, b.port)
    return False
