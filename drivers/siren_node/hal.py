"""The thin layer between the node logic and whatever it runs on.

Everything the logic learns from or does to the outside world goes through one NodeHal:
the board's pins, UART and ticks (``board.py``), a pty and a simulated clock (the
simulator), or a script (the MicroPython tests). Time is the HAL's, so tests run the
node faster than real time.
"""


class NodeHal:
    """What the node needs from its board; each implementation overrides every method."""

    def ticks_ms(self) -> int:
        """Return milliseconds on a count that never wraps and never goes back.

        A board's own tick counter wraps; its HAL unwraps it (``board.py``).
        """
        raise NotImplementedError

    def uart_read(self) -> bytes | None:
        """Return the bytes received from the RS485 line since the last call, or None."""
        raise NotImplementedError

    def uart_write(self, frame: bytes) -> None:
        """Send one frame on the RS485 line (driving the transceiver's direction pin)."""
        raise NotImplementedError

    def set_siren(self, on: bool) -> None:
        """Switch the siren relay."""
        raise NotImplementedError

    def ack_pressed(self) -> bool:
        """Return True while the local acknowledge button is held down."""
        raise NotImplementedError

    def take_tips(self) -> int:
        """Return the tipping-bucket tips counted since the last call."""
        raise NotImplementedError
