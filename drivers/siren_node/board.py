"""The RP2040 board under the node: RS485 UART, siren relay, tipping bucket, acknowledge button.

Only this module and ``main.py`` touch ``machine``; they run on the board alone. The relay
pin is driven low before anything else, so a booting node never sounds.
"""

import time

import machine
from machine import UART, Pin

from .hal import NodeHal

TIP_DEBOUNCE_MS = 50
"""A reed contact bounces for a few ms; no bucket tips twice within 50 ms (14000 mm/h)."""


class BoardHal(NodeHal):
    """The node's HAL on real pins (defaults: a Raspberry Pi Pico wired as in the README)."""

    def __init__(
        self,
        uart_id: int = 0,
        tx: int = 0,
        rx: int = 1,
        direction: int = 2,
        relay: int = 15,
        bucket: int = 14,
        ack: int = 13,
        baudrate: int = 9600,
    ) -> None:
        self._relay = Pin(relay, Pin.OUT, value=0)
        self._direction = Pin(direction, Pin.OUT, value=0)
        self._uart = UART(uart_id, baudrate, tx=Pin(tx), rx=Pin(rx), rxbuf=512, timeout=0)
        self._ack = Pin(ack, Pin.IN, Pin.PULL_UP)
        self._bucket = Pin(bucket, Pin.IN, Pin.PULL_UP)
        # t3.5 at this baud rate, in microseconds: the silence owed before answering.
        self._turnaround_us = 1750 if baudrate > 19200 else 3500 * 11 * 1000 // baudrate
        self._elapsed_ms = 0
        self._last_ticks = time.ticks_ms()
        self._tips = 0
        self._last_tip_ms = self._last_ticks
        # A hard interrupt so that take_tips can shut it out while it swaps the count.
        self._bucket.irq(self._on_tip, Pin.IRQ_FALLING, hard=True)

    def _on_tip(self, pin: Pin) -> None:
        now = time.ticks_ms()
        if time.ticks_diff(now, self._last_tip_ms) >= TIP_DEBOUNCE_MS:
            self._tips += 1
            self._last_tip_ms = now

    def ticks_ms(self) -> int:
        """Return milliseconds since this HAL was made, unwrapping the board's ticks.

        The board's counter wraps within days; the node loop calls this every few
        milliseconds, far inside ticks_diff's range.
        """
        now = time.ticks_ms()
        self._elapsed_ms += time.ticks_diff(now, self._last_ticks)
        self._last_ticks = now
        return self._elapsed_ms

    def uart_read(self) -> bytes | None:
        """Return what the UART has received, without waiting."""
        if not self._uart.any():
            return None
        return self._uart.read()

    def uart_write(self, frame: bytes) -> None:
        """Send ``frame``, holding the transceiver in transmit only while it goes out."""
        time.sleep_us(self._turnaround_us)
        self._direction.value(1)
        self._uart.write(frame)
        self._uart.flush()
        while not self._uart.txdone():
            pass
        self._direction.value(0)

    def set_siren(self, on: bool) -> None:
        """Drive the relay (active high)."""
        self._relay.value(1 if on else 0)

    def ack_pressed(self) -> bool:
        """Return True while the button (to ground, pulled up) is held."""
        return self._ack.value() == 0

    def take_tips(self) -> int:
        """Return and clear the tips counted by the interrupt."""
        state = machine.disable_irq()
        tips = self._tips
        self._tips = 0
        machine.enable_irq(state)
        return tips
